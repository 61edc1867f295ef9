"""The study's trial budget, shared by every worker through the Optuna storage: tickets.

``--trials N`` is the study's total however many drivers and workers run it. The ``run`` command
tops the study up to N *tickets*: enqueued Optuna trials with no fixed parameters (the sampler
still picks them). A worker only trains a trial it popped from the queue (its number was queued
just before it asked), and popping is atomic in the storage, so no two workers run the same
trial and the total is never exceeded. A configuration a user enqueues with Optuna is a ticket
too: it takes one place of the total.

A trial that must run again (interrupted, crashed or timed out within ``max_retries``, or lost
with its worker) is *superseded*: a new ticket with its parameters and ``retry_of`` = its number
takes its place. The budget is then: counted = finished trials not superseded; live = trials in
any state not superseded; the run command enqueues ``total - live`` fresh tickets.

In the rare race where a worker asks just as the last ticket is taken, Optuna creates a trial
that is not a ticket (``is_ticket``): it is closed at once as ``no_budget`` and excluded from
every count.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from spp_search.config.factors import param_text
from spp_search.infra import optuna_private

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
TICKET, RETRY_OF, ATTEMPT = "ticket", "retry_of", "attempt"
INTERRUPTED, NO_BUDGET = "interrupted", "no_budget"


def superseded(trials: list) -> set[int]:
    """Numbers of trials another trial re-runs."""
    return {t.user_attrs[RETRY_OF] for t in trials if RETRY_OF in t.user_attrs}


def _valid(trials: list) -> list:
    gone = superseded(trials)
    return [t for t in trials if t.number not in gone and t.user_attrs.get("outcome") != NO_BUDGET]


def counted(study: optuna.Study) -> int:
    """Finished trials that count toward the total."""
    return sum(t.state in FINISHED for t in _valid(study.get_trials(deepcopy=False)))


def counted_trials(study: optuna.Study) -> list:
    """The finished trials that count, for reports and exports."""
    return [t for t in _valid(study.get_trials(deepcopy=False)) if t.state in FINISHED]


def enqueue_configs(study: optuna.Study, params: tuple[dict, ...]) -> None:
    """Enqueue the config's ``enqueue`` entries as tickets: they take places of the total, first."""
    for fixed in params:
        study.enqueue_trial(fixed, user_attrs={TICKET: True, "enqueued": True}, skip_if_exists=False)


def enqueue_arms(study: optuna.Study, configs: tuple, repeats: int, defaults: dict, varied: tuple[str, ...]) -> int:
    """Enqueue every ablation arm ``repeats`` times (round-robin, so a partial run covers every
    arm); ``varied``: the factors of the derived space, whose values the arms set."""
    count = 0
    for _ in range(repeats):
        for arm in configs:
            factors = {**defaults, **arm.overrides}
            params = {k: param_text(factors[k]) for k in varied}
            study.enqueue_trial(params, user_attrs={"arm": arm.name, TICKET: True}, skip_if_exists=False)
            count += 1
    return count


def top_up(study: optuna.Study, total: int) -> int:
    """Enqueue tickets until the study holds ``total`` live trials; return how many were added."""
    missing = total - len(_valid(study.get_trials(deepcopy=False)))
    for _ in range(max(0, missing)):
        study.enqueue_trial({}, user_attrs={TICKET: True}, skip_if_exists=False)
    study.set_user_attr("total_trials", max(total, study.user_attrs.get("total_trials", 0)))
    return max(0, missing)


def waiting_numbers(study: optuna.Study) -> set[int]:
    """Numbers of the queued trials (tickets, and any configuration a user enqueued)."""
    return {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))}


def is_ticket(study: optuna.Study, trial) -> bool:
    """True if ``trial`` was popped from the queue (a ticket, or a configuration a user enqueued
    with Optuna), False if Optuna created it fresh because the queue was empty.

    Decided from the trial itself (Optuna keeps an enqueued trial's ``fixed_params``), not from a
    snapshot of the queue taken before ``ask()``: a retry ticket another driver enqueues in between
    is a ticket too.
    """
    return optuna_private.is_enqueued(study, trial)


def running(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def requeue(study: optuna.Study, trial, attempt: int) -> None:
    """A ticket that re-runs ``trial``'s parameters (attempt number ``attempt``)."""
    attrs = {TICKET: True, RETRY_OF: trial.number, ATTEMPT: attempt}
    if "arm" in trial.user_attrs:
        attrs["arm"] = trial.user_attrs["arm"]
    study.enqueue_trial(trial.params, user_attrs=attrs, skip_if_exists=False)


def attempt_of(trial) -> int:
    return int(trial.user_attrs.get(ATTEMPT, 1))


def outcome_of(trial) -> str:
    """A finished trial's outcome. One failed by heartbeat (its driver died: SIGKILL, machine
    loss) never got one: it is a ``crash``, the taxonomy's unexplained end."""
    if "outcome" in trial.user_attrs:
        return trial.user_attrs["outcome"]
    return "crash" if trial.state == TrialState.FAIL else trial.state.name.lower()
