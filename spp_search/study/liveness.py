"""Liveness: this driver keeps its running trials alive, and frees the trials of dead drivers.

A driver that dies (SIGKILL, machine loss) leaves its trials RUNNING. Two mechanisms, by storage
(``infra.storage.SCHEMES``):

* ``heartbeat`` (RDB storages): Optuna records a heartbeat per running trial; a trial without one
  for ``GRACE_S`` is failed by ``optuna.storages.fail_stale_trials``, which calls ``on_stale``.
* ``lease`` (journal storages, which have no heartbeat in Optuna 5): each driver renews a lease,
  the time of its last beat, in the study's user attributes; the RUNNING trials of a driver whose
  lease is older than the grace are failed here (``fail_expired_leases``).

Either way a freed trial's MLflow run is closed KILLED and its configuration re-queued while
attempts are left. :class:`Liveness` holds this driver's side: the trials it runs, its beats on
a thread of their own (a beat never waits for a claim stuck on the storage), and the callback.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from spp_search.infra import optuna_private
from spp_search.infra.redaction import redact
from spp_search.infra.retry import with_retries
from spp_search.infra.storage import GRACE_S, HEARTBEAT_S, scheme_of
from spp_search.study.budget import attempt_of, requeue

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"  # which driver ran a trial
LEASE_PREFIX = "lease:"


def renew_lease(study: optuna.Study, driver: str = WORKER_ID) -> None:
    """Journal storages: this driver's lease, the time of its last beat (one key per driver: an upsert)."""
    study.set_user_attr(LEASE_PREFIX + driver, time.time())


def fail_expired_leases(study: optuna.Study, grace: float, callback, unowned_only: bool = False) -> list[int]:
    """Fail the RUNNING trials whose driver's lease is older than ``grace`` seconds (its driver is
    gone), as Optuna's heartbeat does for RDB storages, and hand each to ``callback(study,
    frozen_trial)``. A trial whose driver never renewed a lease counts from its start. Returns the
    numbers failed here.

    Leases are wall-clock times written by each driver's host: hosts sharing a journal storage
    need clocks within a few seconds of each other (NTP), far below the 30 s grace.

    ``unowned_only`` (RDB storages, whose heartbeats cover every claimed trial): only trials no
    driver claimed, e.g. one a lost connection's retried call popped twice, which no heartbeat
    would ever find stale.
    """
    now, leases, failed = time.time(), study.user_attrs, []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if unowned_only and "worker" in trial.user_attrs:
            continue
        lease = leases.get(LEASE_PREFIX + trial.user_attrs.get("worker", ""))
        last = lease if lease is not None else trial.datetime_start.timestamp()
        if now - last <= grace:
            continue
        try:
            frozen = optuna_private.fail_trial(study, trial)
        except UpdateFinishedTrialError:
            continue  # another driver got there first
        failed.append(trial.number)
        callback(study, frozen)
    return failed


class Liveness:
    """This driver's trials in flight, their beats, and what happens to a dead driver's trial.

    ``kind`` is the storage scheme's (``heartbeat`` or ``lease``), or None where nothing outlives
    the process (an in-memory study). ``storage`` (heartbeats are recorded on it) and ``tracker``
    (stale trials' runs are closed in it) are attached once they exist: the storage is built with
    ``on_stale`` as its callback, and MLflow is opened after the study.
    """

    def __init__(self, kind: str | None, max_retries: int, where: str = "storage") -> None:
        self.kind, self.max_retries, self.where = kind, max_retries, where
        self.storage = None
        self.tracker = None
        self.lock = threading.Lock()  # guards in_flight only: never held across a storage call
        self.in_flight: dict[int, int] = {}  # trial id -> number

    @classmethod
    def for_url(cls, url: str, max_retries: int) -> Liveness:
        return cls(scheme_of(url).liveness, max_retries, f"storage {redact(url)}")

    def on_stale(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """A dead driver's trial: close its MLflow run, re-queue its configuration while attempts are left."""
        if self.tracker is not None and "mlflow_run_id" in trial.user_attrs:
            self.tracker.kill_trial(trial.user_attrs["mlflow_run_id"], "crash", "worker lost: no heartbeat")
        if attempt_of(trial) <= self.max_retries:
            requeue(study, trial, attempt_of(trial) + 1)

    def fail_stale(self, study: optuna.Study) -> None:
        """Fail (and re-queue) the trials of dead drivers: by heartbeat (RDB) or by lease (journal)."""
        if self.kind == "heartbeat":
            optuna.storages.fail_stale_trials(study)
            fail_expired_leases(study, GRACE_S, self.on_stale, unowned_only=True)
        elif self.kind == "lease":
            fail_expired_leases(study, GRACE_S, self.on_stale)

    def claimed(self, study: optuna.Study, trial: optuna.Trial) -> None:
        """Track a trial this driver claimed and beat for it at once, retried with backoff: a trial
        whose first beat was lost has no heartbeat at all, so it could never be found stale."""
        trial_id = optuna_private.trial_id(trial)
        with self.lock:
            self.in_flight[trial_id] = trial.number
        if self.kind == "heartbeat":
            storage = self.storage
            with_retries(lambda: storage.record_heartbeat(trial_id), self.where)
        elif self.kind == "lease":
            with_retries(lambda: renew_lease(study), self.where)

    def released(self, trial: optuna.Trial) -> None:
        with self.lock:
            self.in_flight.pop(optuna_private.trial_id(trial), None)

    def beat(self, study: optuna.Study, stop: threading.Event) -> None:
        """Beat for this driver's running trials every ``HEARTBEAT_S`` until ``stop`` is set; a
        missed beat is retried at the next interval."""
        while not stop.wait(HEARTBEAT_S):
            with self.lock:
                ids = list(self.in_flight)
            if self.kind == "lease" and ids:
                with contextlib.suppress(Exception):
                    renew_lease(study)
            for trial_id in ids if self.kind == "heartbeat" else ():
                with contextlib.suppress(Exception):
                    self.storage.record_heartbeat(trial_id)

    @property
    def needed(self) -> bool:
        """Whether beats must be sent at all (a storage that outlives this process)."""
        return self.kind is not None
