"""Recording an outcome: how a trial's result reaches Optuna (and so the sampler), for both engines.

The outcome table (``trial.outcomes.KINDS``) says how each outcome is recorded; this module
turns that into Optuna's terms, once, for the Optuna engine's ``tell`` and the KerasTuner
engine's mirrored trials alike:

* ``complete``: COMPLETE with the final validation accuracy (``ok``).
* ``pruned``: PRUNED at the last reported epoch (``pruned``); a diverged trial is PRUNED at the
  epoch it diverged, with value 0.0 reported there, so TPE ranks it below every trained trial.
* ``infeasible``: PRUNED with the constraint ``deterministic_failure = 1`` (``oom_*``,
  ``shape_error``, ``data_error``), so TPE puts their region among the bad ones. Optuna's stock
  behaviour is a plain FAIL, which its samplers ignore and so propose again.
* ``fail``: FAIL (``crash`` and ``timeout``, retried up to ``max_retries``; ``config_error``,
  which stops the study).

Every recorded trial carries ``outcome`` and, for failures, ``error_type``, ``error_message``,
``failed_epoch`` and ``failed_step`` user attributes.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from spp_search.trial import failures
from spp_search.trial.run import TrialResult

INFEASIBLE = "deterministic_failure"
RETRIED = "retried"
STATES = {
    "complete": TrialState.COMPLETE,
    "pruned": TrialState.PRUNED,
    "infeasible": TrialState.PRUNED,
    "fail": TrialState.FAIL,
}


def recorded_state(result: TrialResult, feedback: bool = True) -> tuple[TrialState, dict[str, float]]:
    """The Optuna state and constraints of ``result`` (see the module docstring). With
    ``feedback`` off every failure is a plain FAIL (Optuna's stock behaviour, which its samplers
    ignore), kept for measuring what the feedback buys."""
    kind = result.outcome.kind
    if not feedback and kind.failed:
        return TrialState.FAIL, {}
    return STATES[kind.record], ({INFEASIBLE: 1.0} if kind.record == "infeasible" else {})


def failure_attrs(result: TrialResult) -> dict:
    """The user attributes every recorded trial carries about its outcome (both engines)."""
    attrs: dict = {"outcome": result.outcome.value}
    for key in ("val_images", "val_majority_share"):  # what chance is (the report's verdict on the best)
        if key in result.stats:
            attrs[key] = result.stats[key]
    for key in ("failed_epoch", "failed_step"):
        if getattr(result, key) is not None:
            attrs[key] = getattr(result, key)
    if result.outcome.failed:
        attrs["error_type"], attrs["error_message"] = failures.reason(result)
    return attrs


def diverged_at(result: TrialResult, state: TrialState, budget) -> int | None:
    """The key (``Budget.round_key``) at which a diverged trial reports 0.0: the validation of
    the round it diverged in (None for every other result)."""
    diverged = state is TrialState.PRUNED and result.outcome.diverged
    return budget.round_key(result.failed_epoch or 0) if diverged else None


def tell(study: optuna.Study, trial: optuna.Trial, result: TrialResult, reported: set[int], budget, feedback=True):
    """Record ``result`` in Optuna (``recorded_state``); ``reported``: the keys already reported,
    under the trial's ``budget`` (``config/schedule.py``)."""
    for key, value in failure_attrs(result).items():
        trial.set_user_attr(key, value)
    state, constraints = recorded_state(result, feedback)
    for key, value in constraints.items():
        trial.set_constraint(key, value)
    if state is TrialState.COMPLETE:
        return study.tell(trial, result.value)
    epoch = diverged_at(result, state, budget)
    if epoch is not None and epoch not in reported:
        trial.report(0.0, epoch)
    return study.tell(trial, state=state)


def wants_retry(result: TrialResult, attempt: int, max_retries: int) -> bool:
    """A retried outcome (crash, timeout) runs again while attempt ``attempt`` (1-based) is at
    most ``max_retries``: the last of ``max_retries + 1`` attempts is not retried. Both engines."""
    return result.outcome.kind.retry and attempt <= max_retries
