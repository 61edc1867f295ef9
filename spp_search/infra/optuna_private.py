"""Every use of Optuna's private API, in one place, each with the reason the public API cannot do it.

``tests/test_optuna_private.py`` fails loudly (naming the name) when an Optuna upgrade removes or
renames one of them; the fix then lives here and nowhere else.
"""

from __future__ import annotations

import optuna

# RetryingStorage implements the heartbeat interface so that Optuna's ``fail_stale_trials`` and
# ``record_heartbeat`` see a wrapped RDB storage as one with heartbeats; the interface class is
# only exported from a private module.
from optuna.storages._heartbeat import BaseHeartbeat  # noqa: F401  (re-exported)

NAMES = (
    "optuna.storages._heartbeat.BaseHeartbeat",
    "optuna.storages._cached_storage._CachedStorage",
    "optuna.study.Study._storage",
    "optuna.study.Study._study_id",
    "optuna.trial.Trial._trial_id",
)


def cached(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """``storage`` behind the cache ``optuna.create_study`` puts in front of an RDB storage: we
    build the storage ourselves (heartbeats, retries) and pass the object, which skips the cache
    that Optuna only adds for URLs; without it every ``get_trial`` is a query."""
    from optuna.storages._cached_storage import _CachedStorage

    return _CachedStorage(storage)


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study reads and writes: ``Study`` has no public accessor, and the storage
    calls below (a trial's system attributes, its state) have no ``Study`` method."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The study's id in its storage (optuna-dashboard's URLs use it); ``Study`` keeps it private
    and ``get_study_id_from_name`` would cost a query for a number the object already holds."""
    return study._study_id


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """A trial's id in its storage (heartbeats and state changes are keyed by it): ``Trial`` only
    exposes its number, and the public lookup ``get_trial_id_from_study_id_trial_number`` costs a
    query per call."""
    return trial._trial_id


def is_enqueued(study: optuna.Study, trial: optuna.Trial) -> bool:
    """True if ``trial`` was popped from the study's queue: Optuna keeps an enqueued trial's
    ``fixed_params`` as a system attribute, and no public call tells a popped trial from a fresh one."""
    return "fixed_params" in storage_of(study).get_trial_system_attrs(trial_id(trial))


def fail_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
    """Set a RUNNING trial of another driver (a dead one) to FAIL, as Optuna's own
    ``fail_stale_trials`` does for heartbeats; ``Study.tell`` only accepts trials this process
    asked for. Raises ``UpdateFinishedTrialError`` if it finished meanwhile. Returns it updated."""
    storage = storage_of(study)
    storage.set_trial_state_values(trial_id(trial), state=optuna.trial.TrialState.FAIL)
    return storage.get_trial(trial_id(trial))
