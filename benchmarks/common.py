"""What every benchmark records: the machine, the device and the library versions."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

RESULTS = Path(__file__).resolve().parent / "results"


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def gpu_names() -> list[str]:
    """NVIDIA GPUs by name (NVML; no backend imported), empty on a CPU machine."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return [
                pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
                for i in range(pynvml.nvmlDeviceGetCount())
            ]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver or no library: no GPU
        return []


def environment(backend: str | None = None, device: str | None = None) -> dict:
    """The machine, the device measured on, the Keras backend and the library versions."""
    gpus = gpu_names()
    packages = ("tensorflow", "jax", "jaxlib", "keras", "optuna", "mlflow", "numpy")
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "device": device or ("gpu" if gpus else "cpu"),
        "gpus": gpus,
        "backend": backend or os.environ.get("KERAS_BACKEND", "tensorflow"),
        "python": platform.python_version(),
        "versions": {p: v for p in packages if (v := _version(p))},
    }


def write(name: str, payload: dict, backend: str | None = None, device: str | None = None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"environment": environment(backend, device), **payload}, indent=2))
    return path


def host_batch_ms(factors: dict, data: dict, seed: int = 0, steps: int | None = None) -> float:
    """Median milliseconds to build one training batch of a trial's first epoch on the host: what
    the prefetch thread does while the device trains (the device waits whenever it is longer than
    a step). ``steps`` limits how many batches are timed (all of the epoch by default)."""
    import statistics
    import time

    from spp_search.config.factors import resolved
    from spp_search.data.loading import trial_data
    from spp_search.data.preprocessing import build_pipelines

    f = resolved(factors)
    batches = build_pipelines(*trial_data(data, f), f, seed=seed).train
    times = []
    for step in range(min(steps or len(batches), len(batches))):
        start = time.perf_counter()
        batches.build(0, step)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)
