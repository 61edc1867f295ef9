"""The Optuna engine: ask a trial, run it, tell the outcome, track it; resumable to a total.

How outcomes reach Optuna (and so the sampler):

* ``ok``: COMPLETE with the final validation accuracy.
* ``pruned``: PRUNED (the pruner's decision, at the last reported epoch).
* ``diverged_*``: PRUNED at the epoch it diverged, with value 0.0 reported there: a diverged
  model's accuracy counts as zero, so TPE ranks it below every trained trial of that length.
* deterministic failures (``oom_*``, ``shape_error``, ``data_error``): PRUNED with the constraint
  ``deterministic_failure = 1`` (infeasible), so TPE puts their region among the bad ones.
  Optuna's stock behaviour is a plain FAIL, which its samplers ignore and so propose again.
* ``crash`` and ``timeout``: FAIL, and the configuration is enqueued again up to ``max_retries``
  times (the retried attempts are recorded but do not count toward the total).
* ``config_error``: FAIL, and the study stops with the message.

Every trial carries ``outcome``, ``factors``, ``mlflow_run_id`` and, for failures, ``error_type``,
``error_message``, ``failed_epoch`` and ``failed_step`` user attrs.

``study.trials`` is the study's total across every driver and worker (see ``budget.py``): the
``run`` command tops the study up with tickets, workers only train popped tickets, and trials
that must run again (interrupted, retried, lost with a dead worker) are superseded by new
tickets. RDB storages keep a heartbeat per running trial; a stale one (its driver was killed) is
failed, its MLflow run closed as KILLED, and its configuration re-queued up to ``max_retries``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from rich.console import Console

from spp_search import failures
from spp_search.config import StudyConfig
from spp_search.engines import budget
from spp_search.engines.budget import attempt_of, requeue
from spp_search.errors import ConfigError, must
from spp_search.factors import param_text
from spp_search.isolation import TrialInterrupted, WorkerStartError
from spp_search.outcomes import Outcome
from spp_search.progress import StudyProgress, summary_table
from spp_search.redaction import redact, redact_cut
from spp_search.storage import GRACE_S, HEARTBEAT_S, exclusive, make_storage, with_retries
from spp_search.tracking import Tracker
from spp_search.trial import TrialResult, TrialSpec

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"  # which driver ran a trial
RETRIED = "retried"


def make_sampler(config: StudyConfig, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded with ``seed`` (a driver's own, see ``driver_seed``)."""
    seed = config.study.seed if seed is None else seed
    if config.study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


DRIVER_PREFIX = "driver:"


def driver_seed(study: optuna.Study, base_seed: int, driver: str = WORKER_ID) -> int:
    """This driver's sampler seed: ``base_seed`` for the study's first driver, another for each
    later one, so drivers sharing a storage do not propose the same configurations (with one seed,
    RandomSampler's sequences and TPE's start-up trials were identical in every driver).

    Each driver registers under its own key in the study's user attributes (an upsert per key, no
    read-modify-write) and takes its rank among the registered drivers by registration time: two
    drivers starting together both see both keys, in the same order. A single driver, the first,
    keeps ``base_seed`` (reproducible); asking again returns the same seed.
    """
    key = DRIVER_PREFIX + driver
    if key not in study.user_attrs:
        study.set_user_attr(key, time.time())
    drivers = sorted((when, name) for name, when in study.user_attrs.items() if name.startswith(DRIVER_PREFIX))
    rank = [name for _, name in drivers].index(key)
    return base_seed if rank == 0 else (base_seed + 1_000_003 * rank) % (2**32)


def make_pruner(config: StudyConfig) -> optuna.pruners.BasePruner:
    if config.study.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


def open_study(config: StudyConfig, holder: dict | None = None) -> optuna.Study:
    """Create the study, or load it if it exists and was made from the same experiment.

    ``holder`` receives the tracker and config later, for the heartbeat's stale-trial callback.
    """
    holder = holder if holder is not None else {}
    storage = make_storage(config.study.storage, on_stale(holder))
    holder["storage"] = storage  # for the trial loop: heartbeats (RDB) or leases (journal)
    study = optuna.create_study(
        study_name=config.study.name,
        storage=storage,
        direction="maximize",
        sampler=make_sampler(config),
        pruner=make_pruner(config),
        load_if_exists=True,
    )
    stored = study.user_attrs.get("fingerprint")
    if stored is None:
        study.set_user_attr("fingerprint", config.fingerprint())
        study.set_user_attr("config", json.loads(redact(json.dumps(config.to_dict(), default=list))))
    elif stored != config.fingerprint():
        raise ConfigError(
            must(
                "study-name",
                "name a study made from the same config (data, defaults, space, seed)",
                config.study.name,
                "Use a new --study-name, or rerun with the original config.",
            )
        )
    return study


def on_stale(holder: dict):
    """Optuna's heartbeat callback for a trial whose driver died: close its run, re-queue it."""

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        tracker, config = holder.get("tracker"), holder.get("config")
        if tracker is not None and "mlflow_run_id" in trial.user_attrs:
            tracker.kill_trial(trial.user_attrs["mlflow_run_id"], "crash", "worker lost: no heartbeat")
        if config is not None and attempt_of(trial) <= config.study.max_retries:
            requeue(study, trial, attempt_of(trial) + 1)

    return callback


LEASE_PREFIX = "lease:"


def renew_lease(study: optuna.Study, driver: str = WORKER_ID) -> None:
    """Journal storages (file, Redis) have no heartbeat in Optuna: each driver keeps a lease, the
    time of its last beat, in the study's user attributes (one key per driver: an upsert)."""
    study.set_user_attr(LEASE_PREFIX + driver, time.time())


def fail_expired_leases(study: optuna.Study, grace: float, callback, unowned_only: bool = False) -> list[int]:
    """Fail the RUNNING trials whose driver's lease is older than ``grace`` seconds (its driver is
    gone: SIGKILL, machine loss), as Optuna's heartbeat does for RDB storages, and hand each to
    ``callback(study, frozen_trial)`` (close its MLflow run, re-queue it). A trial whose driver
    never renewed a lease counts from its start. Returns the numbers failed here.

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
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # another driver got there first
        failed.append(trial.number)
        callback(study, study._storage.get_trial(trial._trial_id))
    return failed


class OptunaReporter:
    """Logs each epoch to MLflow and to the Optuna trial; answers the pruner's verdict."""

    def __init__(self, trial: optuna.Trial, tracker: Tracker, run_id: str, prune: bool) -> None:
        self.trial, self.tracker, self.run_id, self.prune = trial, tracker, run_id, prune
        self.reported: set[int] = set()

    def epoch_end(self, epoch: int, metrics: dict[str, float]) -> bool:
        self.tracker.log_epoch(self.run_id, epoch, metrics)
        self.trial.report(metrics["val_accuracy"], epoch)
        self.reported.add(epoch)
        return self.prune and self.trial.should_prune()


INFEASIBLE = "deterministic_failure"


def recorded_state(result: TrialResult, feedback: bool = True) -> tuple[TrialState, dict[str, float]]:
    """How an outcome is recorded in Optuna, by both engines: the state and the constraints.

    ``ok``: COMPLETE; ``pruned`` and ``diverged_*``: PRUNED; deterministic failures: PRUNED with
    ``deterministic_failure = 1`` (infeasible); ``crash``, ``timeout``, ``config_error``: FAIL. With
    ``feedback`` off, every failure is a plain FAIL (Optuna's stock behaviour, which its samplers
    ignore); kept for measuring what the feedback buys.
    """
    outcome = result.outcome
    if outcome is Outcome.OK:
        return TrialState.COMPLETE, {}
    if outcome is Outcome.PRUNED or (feedback and outcome.diverged):
        return TrialState.PRUNED, {}
    if feedback and outcome.deterministic:
        return TrialState.PRUNED, {INFEASIBLE: 1.0}
    return TrialState.FAIL, {}


def failure_attrs(result: TrialResult) -> dict:
    """The user attributes every recorded trial carries about its outcome (both engines)."""
    attrs: dict = {"outcome": result.outcome.value}
    for key in ("failed_epoch", "failed_step"):
        if getattr(result, key) is not None:
            attrs[key] = getattr(result, key)
    if result.outcome.failed:
        attrs["error_type"], attrs["error_message"] = failures.reason(result)
    return attrs


def tell(
    study: optuna.Study,
    trial: optuna.Trial,
    result: TrialResult,
    reporter: OptunaReporter,
    feedback: bool = True,
) -> optuna.trial.FrozenTrial:
    """Record ``result`` in Optuna (``recorded_state``): a diverged trial reports 0.0 at the epoch
    it diverged, so TPE ranks it below every trained trial of that length."""
    for key, value in failure_attrs(result).items():
        trial.set_user_attr(key, value)
    state, constraints = recorded_state(result, feedback)
    for key, value in constraints.items():
        trial.set_constraint(key, value)
    if state is TrialState.COMPLETE:
        return study.tell(trial, result.value)
    if state is TrialState.PRUNED and result.outcome.diverged:
        epoch = result.failed_epoch or 0
        if epoch not in reporter.reported:
            trial.report(0.0, epoch)
    return study.tell(trial, state=state)


def wants_retry(trial: optuna.Trial, result: TrialResult, max_retries: int) -> bool:
    """A crash or timeout is retried while its attempt number is at most ``max_retries``."""
    return result.outcome.transient and attempt_of(trial) <= max_retries


@dataclass
class StudySummary:
    outcomes: Counter
    best: tuple[int, float, str] | None
    trials_run: int


def describe(factors: dict, names: tuple[str, ...]) -> str:
    """``levels=1,2,4 pooling=max learning_rate=0.00316``: the searched factors, compact."""

    def text(value: object) -> str:
        return f"{value:.3g}" if isinstance(value, float) else param_text(value)

    return " ".join(f"{k}={text(factors[k])}" for k in names)


def best_of(study: optuna.Study, names: tuple[str, ...]) -> tuple[int, float, str] | None:
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("outcome") == Outcome.OK.value
    ]
    if not done:
        return None
    best = max(done, key=lambda t: t.value)
    return best.number, best.value, describe(best.user_attrs["factors"], names)


class TrialLoop:
    """Claim, train, tell and track trials on one or more runners until the budget is spent.

    Each runner (a worker process) gets its own thread. A slot claims a ticket (``budget.py``)
    under a lock; when none is waiting but trials still run elsewhere, it waits, failing stale
    ones (dead drivers) so their tickets come back. A heartbeat thread keeps this driver's
    running trials alive in RDB storages.
    """

    def __init__(self, study, config, tracker, device, progress, names, storage=None, on_stale=None) -> None:
        self.study, self.config, self.tracker, self.device = study, config, tracker, device
        beats = storage is not None and storage.get_heartbeat_interval() is not None
        self.heart = storage if beats else None  # RDB storages; journal storages have none
        # journal storages: leases instead of heartbeats (``on_stale`` handles a dead driver's trial)
        self.on_stale = on_stale if storage is not None and self.heart is None else None
        self.stale_callback = on_stale
        self.progress, self.names = progress, names
        self.lock, self.stop = threading.Lock(), threading.Event()
        # the trials this driver runs, for heartbeats: under their own lock, so that a beat never
        # waits for a claim stuck on the storage (and a live trial is not declared stale meanwhile)
        self.flight_lock = threading.Lock()
        self.in_flight: dict[int, int] = {}  # trial id -> number
        self.ran = 0

    def claim(self) -> optuna.Trial | None:
        """The next ticket, or None when the study's total is reached (or we are stopping).

        Stale trials (their driver died or stopped past the grace) are failed and re-queued before
        each claim, as Optuna's own ``optimize`` does, not only while waiting: drivers busy with a
        full queue would otherwise leave them RUNNING until the queue ran dry.
        """
        while not self.stop.is_set():
            self._fail_stale()
            with self.lock:
                if budget.counted(self.study) >= self.config.study.trials:
                    return None
                if budget.waiting_numbers(self.study):
                    trial = self.study.ask()
                    if budget.is_ticket(self.study, trial):  # popped from the queue (decided from the trial itself)
                        with self.flight_lock:
                            self.in_flight[trial._trial_id] = trial.number
                        self._first_beat(trial._trial_id)  # a trial with no heartbeat is never stale
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
                with self.flight_lock:
                    self.in_flight.pop(trial._trial_id, None)
                    self.ran += 1

    def _fail_stale(self) -> None:
        """Fail (and re-queue) trials whose driver died: by heartbeat (RDB) or by lease (journal)."""
        if self.heart is not None:
            optuna.storages.fail_stale_trials(self.study)
            if self.stale_callback is not None:
                fail_expired_leases(self.study, GRACE_S, self.stale_callback, unowned_only=True)
        elif self.on_stale is not None:
            fail_expired_leases(self.study, GRACE_S, self.on_stale)

    def _beat_now(self, trial_id: int) -> None:
        if self.heart is not None:
            with contextlib.suppress(Exception):  # a missed beat is retried next interval
                self.heart.record_heartbeat(trial_id)
        elif self.on_stale is not None:
            with contextlib.suppress(Exception):
                renew_lease(self.study)

    def _first_beat(self, trial_id: int) -> None:
        """The first heartbeat (or lease renewal), retried with backoff: Optuna only finds a trial
        stale by its heartbeat, so a trial whose first beat was lost could never go stale."""
        where = f"storage {redact(self.config.study.storage)}"
        if self.heart is not None:
            heart = self.heart
            with_retries(lambda: heart.record_heartbeat(trial_id), where)
        elif self.on_stale is not None:
            with_retries(lambda: renew_lease(self.study), where)

    def beat(self) -> None:
        """Record heartbeats of this driver's running trials until the loop stops."""
        while not self.stop.wait(HEARTBEAT_S):
            with self.flight_lock:
                ids = list(self.in_flight)
            for trial_id in ids:
                self._beat_now(trial_id)

    def _finished_elsewhere(self, trial, run_id: str | None, start: float) -> None:
        """Another driver found this trial stale while it ran (its heartbeats did not reach the
        storage in time), failed it and re-queued its configuration, which runs again. Its result
        is dropped, its MLflow run closed KILLED as ``stale`` (consistent with Optuna), and this
        driver goes on."""
        message = "finished by another driver while it ran (no heartbeat seen in time); its configuration was re-queued"
        if run_id is not None:
            self.tracker.kill_trial(run_id, "stale", message)
        self.progress.console.print(
            f"trial {trial.number:>3} [yellow]stale[/yellow]: {message} ({time.perf_counter() - start:.1f} s)"
        )

    def run(self, runners: list) -> None:
        """Run the slots (in the calling thread when there is one runner: Ctrl-C stops it there)."""
        heart = None
        if self.heart is not None or self.on_stale is not None:
            heart = threading.Thread(target=self.beat, name="heartbeat", daemon=True)
            heart.start()
        try:
            if len(runners) == 1:
                self.slot(runners[0])
            else:
                self._run_threads(runners)
        finally:
            self.stop.set()
            if heart is not None:
                heart.join(timeout=HEARTBEAT_S + 1)

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
        start, run_id = time.perf_counter(), None

        def started(new_run_id: str) -> None:
            nonlocal run_id
            run_id = new_run_id

        try:
            self._run_one(trial, runner, started, start)
        except UpdateFinishedTrialError:
            self._finished_elsewhere(trial, run_id, start)

    def _run_one(self, trial: optuna.Trial, runner, started, start: float) -> None:
        study, config, tracker = self.study, self.config, self.tracker
        factors = config.space.suggest(trial, config.defaults)
        trial.set_user_attr("factors", json.loads(json.dumps(factors, default=list)))
        seed = config.study.seed + trial.number
        extra = {"seed": seed, "epochs": config.study.epochs, "device": self.device, "backend": config.study.backend}
        if "arm" in trial.user_attrs:
            extra["arm"] = trial.user_attrs["arm"]
        run_id = tracker.start_trial(trial.number, factors, extra)
        started(run_id)
        trial.set_user_attr("mlflow_run_id", run_id)
        spec = TrialSpec(
            trial.number,
            factors,
            config.data.for_trial(),
            config.study.epochs,
            seed,
            self.device,
            backend=config.study.backend,
        )
        reporter = OptunaReporter(trial, tracker, run_id, config.study.pruner != "none")
        try:
            result = runner.run(spec, reporter)
        except UpdateFinishedTrialError:
            raise  # an epoch report found the trial finished elsewhere (run_one handles it)
        except (KeyboardInterrupt, TrialInterrupted, WorkerStartError):
            # not the trial's doing (Ctrl-C, the study stopping, a broken worker environment):
            # it runs again later at no attempt's cost
            if self._fail_if_ours(trial, budget.INTERRUPTED):
                budget.requeue(study, trial, budget.attempt_of(trial))
            tracker.kill_trial(run_id, budget.INTERRUPTED)
            raise
        except BaseException as exc:
            # the runner itself failed (a broken pipe, a bug in the driver): a crash of this
            # trial, re-run while attempts are left; the study stops so that it is seen
            message = redact_cut(f"runner failed: {type(exc).__name__}: {exc}", 500)
            ours = self._fail_if_ours(trial, Outcome.CRASH.value, message)
            if ours and budget.attempt_of(trial) <= config.study.max_retries:
                budget.requeue(study, trial, budget.attempt_of(trial) + 1)
            tracker.kill_trial(run_id, Outcome.CRASH.value, f"runner failed: {type(exc).__name__}", status="FAILED")
            raise
        retried = wants_retry(trial, result, config.study.max_retries)
        if retried:
            trial.set_user_attr(RETRIED, True)  # recorded; its re-run takes its place in the total
        frozen = with_retries(
            lambda: tell(study, trial, result, reporter, config.study.failure_feedback),
            f"storage {redact(config.study.storage)}",
        )  # a result is never dropped, unless the trial is no longer ours (run_one)
        if retried:
            budget.requeue(study, trial, budget.attempt_of(trial) + 1)
        tags = {"optuna_state": frozen.state.name, "attempt": str(budget.attempt_of(trial))}
        tracker.end_trial(run_id, result, {**tags, RETRIED: str(retried).lower()})
        self.progress.trial_done(trial.number, result, time.perf_counter() - start, describe(factors, self.names))
        if result.outcome is Outcome.CONFIG_ERROR:
            raise ConfigError(result.error_message)

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
    holder: dict = {}
    # drivers starting together must not both enqueue the tickets (or an ablation's arms), nor
    # both create the MLflow experiment, its schema or the parent run: start-up runs under a lock
    with exclusive(config.study.storage, f"start:{config.study.name}"):
        study = open_study(config, holder)
        study.sampler = make_sampler(config, driver_seed(study, config.study.seed))
        if prepare is not None and not study.get_trials(deepcopy=False):
            prepare(study)
        if not join:
            budget.top_up(study, config.study.trials)
        total = int(study.user_attrs.get("total_trials", config.study.trials))
        config = dataclasses.replace(config, study=dataclasses.replace(config.study, trials=total))
        tracker = Tracker(config.study.tracking_uri, config.study.name)
        holder.update(tracker=tracker, config=config)
        tracker.open_study(config.to_dict(), {**config.defaults, "device": device, "backend": config.study.backend})
        tracker.log_data_check(data_check)
        if data_check is not None:  # the report's claims need to know whether band counts differed
            study.set_user_attr("data_bands", data_check["bands"])
            study.set_user_attr("data_classes", len(data_check["classes"]))
        closed = tracker.close_orphans(live_run_ids(study))
    if closed:
        console.print(f"closed {closed} MLflow run(s) left running by an interrupted run")
    names = config.space.names or ("levels", "pooling")
    start = time.perf_counter()
    workers = f"{len(runners)} worker{'s' if len(runners) > 1 else ''}"
    label = f"{config.study.name} ({device}, {config.study.backend}, {workers})"
    status, loop = "FAILED", None
    try:
        with StudyProgress(console, total, min(budget.counted(study), total), label) as progress:
            loop = TrialLoop(study, config, tracker, device, progress, names, holder.get("storage"), on_stale(holder))
            loop.run(runners)
        status = "FINISHED" if budget.counted(study) >= total else "RUNNING"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        summary = close_study(study, tracker, console, names, status, start)
    return dataclasses.replace(summary, trials_run=loop.ran if loop else 0)


def close_study(study, tracker, console: Console, names: tuple[str, ...], status: str, start: float) -> StudySummary:
    """End the parent MLflow run with the study's totals and print the outcome table and best
    trial (both engines, whatever stopped them)."""
    finished = budget.counted_trials(study)
    outcomes = Counter(budget.outcome_of(t) for t in finished)
    best = best_of(study, names)
    tracker.close_study({"trials_finished": len(finished), "best_val_accuracy": best[1] if best else None}, status)
    console.print(summary_table(outcomes, time.perf_counter() - start))
    if best:
        console.print(f"best: trial {best[0]}, val_accuracy {best[1]:.4f}: {best[2]}")
    return StudySummary(outcomes, best, len(finished))


def live_run_ids(study: optuna.Study) -> set[str]:
    """MLflow runs of trials still RUNNING in the storage (another worker may own them)."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return {t.user_attrs["mlflow_run_id"] for t in running if "mlflow_run_id" in t.user_attrs}
