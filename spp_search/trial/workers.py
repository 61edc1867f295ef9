"""One worker process: where it runs (``Placement``), how it starts, its main loop and its pipe.

A worker is started with ``spawn`` (never fork a process that has imported a deep learning
backend) and the environment ``backends.worker_env`` gives it (the Keras backend, its one
visible GPU, JAX's memory fraction, thread counts), so everything is set before Keras is
imported. It then runs the trials the driver sends it until told to stop, reporting each epoch
over the pipe and waiting for the pruner's verdict (``PipeReporter``), and answers calls of a
function that needs the backend (``call``: checking a user's model before a study starts). Policing it (memory, time,
liveness) is ``isolation.ProcessRunner``'s job.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from spp_search import backends
from spp_search.infra.process import native_stderr_to_log
from spp_search.trial.run import run_trial


@dataclass(frozen=True)
class Budgets:
    """Per-trial limits; ``None`` means no limit."""

    host_memory_bytes: int | None = None
    gpu_memory_bytes: int | None = None
    trial_timeout_s: float | None = None


class PipeReporter:
    """The worker's side of the reporter protocol: send the epoch, wait for the verdict."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def epoch_end(self, epoch: int, metrics: dict[str, float]) -> bool:
        self.conn.send(("epoch", epoch, metrics))
        return bool(self.conn.recv())


@dataclass(frozen=True)
class Placement:
    """Where a worker runs: backend, device, its GPU (a ``CUDA_VISIBLE_DEVICES`` entry), threads."""

    backend: str = "tensorflow"
    device: str = "cpu"
    gpu: str | None = None
    threads: int | None = None
    cores: str | None = None
    extra_env: dict = field(default_factory=dict)

    def env(self, budgets: Budgets) -> dict[str, str]:
        return {
            **backends.worker_env(
                self.backend,
                self.device,
                gpu=self.gpu,
                gpu_memory_bytes=budgets.gpu_memory_bytes,
                threads=self.threads,
                cores=self.cores,
            ),
            **self.extra_env,
        }


_SPAWN_LOCK = threading.Lock()
# The kernel's out-of-memory kills in this process's memory cgroup (v2, then v1): a worker
# SIGKILLed while the count rose was killed for memory, not crashed.
OOM_COUNTERS = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")


def oom_kill_count() -> int | None:
    """The ``oom_kill`` count of the first readable cgroup file, or None where there is none."""
    for path in OOM_COUNTERS:
        try:
            for line in Path(path).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return None


@contextlib.contextmanager
def _environment(env: dict[str, str]):
    """Set ``env`` for the duration (a spawned child copies the parent's environment at start)."""
    with _SPAWN_LOCK:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def worker_main(conn, gpu_memory_bytes: int | None) -> None:
    """Entry point of a worker process: run trials until told to stop (or killed).

    Its environment (backend, GPU, threads) was set by the driver when it was spawned; the
    backend's own settings (TensorFlow threads and GPU cap, JAX CPU placement) come first.
    """
    native_stderr_to_log("worker")  # TensorFlow/XLA C++ log lines off the driver's console
    try:
        backends.runtime().configure(gpu_memory_bytes)
    except Exception as exc:  # noqa: BLE001 - reported to the driver, which stops the study
        conn.send(("start_failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready",))
    while True:
        message = conn.recv()
        if message[0] == "stop":
            return
        if message[0] == "call":
            conn.send(call(message[1], message[2]))
            continue
        result = run_trial(message[1], PipeReporter(conn))
        conn.send(("result", result))


def call(target: str, kwargs: dict) -> tuple:
    """Run ``module:function(**kwargs)`` here (on this process's backend): ``("returned", value)``,
    or ``("raised", type name, message)`` for an exception (the driver raises it again)."""
    import importlib

    module, _, name = target.partition(":")
    try:
        return ("returned", getattr(importlib.import_module(module), name)(**kwargs))
    except Exception as exc:  # noqa: BLE001 - handed to the driver as plain data
        return ("raised", type(exc).__name__, str(exc))


class Worker:
    """One spawned worker process and the driver's end of its pipe."""

    def __init__(self, placement: Placement, budgets: Budgets) -> None:
        context = mp.get_context("spawn")
        self.conn, child = context.Pipe()
        args = (child, budgets.gpu_memory_bytes)
        self.process = context.Process(target=worker_main, args=args, daemon=True)
        with _environment(placement.env(budgets)):
            self.process.start()
        child.close()
        self.ready = False
        self.trials = 0  # trials sent to this worker

    def rss(self) -> int:
        """Resident memory of the worker and its children, in bytes (0 if it is gone)."""
        try:
            proc = psutil.Process(self.process.pid)
            return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
        except psutil.Error:
            return 0

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(("stop",))
            self.process.join(timeout=10)
        except (BrokenPipeError, OSError):
            pass
        self.kill()
