"""The trial budget's tickets under races between drivers (study/budget.py, TrialLoop.claim), and liveness."""

from __future__ import annotations

import threading

import optuna
import pytest

from spp_search.config.settings import build_config
from spp_search.study import budget
from spp_search.study.loop import TrialLoop

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _loop(study, trials: int) -> TrialLoop:
    config = build_config({"study": {"trials": trials}})
    return TrialLoop(study, config, tracker=None, device="cpu", progress=None, names=())


def _claim(loop: TrialLoop, timeout: float = 20.0):
    """``loop.claim()`` in a thread: a claim that spins (the old race) fails the test, not hangs it."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(loop.claim()), daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        loop.stop.set()
        thread.join(5)
        raise AssertionError(f"claim() was still spinning after {timeout} s")
    return result[0]


def _stale_once(monkeypatch, snapshot: set[int]) -> None:
    """``waiting_numbers`` answers ``snapshot`` once (what this driver saw), then the truth."""
    real, calls = budget.waiting_numbers, []

    def waiting(study):
        calls.append(1)
        return snapshot if len(calls) == 1 else real(study)

    monkeypatch.setattr(budget, "waiting_numbers", waiting)


def test_a_retry_ticket_enqueued_by_another_driver_between_snapshot_and_ask_is_claimed(monkeypatch):
    """claim() used to compare the popped trial with an earlier snapshot of the queue: a retry
    ticket another driver enqueued in between was marked no_budget and FAILed (a configuration
    lost, the study short of its total)."""
    study = optuna.create_study(direction="maximize")
    budget.top_up(study, 2)
    snapshot = budget.waiting_numbers(study)  # {0, 1}: what this driver saw
    other = study.ask()  # another driver pops ticket 0 ...
    study.tell(other, state=optuna.trial.TrialState.FAIL)
    budget.requeue(study, other, 2)  # ... its trial crashed: a retry ticket, number 2
    study.ask()  # and pops ticket 1 too
    _stale_once(monkeypatch, snapshot)
    claimed = _claim(_loop(study, trials=2))
    assert claimed is not None and claimed.number == 2
    assert claimed.user_attrs.get(budget.RETRY_OF) == 0
    assert not [t for t in study.trials if t.user_attrs.get("outcome") == budget.NO_BUDGET]


def test_a_trial_that_is_no_ticket_is_closed_as_no_budget(monkeypatch):
    """The real race for the last tickets: the queue emptied after this driver looked, so Optuna
    creates a fresh trial; it is closed at once as no_budget, and the driver waits for the rest."""
    study = optuna.create_study(direction="maximize")
    budget.top_up(study, 2)
    snapshot = budget.waiting_numbers(study)
    running = [study.ask(), study.ask()]  # another driver took both tickets
    _stale_once(monkeypatch, snapshot)
    loop = _loop(study, trials=2)
    timer = threading.Timer(1.0, lambda: [study.tell(t, 0.5) for t in running])  # ... and finishes them
    timer.start()
    assert _claim(loop) is None
    no_budget = [t for t in study.trials if t.user_attrs.get("outcome") == budget.NO_BUDGET]
    assert len(no_budget) == 1 and no_budget[0].state == optuna.trial.TrialState.FAIL
    assert budget.counted(study) == 2


def test_a_configuration_a_user_enqueued_with_optuna_is_a_ticket():
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"x": 1})  # plain Optuna: no spp-search attributes
    claimed = _claim(_loop(study, trials=1))
    assert claimed is not None and claimed.number == 0


class _BrokenRunner:
    """A runner that fails in the driver (a broken pipe, a reporter bug): not an interruption."""

    def run(self, spec, reporter):
        raise RuntimeError("runner failed")


def test_a_runner_failure_costs_an_attempt_and_is_not_requeued_forever(tmp_path):
    """A runner exception was re-queued as "interrupted" at no attempt cost, forever."""
    import pytest

    from spp_search.study.tracking import Tracker

    study = optuna.create_study(direction="maximize")
    budget.top_up(study, 1)
    loop = _loop(study, trials=1)
    loop.config = build_config({"study": {"trials": 1, "max_retries": 1}})
    loop.tracker = Tracker(f"sqlite:///{tmp_path}/m.db", "broken")
    loop.tracker.open_study({}, {})
    attempts = []
    for _ in range(3):
        trial = _claim(loop, timeout=10) if budget.waiting_numbers(study) else None
        if trial is None:
            break
        attempts.append(budget.attempt_of(trial))
        with pytest.raises(RuntimeError):
            loop.run_one(trial, _BrokenRunner())
    assert attempts == [1, 2]  # the retry costs an attempt; after max_retries it is not re-queued
    assert [t.user_attrs["outcome"] for t in study.trials] == ["crash", "crash"]


class _Heart:
    """A storage's heartbeat side, recording beats (optionally failing the first ones)."""

    def __init__(self, failures: int = 0) -> None:
        self.beats: list[int] = []
        self.failures = failures

    def record_heartbeat(self, trial_id: int) -> None:
        if self.failures:
            self.failures -= 1
            from sqlalchemy.exc import OperationalError

            raise OperationalError("UPDATE heartbeat", {}, Exception("database is locked"))
        self.beats.append(trial_id)


def test_heartbeats_do_not_wait_for_a_claim(monkeypatch):
    """The heartbeat thread waited on the lock claim() holds across slow storage round trips, so a
    live trial could be declared stale (grace 30 s) while its driver waited (SQLite: up to 60 s)."""
    from spp_search.study import liveness

    monkeypatch.setattr(liveness, "HEARTBEAT_S", 0.05)
    study = optuna.create_study(direction="maximize")
    loop = _loop(study, trials=1)
    loop.liveness = liveness.Liveness("heartbeat", max_retries=2)
    loop.liveness.storage = _Heart()
    loop.liveness.in_flight[7] = 0
    beating = threading.Thread(target=loop.liveness.beat, args=(study, loop.stop), daemon=True)
    with loop.lock:  # a claim in progress, stuck on the storage
        beating.start()
        threading.Event().wait(0.5)
        beats = len(loop.liveness.storage.beats)
    loop.stop.set()
    beating.join(2)
    assert beats >= 3


def test_a_failed_first_beat_is_retried(monkeypatch):
    """A claimed trial whose first beat failed had no heartbeat at all, so it could never go stale."""
    from spp_search.infra import retry
    from spp_search.study.liveness import Liveness

    monkeypatch.setattr(retry.time, "sleep", lambda s: None)
    study = optuna.create_study(direction="maximize")
    budget.top_up(study, 1)
    loop = _loop(study, trials=1)
    loop.liveness = Liveness("heartbeat", max_retries=2)
    loop.liveness.storage = _Heart(failures=2)
    monkeypatch.setattr(loop.liveness, "fail_stale", lambda study: None)  # an in-memory study has no heartbeats
    trial = _claim(loop)
    assert trial is not None and loop.liveness.storage.beats == [trial._trial_id]


class _RunnerFailedElsewhere:
    """While this trial trains, another driver declares it stale: FAILs and re-queues it. With
    ``report``, the trial then reports an epoch (a driver SIGSTOPped mid-epoch and resumed)."""

    def __init__(self, study, report: bool = False) -> None:
        self.study, self.report = study, report

    def run(self, spec, reporter):
        from spp_search.trial.outcomes import Outcome
        from spp_search.trial.run import TrialResult

        trial = self.study.trials[spec.number]
        self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        budget.requeue(self.study, trial, 2)
        if self.report:
            reporter.epoch_end(0, {"val_accuracy": 0.8})
        return TrialResult(outcome=Outcome.OK, value=0.8, epochs=[{"val_accuracy": 0.8}])


@pytest.mark.parametrize("report", [False, True], ids=["at-tell", "at-epoch-report"])
def test_a_trial_finished_by_another_driver_while_it_ran_keeps_the_driver_alive(tmp_path, report):
    """tell() raised UpdateFinishedTrialError and the driver died with a traceback; so did the
    next epoch's report (the chaos suite's SIGSTOPped driver, resumed mid-trial)."""
    from mlflow import MlflowClient

    from spp_search.study.progress import StudyProgress
    from spp_search.study.tracking import Tracker

    study = optuna.create_study(direction="maximize")
    budget.top_up(study, 1)
    loop = _loop(study, trials=1)
    loop.tracker = Tracker(f"sqlite:///{tmp_path}/m.db", "stale")
    loop.tracker.open_study({}, {})
    from rich.console import Console

    with StudyProgress(Console(file=open(tmp_path / "out.txt", "w")), 1, 0, "x") as progress:
        loop.progress = progress
        trial = _claim(loop)
        loop.run_one(trial, _RunnerFailedElsewhere(study, report))  # no exception
    run = MlflowClient(f"sqlite:///{tmp_path}/m.db").get_run(study.trials[0].user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and run.data.tags["outcome"] == "stale"
    assert study.trials[0].state == optuna.trial.TrialState.FAIL  # as the other driver left it
    assert budget.waiting_numbers(study) == {1}  # and its configuration waits to run again


def test_journal_storages_fail_the_trials_of_a_driver_whose_lease_expired(tmp_path):
    """Journal storages (file, Redis) have no heartbeat: a SIGKILLed driver's trial stayed RUNNING
    forever and a rerun waited on it. Each driver now renews a lease; an expired one frees its trials."""
    import time

    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from spp_search.study.liveness import LEASE_PREFIX, fail_expired_leases

    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(tmp_path / "j.log"))))
    budget.top_up(study, 2)
    dead, alive = study.ask(), study.ask()
    dead.set_user_attr("worker", "gone:1")
    alive.set_user_attr("worker", "here:2")
    study.set_user_attr(LEASE_PREFIX + "gone:1", time.time() - 100)
    study.set_user_attr(LEASE_PREFIX + "here:2", time.time())
    handed = []
    failed = fail_expired_leases(
        study, grace=30, callback=lambda s, t: (handed.append(t.number), budget.requeue(s, t, 2))
    )
    assert failed == [0] and handed == [0]
    states = {t.number: t.state.name for t in study.trials}
    assert states[0] == "FAIL" and states[1] == "RUNNING" and budget.waiting_numbers(study) == {2}
    assert fail_expired_leases(study, grace=30, callback=lambda s, t: None) == []  # once only


def test_a_trial_finished_elsewhere_before_its_run_is_linked_leaves_no_orphan_run(tmp_path):
    """A driver stopped between creating a trial's MLflow run and linking it to the trial (the
    chaos suite's SIGSTOP) came back to a trial another driver had re-queued: the run stayed in
    MLflow, named by no trial (one MLflow run per trial broken)."""
    from mlflow import MlflowClient
    from rich.console import Console

    from spp_search.study.progress import StudyProgress
    from spp_search.study.tracking import Tracker

    study = optuna.create_study(direction="maximize")
    budget.top_up(study, 1)
    loop = _loop(study, trials=1)
    loop.tracker = Tracker(f"sqlite:///{tmp_path}/m.db", "orphan")
    loop.tracker.open_study({}, {})
    start_trial = loop.tracker.start_trial

    def started_then_lost(number, factors, extra):
        run_id = start_trial(number, factors, extra)
        study.tell(number, state=optuna.trial.TrialState.FAIL)  # another driver found it stale
        return run_id

    loop.tracker.start_trial = started_then_lost
    with StudyProgress(Console(file=open(tmp_path / "out.txt", "w")), 1, 0, "x") as progress:
        loop.progress = progress
        loop.run_one(_claim(loop), _BrokenRunner())  # the runner is never reached
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    experiment = client.get_experiment_by_name("orphan").experiment_id
    assert client.search_runs([experiment], "tags.`spp_search.role` = 'trial'") == []
