"""Where a study's trials run: one runner per worker slot, placed on the device's GPUs or cores.

On GPUs workers are spread over the GPUs, each seeing only its own; several on one GPU share it
by budget. On a CPU, ``min(cores, 4)`` workers split the cores (``make_runners``).
"""

from __future__ import annotations

import os

from spp_search import backends
from spp_search.infra.errors import ConfigError, must
from spp_search.trial.isolation import InlineRunner, ProcessRunner
from spp_search.trial.workers import Budgets, Placement

WORKERS_PER_CORE = 4


def make_runners(config, device: str, gpus: int = 0, backend: str = "tensorflow") -> list:
    """One trial runner per worker slot: budgeted worker processes, or a single inline runner.

    On GPUs: workers are spread over the GPUs, each seeing only its own (``CUDA_VISIBLE_DEVICES``).
    By default up to 4 per GPU (one per 2 host cores): a trial of this size is bound by compiling
    its programs on the host (JAX compiles per input shape), so workers sharing a GPU overlap their
    compilations. Workers on one GPU share it by budget, never by racing for all of its memory:
    without ``--gpu-memory-budget`` each gets 90% of its GPU's memory divided by the workers on it.
    On a CPU: ``min(cores, 4)`` workers, each with ``cores // workers`` threads (and cores).
    """
    from spp_search.config.settings import parse_bytes

    s = config.study
    if s.isolation == "inline":
        return [InlineRunner(backend)]
    budgets = Budgets(
        host_memory_bytes=parse_bytes("host_memory_budget", s.host_memory_budget),
        gpu_memory_bytes=parse_bytes("gpu_memory_budget", s.gpu_memory_budget),
        trial_timeout_s=s.trial_timeout or None,
    )
    cores = os.cpu_count() or 1
    check_workers(s.workers, cores)
    if device == "gpu":
        return [ProcessRunner(p, budget) for p, budget in _gpu_placements(s.workers, gpus, cores, budgets, backend)]
    workers = s.workers or min(cores, 4)
    threads = max(1, cores // workers)
    placements = [
        Placement(
            backend,
            "cpu",
            threads=threads,
            cores=",".join(str(c) for c in range(i * threads, (i + 1) * threads)) if workers <= cores else None,
        )
        for i in range(workers)
    ]
    return [ProcessRunner(p, budgets) for p in placements]


def check_workers(workers: int, cores: int) -> None:
    """At most ``WORKERS_PER_CORE`` workers per CPU core: each is a process with its own framework
    (hundreds of MB when live), and past that they only wait for a core. Many machines: one
    ``worker`` command on each."""
    most = WORKERS_PER_CORE * cores
    if workers > most:
        fix = (
            f"Use at most {most} here ({WORKERS_PER_CORE} per core), or 0 for the default; add machines with `worker`."
        )
        raise ConfigError(must("workers", f"be at most {most} on {cores} CPU cores", workers, fix))


def _gpu_placements(workers: int, gpus: int, cores: int, budgets: Budgets, backend: str) -> list:
    """(placement, budgets) per GPU worker (see ``make_runners``)."""
    workers = workers or gpus * min(4, max(1, cores // (2 * gpus)))
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    ids = visible or [str(i) for i in range(gpus)]
    per_gpu = -(-workers // len(ids))
    if per_gpu > 1 and budgets.gpu_memory_bytes is None:
        total = backends.gpu_memory_bytes(int(ids[0]) if ids[0].isdigit() else 0)
        if total:
            budgets = Budgets(budgets.host_memory_bytes, int(0.9 * total / per_gpu), budgets.trial_timeout_s)
    return [(Placement(backend, "gpu", gpu=ids[i % len(ids)]), budgets) for i in range(workers)]
