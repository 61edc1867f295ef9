"""Where a trial runs: in a worker process (default) or inline (debugging).

A :class:`ProcessRunner` owns one worker process, started with ``spawn`` (never fork a process
that has imported a deep learning backend). The driver sends it a :class:`TrialSpec` and reads
epoch reports and a result over a pipe, answering each epoch with the pruner's verdict. While
waiting, it polls:

* the worker's resident memory (with its children) against ``host_memory_budget``: past it, the
  worker is killed and the trial is ``oom_host``. Under a host budget every trial gets a fresh
  worker, so the budget sees that trial alone (plus the backend's own start-up memory), not what
  earlier trials left in a reused process (allocator caches, loaded data);
* the wall time against ``trial_timeout``: past it, killed, ``timeout``;
* the worker's liveness: a negative exit code is a signal (SIGKILL, SIGSEGV, SIGFPE): ``crash``.

A healthy worker runs the next trial (saving the backend's start-up: TensorFlow ~5 s, JAX ~2 s,
and JAX's compiled programs); ``trial.run_trial`` clears the Keras session and reseeds every
generator first. Memory is the exception: a process keeps what its allocators cached, so each
trial reports ``peak_rss_mb`` (the worker's peak while it ran) and ``trial_rss_mb`` (that peak
above the worker's memory when the trial started: the trial's own). A
worker that failed hard (crash, timeout, out of memory) is replaced, and the replacement starts
right away so its start-up overlaps the driver's bookkeeping (``outcomes.KINDS``:
``replace_worker``). The GPU memory budget makes an over-budget trial fail with the backend's
out-of-memory error (TensorFlow ``ResourceExhaustedError``, JAX ``RESOURCE_EXHAUSTED``).

Where each runner's worker is placed (GPUs, cores) is ``placement.py``'s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from spp_search import backends
from spp_search.infra.errors import ConfigError, SppSearchError
from spp_search.infra.redaction import redact
from spp_search.trial.outcomes import Evidence, Outcome, classify
from spp_search.trial.run import Reporter, TrialResult, TrialSpec, run_trial
from spp_search.trial.workers import Budgets, Placement, Worker, call, oom_kill_count

POLL_S = 0.05
TRACE_EVERY_S, TRACE_MAX = 0.2, 1000  # the memory trace a failed trial's evidence shows
STARTUP_TIMEOUT_S = 600.0  # importing a backend and initialising a GPU takes seconds; a hang is a failure


def _returned(reply: tuple):
    """The value of a ``workers.call`` reply, or its exception raised again."""
    if reply[0] == "returned":
        return reply[1]
    _, name, message = reply
    if name == "ConfigError":
        raise ConfigError(message)
    raise SppSearchError(f"{name}: {message}")


class TrialInterrupted(BaseException):
    """The study is stopping (Ctrl-C, or another slot failed): the running trial is abandoned."""


class WorkerStartError(SppSearchError):
    """A worker process could not start (its backend failed to load or configure, it died or hung
    before it was ready): the environment is broken for every trial, so the study stops with the
    reason instead of recording each trial as a retried crash."""


class InlineRunner:
    """Run each trial in the calling process; a hard crash here ends the whole study."""

    def __init__(self, backend: str = "tensorflow") -> None:
        backends.select(backend)  # before this process imports Keras (or the same one it runs on)

    def run(self, spec: TrialSpec, reporter: Reporter) -> TrialResult:
        return run_trial(spec, reporter)

    def call(self, target: str, kwargs: dict, timeout: float | None = None):
        """``target(**kwargs)`` in this process (``workers.call``; exceptions raised again)."""
        return _returned(call(target, kwargs))

    def abort(self) -> None:
        """An inline trial cannot be stopped from outside; Ctrl-C reaches it directly."""

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class _Observed:
    """What the driver saw of one trial: epochs reported, peak memory, why it was stopped."""

    epochs: list
    peak_rss: int = 0
    timed_out: bool = False
    over_budget: bool = False
    oom_kills_before: int | None = None
    baseline_rss: int | None = None
    memory: list = field(default_factory=list)  # (seconds since the trial started, worker RSS bytes)
    last_progress: float | None = None  # monotonic time of the last epoch reported
    exit_code: int | None = None

    def sample(self, rss: int, since: float) -> None:
        """Keep the memory trace: one sample per ``TRACE_EVERY_S``, thinned to ``TRACE_MAX``."""
        now = time.monotonic() - since
        if self.memory and now - self.memory[-1][0] < TRACE_EVERY_S:
            return
        self.memory.append((now, rss))
        if len(self.memory) > TRACE_MAX:
            self.memory = self.memory[::2]


class ProcessRunner:
    """Run trials in a reusable worker process under memory and time budgets."""

    def __init__(self, placement: Placement | str = "cpu", budgets: Budgets | None = None) -> None:
        self.placement = placement if isinstance(placement, Placement) else Placement(device=placement)
        self.device, self.budgets = self.placement.device, budgets or Budgets()
        self.worker: Worker | None = None
        self.started_workers = 0
        self.aborted = False

    def _worker(self) -> Worker:
        if self.worker is None or not self.worker.process.is_alive():
            if self.worker is not None:
                self.worker.kill()
            self.worker = Worker(self.placement, self.budgets)
            self.started_workers += 1
        return self.worker

    def run(self, spec: TrialSpec, reporter: Reporter) -> TrialResult:
        if self.budgets.host_memory_bytes and self.worker is not None and self.worker.trials:
            self._replace()  # under a host budget every trial starts in a fresh worker
        worker = self._worker()
        worker.trials += 1
        watch = _Observed(epochs=[])
        start = time.monotonic()
        try:
            result = self._drive(worker, spec, reporter, watch, start)
        except BaseException:  # interrupted, or the reporter failed: the worker's state is unknown
            worker.kill()
            self.worker = None
            raise
        result.stats["peak_rss_mb"] = watch.peak_rss / 2**20
        if watch.baseline_rss is not None:
            result.stats["trial_rss_mb"] = max(0, watch.peak_rss - watch.baseline_rss) / 2**20
        result.stats["trial_wall_s"] = time.monotonic() - start
        if result.outcome.failed:
            result.evidence = {**(result.evidence or {}), **self._evidence(result.outcome, watch)}
        if result.outcome.kind.replace_worker:
            self._replace()
        return result

    def call(self, target: str, kwargs: dict, timeout: float = STARTUP_TIMEOUT_S):
        """``module:function(**kwargs)`` in the worker, on its backend (a user's model is checked
        there before a study starts); its exception is raised here again (a ``ConfigError`` as
        one, so that a bad model stops the study with its line). The worker is kept."""
        worker, start = self._worker(), time.monotonic()
        while not worker.ready:
            self._check_start(worker, start)
            if worker.conn.poll(POLL_S):
                try:
                    message = worker.conn.recv()
                except (EOFError, OSError):
                    message = ("start_failed", f"it exited with code {worker.process.exitcode}")
                if message[0] == "start_failed":
                    worker.kill()
                    self.worker = None
                    raise WorkerStartError(f"a worker process could not start: {redact(message[1])}")
                worker.ready = message[0] == "ready"
        worker.conn.send(("call", target, kwargs))
        while not worker.conn.poll(POLL_S):
            if not worker.process.is_alive() or time.monotonic() - start > timeout:
                worker.kill()
                self.worker = None
                raise WorkerStartError(f"a worker process died or hung while running {target}")
        return _returned(worker.conn.recv())

    def _evidence(self, outcome: Outcome, watch: _Observed) -> dict:
        """What the driver saw of a failed trial: the memory climb and the budgets (out of memory,
        a dead worker), the time limit and the last progress (time-out)."""
        mib = lambda b: None if b is None else round(b / 2**20, 1)  # noqa: E731
        out: dict = {"peak_mb": mib(watch.peak_rss), "baseline_mb": mib(watch.baseline_rss)}
        if "memory" in outcome.kind.evidence:
            out["budget_mb"] = mib(self.budgets.host_memory_bytes)
            out["gpu_budget_mb"] = mib(self.budgets.gpu_memory_bytes)
            out["memory_trace"] = {
                "seconds": [round(t, 2) for t, _ in watch.memory],
                "rss_mb": [mib(b) for _, b in watch.memory],
            }
        if "timing" in outcome.kind.evidence:
            elapsed = watch.memory[-1][0] if watch.memory else None
            out.update(
                timeout_s=self.budgets.trial_timeout_s,
                elapsed_s=elapsed,
                epochs_reported=len(watch.epochs),
                last_epoch=watch.epochs[-1] if watch.epochs else None,
                seconds_since_last_progress=None
                if watch.last_progress is None
                else round(time.monotonic() - watch.last_progress, 1),
            )
        if watch.exit_code is not None:
            out["exit_code"] = watch.exit_code
        return out

    def _replace(self) -> None:
        """Kill the current worker and start its successor now, so start-up overlaps other work."""
        if self.worker is not None:
            self.worker.kill()
        self.worker = None
        self._worker()

    def _drive(self, worker: Worker, spec, reporter, watch: _Observed, start: float) -> TrialResult:
        """Send the spec, relay epochs, and police memory, time and liveness until a result."""
        sent = False
        watch.oom_kills_before = oom_kill_count()
        while True:
            if self.aborted:
                raise TrialInterrupted(f"trial {spec.number} stopped: the study is stopping")
            if not worker.ready:
                self._check_start(worker, start)
            if worker.ready and not sent:
                watch.baseline_rss = worker.rss()  # what earlier trials (and the backend) left
                worker.conn.send(("run", spec))
                sent, start = True, time.monotonic()  # the budget starts when the trial does
            if worker.conn.poll(POLL_S):
                try:
                    message = worker.conn.recv()
                except (EOFError, OSError):
                    return self._dead(worker, watch, spec)
                if message[0] == "ready":
                    worker.ready = True
                elif message[0] == "start_failed":
                    worker.kill()
                    self.worker = None
                    raise WorkerStartError(f"a worker process could not start: {redact(message[1])}")
                elif message[0] == "epoch":
                    watch.epochs.append(message[2])
                    watch.last_progress = time.monotonic()
                    worker.conn.send(reporter.epoch_end(message[1], message[2]))
                elif message[0] == "result":
                    return message[1]
                continue
            if not worker.process.is_alive():
                return self._dead(worker, watch, spec)
            rss = worker.rss()
            watch.peak_rss = max(watch.peak_rss, rss)
            if sent:
                watch.sample(rss, start)
            limit, timeout = self.budgets.host_memory_bytes, self.budgets.trial_timeout_s
            if sent and limit and watch.peak_rss > limit:
                watch.over_budget = True
                worker.kill()
                return self._dead(worker, watch, spec)
            if sent and timeout and time.monotonic() - start > timeout:
                watch.timed_out = True
                worker.kill()
                return self._dead(worker, watch, spec)

    def _check_start(self, worker: Worker, since: float) -> None:
        """A worker that died or hung before it was ready stops the study (``WorkerStartError``)."""
        if not worker.process.is_alive() and not worker.conn.poll():
            code = worker.process.exitcode
            worker.kill()
            self.worker = None
            raise WorkerStartError(f"a worker process exited with code {code} before it was ready")
        if time.monotonic() - since > STARTUP_TIMEOUT_S:
            worker.kill()
            self.worker = None
            raise WorkerStartError(f"a worker process did not start within {STARTUP_TIMEOUT_S:g} s")

    def abort(self) -> None:
        """Stop the running trial now (from another thread): it ends as ``TrialInterrupted``."""
        self.aborted = True
        if self.worker is not None and self.worker.process.is_alive():
            self.worker.process.kill()

    def _dead(self, worker: Worker, watch: _Observed, spec: TrialSpec) -> TrialResult:
        """A result for a trial whose worker died or was killed, from what the driver saw."""
        if self.aborted:
            raise TrialInterrupted(f"trial {spec.number} stopped: the study is stopping")
        worker.process.join(timeout=10)
        code = worker.process.exitcode
        watch.exit_code = code
        kills = oom_kill_count()
        ours = watch.timed_out or watch.over_budget
        oom_killed = (
            not ours and code == -9 and None not in (kills, watch.oom_kills_before) and kills > watch.oom_kills_before
        )
        evidence = Evidence(
            exit_code=code,
            got_result=False,
            timed_out=watch.timed_out,
            over_host_budget=watch.over_budget,
            oom_killed=oom_killed,
            device=spec.device,
        )
        outcome = classify(evidence)
        reason = (
            "timed out"
            if watch.timed_out
            else "exceeded the host memory budget"
            if watch.over_budget
            else "killed by the kernel's out-of-memory killer"
            if oom_killed
            else f"worker exited with code {code}"
        )
        if code is not None and code < 0:
            reason += f" (signal {-code})"
        return TrialResult(
            outcome=outcome,
            epochs=watch.epochs,
            error_type=None,
            error_message=f"trial {spec.number}: {reason}",
            failed_epoch=len(watch.epochs),
        )

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
