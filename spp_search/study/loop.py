"""The Optuna engine's trial loop: claim a ticket, train it on a runner, record and track it.

``study.trials`` is the study's total across every driver and worker (``budget.py``): the ``run``
command tops the study up with tickets, workers only train popped tickets, and trials that must
run again (interrupted, retried, lost with a dead worker) are superseded by new tickets. How a
result reaches Optuna is ``recording.py``'s; keeping trials alive and freeing a dead driver's is
``liveness.py``'s; the study's start and end are ``lifecycle.py``'s.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from rich.console import Console

from spp_search.config.settings import StudyConfig
from spp_search.infra.errors import ConfigError
from spp_search.infra.faults import HostFault, first_line, host_fault, host_fault_in, host_line
from spp_search.infra.redaction import redact, redact_cut
from spp_search.infra.retry import with_retries
from spp_search.infra.storage import HEARTBEAT_S, exclusive, lost_study
from spp_search.study import budget, recording
from spp_search.study.lifecycle import (
    StudySummary,
    close_study,
    describe,
    live_run_ids,
    open_study,
    resumed,
    start_tracking,
)
from spp_search.study.liveness import WORKER_ID, Liveness
from spp_search.study.progress import StudyProgress
from spp_search.study.seeding import driver_seed, make_sampler, trial_seed
from spp_search.study.tracking import Tracker
from spp_search.trial.isolation import TrialInterrupted, WorkerStartError
from spp_search.trial.outcomes import Outcome
from spp_search.trial.run import TrialSpec

HOST_STOP = "the host failed trial {number} (re-queued, not counted as the configuration's failure)"


class OptunaReporter:
    """Logs each validation round to MLflow and to the Optuna trial (under its key: the steps
    trained, or the epoch); answers the pruner's verdict."""

    def __init__(self, trial: optuna.Trial, tracker: Tracker, run_id: str, prune: bool) -> None:
        self.trial, self.tracker, self.run_id, self.prune = trial, tracker, run_id, prune
        self.reported: set[int] = set()

    def epoch_end(self, epoch: int, metrics: dict[str, float]) -> bool:
        self.tracker.log_epoch(self.run_id, epoch, metrics)
        self.trial.report(metrics["val_accuracy"], epoch)
        self.reported.add(epoch)
        return self.prune and self.trial.should_prune()


class TrialLoop:
    """Claim, train, tell and track trials on one or more runners until the budget is spent.

    Each runner (a worker process) gets its own thread. A slot claims a ticket (``budget.py``)
    under a lock; when none is waiting but trials still run elsewhere, it waits, freeing the
    trials of dead drivers (``liveness``) so their tickets come back.
    """

    def __init__(self, study, config, tracker, device, progress, names, liveness: Liveness | None = None) -> None:
        self.study, self.config, self.tracker, self.device = study, config, tracker, device
        self.progress, self.names = progress, names
        self.liveness = liveness or Liveness(None, config.study.max_retries)
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.ran = 0

    def claim(self) -> optuna.Trial | None:
        """The next ticket, or None when the study's total is reached (or we are stopping).

        Stale trials (their driver died or stopped past the grace) are failed and re-queued before
        each claim, as Optuna's own ``optimize`` does, not only while waiting: drivers busy with a
        full queue would otherwise leave them RUNNING until the queue ran dry.
        """
        while not self.stop.is_set():
            self.liveness.fail_stale(self.study)
            with self.lock:
                if budget.counted(self.study) >= self.config.study.trials:
                    return None
                if budget.waiting_numbers(self.study):
                    trial = self.study.ask()
                    if budget.is_ticket(self.study, trial):  # popped from the queue (decided from the trial itself)
                        self.liveness.claimed(self.study, trial)  # a trial with no heartbeat is never stale
                        trial.set_user_attr("worker", WORKER_ID)
                        return trial
                    trial.set_user_attr("outcome", budget.NO_BUDGET)  # lost the race for the last ticket
                    self.study.tell(trial, state=TrialState.FAIL)
                    continue
                if not budget.running(self.study):
                    return None  # nothing left to run anywhere
            self.stop.wait(HEARTBEAT_S)
        return None

    def slot(self, runner) -> None:
        """One runner's loop: claim a trial, run it, repeat."""
        while (trial := self.claim()) is not None:
            try:
                self.run_one(trial, runner)
            finally:
                self.liveness.released(trial)
                self.ran += 1

    def run(self, runners: list) -> None:
        """Run the slots (in the calling thread when there is one runner: Ctrl-C stops it there),
        with this driver's beats on a thread of their own."""
        beats = None
        if self.liveness.needed:
            beats = threading.Thread(target=self.liveness.beat, args=(self.study, self.stop), daemon=True)
            beats.start()
        try:
            if len(runners) == 1:
                self.slot(runners[0])
            else:
                self._run_threads(runners)
        finally:
            self.stop.set()
            if beats is not None:
                beats.join(timeout=HEARTBEAT_S + 1)

    def _run_threads(self, runners: list) -> None:
        with ThreadPoolExecutor(len(runners), thread_name_prefix="trial-slot") as pool:
            futures = [pool.submit(self.slot, r) for r in runners]
            try:
                while not all(f.done() for f in futures):
                    done, _ = wait(futures, timeout=0.5, return_when=FIRST_EXCEPTION)
                    for f in done:
                        f.result()  # re-raise a slot's failure (a config error) here
            except BaseException:
                self.stop.set()
                for r in runners:
                    r.abort()
                wait(futures)
                raise

    def run_one(self, trial: optuna.Trial, runner) -> None:
        """Train, tell and track one claimed trial.

        Whatever step finds the trial finished by another driver (its epoch report, its tell, a
        user attribute) ends it as ``stale`` here: the other driver already re-queued it.
        """
        start, run = time.perf_counter(), {}
        try:
            self._run_one(trial, runner, run, start)
        except UpdateFinishedTrialError:
            self._finished_elsewhere(trial, run, start)
        except BaseException as exc:  # the study stops: whatever stopped it, the trial and its run end
            self._release(trial, exc)
            self.tracker.ensure_terminal(run.get("id"), budget.INTERRUPTED, f"the study stopped: {first_line(exc)}")
            raise

    def _release(self, trial: optuna.Trial, exc: BaseException) -> None:
        """A trial still RUNNING when the study stops on an error outside its training (its MLflow
        run could not start, its result could not be told: a full disk) is failed and re-queued
        at no attempt's cost: ``host_error`` for a host fault, else ``interrupted``. Best effort:
        a storage that cannot be written leaves it to the heartbeat grace of the rerun."""
        try:
            running = {t.number for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
            if trial.number not in running:
                return  # finished here (told, or failed and re-queued by the handler that saw it)
            outcome = Outcome.HOST_ERROR.value if host_fault(exc) else budget.INTERRUPTED
            if self._fail_if_ours(trial, outcome, redact_cut(first_line(exc), 500)):
                budget.requeue(self.study, trial, budget.attempt_of(trial))
        except Exception:  # noqa: BLE001 - the fault that stops the study is what gets reported
            pass

    def _spec(self, trial: optuna.Trial, run: dict) -> tuple[TrialSpec, OptunaReporter]:
        """The claimed trial's factors, its MLflow run (id into ``run``) and what its runner needs."""
        config = self.config
        factors = config.space.suggest(trial, config.defaults)
        trial.set_user_attr("factors", json.loads(json.dumps(factors, default=list)))
        seed = trial_seed(config, trial.number)
        extra = {"seed": seed, **config.study.budget.params(), "device": self.device, "backend": config.study.backend}
        if "arm" in trial.user_attrs:
            extra["arm"] = trial.user_attrs["arm"]
        run["id"] = self.tracker.start_trial(trial.number, factors, extra)
        trial.set_user_attr("mlflow_run_id", run["id"])
        run["linked"] = True  # the trial names its run
        spec = TrialSpec(
            trial.number,
            factors,
            config.data.for_trial(),
            config.study.budget,
            seed,
            self.device,
            backend=config.study.backend,
            model=config.model_for_trial(),
        )
        return spec, OptunaReporter(trial, self.tracker, run["id"], config.study.pruner != "none")

    def _run_one(self, trial: optuna.Trial, runner, run: dict, start: float) -> None:
        spec, reporter = self._spec(trial, run)
        try:
            result = runner.run(spec, reporter)
        except UpdateFinishedTrialError:
            raise  # an epoch report found the trial finished elsewhere (run_one handles it)
        except (KeyboardInterrupt, TrialInterrupted, WorkerStartError):
            # not the trial's doing (Ctrl-C, the study stopping, a broken worker environment):
            # it runs again later at no attempt's cost
            if self._fail_if_ours(trial, budget.INTERRUPTED):
                budget.requeue(self.study, trial, budget.attempt_of(trial))
            self.tracker.kill_trial(run["id"], budget.INTERRUPTED)
            raise
        except BaseException as exc:
            self._runner_failed(trial, run["id"], exc)
            raise
        self._record(trial, result, reporter, run["id"])
        done = budget.counted(self.study)
        self.progress.trial_done(
            trial.number, result, time.perf_counter() - start, describe(spec.factors, self.names), done
        )
        if result.outcome.kind.fatal:
            raise ConfigError(result.error_message)
        if result.outcome.kind.host:
            name = host_fault_in(result.error_type or "", result.error_message or "") or "disk_full"
            raise HostFault(
                host_line(name, HOST_STOP.format(number=trial.number), redact_cut(result.error_message, 300))
            )

    def _runner_failed(self, trial: optuna.Trial, run_id: str, exc: BaseException) -> None:
        """The runner itself failed (a broken pipe, a bug in the driver): a crash of this trial,
        re-run while attempts are left; the caller re-raises, so the study stops and it is seen."""
        message = redact_cut(f"runner failed: {type(exc).__name__}: {exc}", 500)
        if name := host_fault(exc):  # the driver's own writes failed (a full disk): not the trial's doing
            self._host_failed(trial, run_id, message)
            raise HostFault(host_line(name, HOST_STOP.format(number=trial.number), first_line(exc))) from exc
        ours = self._fail_if_ours(trial, Outcome.CRASH.value, message)
        if ours and budget.attempt_of(trial) <= self.config.study.max_retries:
            budget.requeue(self.study, trial, budget.attempt_of(trial) + 1)
        self.tracker.kill_trial(run_id, Outcome.CRASH.value, f"runner failed: {type(exc).__name__}", status="FAILED")

    def _host_failed(self, trial: optuna.Trial, run_id: str, message: str) -> None:
        """Best effort on a failing host: the trial is ``host_error``, re-queued at no attempt's cost."""
        try:
            if self._fail_if_ours(trial, Outcome.HOST_ERROR.value, message):
                budget.requeue(self.study, trial, budget.attempt_of(trial))
        except Exception:  # noqa: BLE001 - the storage may be on the full disk too; a rerun frees the trial
            pass
        self.tracker.ensure_terminal(run_id, Outcome.HOST_ERROR.value, message)

    def _record(self, trial: optuna.Trial, result, reporter: OptunaReporter, run_id: str) -> None:
        """Tell Optuna (retried: a result is never dropped), re-queue a retried outcome, end the run."""
        s = self.config.study
        host = result.outcome.kind.host  # the host failed it: it runs again at no attempt's cost
        retried = host or recording.wants_retry(result, budget.attempt_of(trial), s.max_retries)
        if retried:
            trial.set_user_attr(recording.RETRIED, True)  # recorded; its re-run takes its place in the total
        frozen = with_retries(
            lambda: recording.tell(self.study, trial, result, reporter.reported, s.budget, s.failure_feedback),
            f"storage {redact(s.storage)}",
        )  # unless the trial is no longer ours (run_one)
        if retried:
            budget.requeue(self.study, trial, budget.attempt_of(trial) + (0 if host else 1))
        tags = {"optuna_state": frozen.state.name, "attempt": str(budget.attempt_of(trial))}
        self.tracker.end_trial(run_id, result, {**tags, recording.RETRIED: str(retried).lower()})

    def _fail_if_ours(self, trial: optuna.Trial, outcome: str, message: str | None = None) -> bool:
        """FAIL the trial with ``outcome``; False when another driver already finished (and
        re-queued) it, so that the caller does not re-queue it a second time."""
        try:
            trial.set_user_attr("outcome", outcome)
            if message:
                trial.set_user_attr("error_message", message)
            self.study.tell(trial, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            return False
        return True

    def _finished_elsewhere(self, trial, run: dict, start: float) -> None:
        """Another driver found this trial stale while it ran (its heartbeats did not reach the
        storage in time), failed it and re-queued its configuration, which runs again. Its result
        is dropped, its MLflow run closed KILLED as ``stale`` (consistent with Optuna), and this
        driver goes on. A run the trial never came to name (lost between its creation and the
        link) is deleted: every trial run in MLflow belongs to a trial."""
        message = "finished by another driver while it ran (no heartbeat seen in time); its configuration was re-queued"
        if run.get("id") is not None and run.get("linked"):
            self.tracker.kill_trial(run["id"], "stale", message)
        elif run.get("id") is not None:
            self.tracker.delete_run(run["id"])
        self.progress.console.print(
            f"trial {trial.number:>3} [yellow]stale[/yellow]: {message} ({time.perf_counter() - start:.1f} s)"
        )


def run_study(
    config: StudyConfig,
    runners: list,
    device: str,
    console: Console,
    prepare=None,
    join: bool = False,
    data_check: dict | None = None,
) -> StudySummary:
    """Run the study's trials on ``runners`` until its total is reached.

    ``prepare(study)`` runs once on a new study (an ablation enqueues its configurations there).
    ``join`` (the ``worker`` command) only works on tickets others created: it never tops up.
    ``data_check`` (a folder's ``DataCheck.to_dict``) goes on the parent run as ``data_check.json``.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    liveness = Liveness.for_url(config.study.storage, config.study.max_retries)
    # drivers starting together must not both enqueue the tickets (or an ablation's arms), nor
    # both create the MLflow experiment, its schema or the parent run: start-up runs under a lock
    with exclusive(config.study.storage, f"start:{config.study.name}"):
        study = open_study(config, liveness)
        config = resumed(study, config)  # a study made with epochs goes on with them
        study.sampler = make_sampler(config, driver_seed(study, config.study.seed))
        if prepare is not None and not study.get_trials(deepcopy=False):
            prepare(study)
        if not join:
            budget.top_up(study, config.study.trials)
        total = int(study.user_attrs.get("total_trials", config.study.trials))
        config = dataclasses.replace(config, study=dataclasses.replace(config.study, trials=total))
        tracker = start_tracking(study, config, device, data_check)
        liveness.tracker = tracker
        closed = tracker.close_orphans(live_run_ids(study))
    if closed:
        console.print(f"closed {closed} MLflow run(s) left running by an interrupted run")
    names = config.space.names or ("levels", "pooling")
    start = time.perf_counter()
    workers = f"{len(runners)} worker{'s' if len(runners) > 1 else ''}"
    label = f"{config.study.name} ({device}, {config.study.backend}, {workers})"
    console.print(f"budget: {config.study.budget.describe()}")
    status, loop = "FAILED", None
    try:
        with StudyProgress(console, total, min(budget.counted(study), total), label) as progress:
            loop = TrialLoop(study, config, tracker, device, progress, names, liveness)
            loop.run(runners)
        status = "FINISHED" if budget.counted(study) >= total else "RUNNING"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except Exception as exc:
        if isinstance(exc, HostFault) or host_fault(exc):
            raise  # already says what failed (a full disk), and a fresh read of its storage could fail too
        lost = lost_study(config.study.storage, config.study.name, len(study.get_trials(deepcopy=False)))
        if lost is None:
            raise
        kept = f"its MLflow runs are kept in {redact(config.study.tracking_uri)}"
        raise HostFault(f"{lost}: was it wiped or replaced while the study ran? {kept}; a rerun starts anew") from exc
    finally:
        summary = close_study(study, tracker, console, names, status, start, config.study.storage)
    return dataclasses.replace(summary, trials_run=loop.ran if loop else 0)
