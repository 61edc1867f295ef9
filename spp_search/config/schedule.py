"""A trial's training budget: optimizer steps (the default), or epochs; and when it is validated.

Why steps: a budget in epochs gives a small folder almost no training. 3 epochs are 36 optimizer
steps on the built-in data (384 training images at batch 32), but 6 steps on 54 photos at batch
32 and 3 at batch 64: such trials end at chance, and every comparison a study reports is then
between untrained models. A step budget gives every trial the same number of updates whatever
its batch size or folder, and its validations (Optuna's intermediate values, which the pruner
compares) fall at the same steps in every trial, so trials are pruned only against trials
that trained as long.

``DEFAULT_STEPS`` is the old default's count on the built-in data (3 epochs of 12 steps), so a
default study there trains its batch-32 trials exactly as before (``benchmarks/step_budget.py``
measures the texture photos and the built-in data against it).

The training stream does not restart at a validation: batches come from one endless shuffled
sequence of passes over the training set (``preprocessing.Batches``), and a validation
"round" is just ``steps_per_round`` of its batches. ``epochs`` is still accepted: the budget is
then that many passes of the trial's own steps per epoch, validated after each pass, as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from spp_search.infra.errors import ConfigError, must

DEFAULT_STEPS = 36
DEFAULT_EVALUATIONS = 3


@dataclass(frozen=True)
class Budget:
    """``steps`` > 0: that many optimizer steps, validated ``evaluations`` times at equal
    intervals (rounded up to a whole number of steps per round). Else ``epochs`` passes."""

    steps: int = DEFAULT_STEPS
    evaluations: int = DEFAULT_EVALUATIONS
    epochs: int = 0

    @classmethod
    def of_epochs(cls, epochs: int) -> Budget:
        return cls(steps=0, evaluations=epochs, epochs=epochs)

    @property
    def in_steps(self) -> bool:
        return self.epochs == 0

    @property
    def steps_per_round(self) -> int:
        """Steps between validations of a step budget."""
        return math.ceil(self.steps / self.evaluations)

    @property
    def rounds(self) -> int:
        """Validations (Keras epochs of ``fit``): at most ``evaluations``. A budget that does not
        divide evenly is rounded up to whole rounds (10 steps, 4 validations: 4 rounds of 3 =
        12 steps; ``total_steps`` and ``describe`` say so)."""
        return math.ceil(self.steps / self.steps_per_round) if self.in_steps else self.epochs

    @property
    def total_steps(self) -> int | None:
        """Steps trained (None for an epoch budget: it depends on the trial's batch size)."""
        return self.rounds * self.steps_per_round if self.in_steps else None

    def plan(self, steps_per_epoch: int) -> tuple[int, int]:
        """``(rounds, steps per round)`` for ``fit``, given the trial's steps per pass."""
        return (self.rounds, self.steps_per_round) if self.in_steps else (self.epochs, steps_per_epoch)

    def report_key(self, round_index: int, steps_done: int) -> int:
        """The key of a validation in Optuna and MLflow: the optimizer steps trained (step
        budget: the same in every trial), or the epoch's index (epoch budget, as before)."""
        return steps_done if self.in_steps else round_index

    def round_key(self, round_index: int) -> int:
        """The key of round ``round_index``'s validation, whether or not it ran (a diverged
        trial reports 0.0 there)."""
        return self.report_key(round_index, (round_index + 1) * self.steps_per_round if self.in_steps else 0)

    def first_rounds(self, rounds: int) -> Budget:
        """The first ``rounds`` rounds of this budget (Hyperband's ``tuner/epochs`` resource)."""
        if not self.in_steps:
            return Budget.of_epochs(rounds)
        return Budget(rounds * self.steps_per_round, rounds)

    @property
    def warmup(self) -> int:
        """The pruner's ``n_warmup_steps``: the first validation is never pruned."""
        return self.steps_per_round + 1 if self.in_steps else 1

    def describe(self) -> str:
        if not self.in_steps:
            return f"{self.epochs} epochs per trial (a pass over the training set each, validated after each)"
        rounded = "" if self.total_steps == self.steps else f" ({self.steps} rounded up to whole rounds)"
        return f"{self.total_steps} optimizer steps per trial{rounded}, validated every {self.steps_per_round}"

    def params(self) -> dict[str, int]:
        """MLflow params of a run trained with this budget."""
        if not self.in_steps:
            return {"epochs": self.epochs}
        return {"budget_steps": self.total_steps, "eval_every_steps": self.steps_per_round}


def check_epochs(epochs: object) -> None:
    """``study.epochs``: unset (a budget in steps) or an integer in [1, 10000]."""
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= 10_000):
        fix = "Use e.g. 3 epochs, or leave it out for a budget in optimizer steps (study.steps)."
        raise ConfigError(must("epochs", "be an integer in [1, 10000]", epochs, fix))


def one_budget(study: object, overrides: dict) -> None:
    """A budget is ``steps`` or ``epochs``: both in one file's ``study`` section is an error; one
    given on the command line replaces the other in the file (``--epochs 5`` over ``steps: 36``).
    ``study`` (the raw section, a copy) is changed in place."""
    if not isinstance(study, dict):
        return
    for given, other in (("steps", "epochs"), ("epochs", "steps")):
        if overrides.get(f"study.{given}") is not None:
            study.pop(other, None)
    if study.get("epochs") and "steps" in study:
        fix = "Keep one: steps (the same for every batch size and folder) or epochs."
        both = f"steps={study['steps']}, epochs={study['epochs']}"
        raise ConfigError(must("study", "set steps or epochs, not both", both, fix))
