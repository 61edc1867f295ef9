"""Choose where trials train: ``auto`` takes the GPUs the backend can use, else the CPU.

Decided without importing a backend in the driver: NVML says whether there is an NVIDIA GPU at
all (instantly, and nothing more is asked on a CPU host), then a child process asks the backend
whether it can use it (``backends.framework_gpu_count``).
"""

from __future__ import annotations

import os

from spp_search import backends
from spp_search.infra.errors import ConfigError, must


def resolve_device(requested: str, backend: str = "tensorflow") -> tuple[str, int]:
    """``("gpu", n)`` or ``("cpu", 0)`` for ``auto|cpu|gpu``; ``gpu`` with no usable GPU is an error.

    With ``cpu`` the GPUs are hidden from this process and the workers it spawns
    (``CUDA_VISIBLE_DEVICES=-1``).
    """
    if requested == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        return "cpu", 0
    count = backends.gpu_count() and backends.framework_gpu_count(backend)
    if requested == "gpu" and not count:
        raise ConfigError(
            must(
                "device",
                f"name a device {backend} can use",
                requested,
                "No usable GPU here: use --device cpu or --device auto.",
            )
        )
    return ("gpu", count) if count else ("cpu", 0)
