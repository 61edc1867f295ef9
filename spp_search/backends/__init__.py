"""Keras backends: choosing one, preparing a process for it, and finding GPUs, without importing it.

Keras 3 reads ``KERAS_BACKEND`` once, when ``keras`` is first imported, and imports the backend
(TensorFlow ~4.5 s, JAX ~1 s) with it. So the backend of a trial is chosen by the environment a
worker process is *started* with (``worker_env``), and the driver, which never trains, imports
no backend at all: GPUs are found through NVML (``gpu_count``), not through a framework.

Everything that differs between backends lives here and in the two runtime modules beside this
one, ``_tensorflow.py`` and ``_jax.py`` (``runtime()`` returns the one Keras runs on): memory
caps, peak memory, device sync, out-of-memory messages, exact matrix products and the helpers
for spatial sizes unknown while tracing. Code above this package is backend-free.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType

from spp_search.infra.errors import ConfigError, must

BACKENDS = ("tensorflow", "jax")
AUTO = "auto"
INSTALL = {
    "tensorflow": "pip install 'spp-search[tensorflow]' (or the dev extra)",
    "jax": "pip install 'spp-search[jax]' (CPU) or jax[cuda13] on a GPU host",
}
# Out-of-memory messages of each backend (real ones are in tests/test_outcomes.py).
OOM_PATTERNS = {
    "tensorflow": (r"ResourceExhausted", r"\bOOM\b", r"failed to allocate", r"out of memory"),
    "jax": (r"RESOURCE_EXHAUSTED", r"Out of memory", r"CUDA_ERROR_OUT_OF_MEMORY", r"failed to allocate"),
    "cuda": (r"CUDNN_STATUS_ALLOC_FAILED", r"CUBLAS_STATUS_ALLOC_FAILED", r"cudaErrorMemoryAllocation"),
}


# XLA tries several cuDNN/cuBLAS algorithms per convolution while compiling ("autotuning"); for
# models this small a trial's compile time dominates it (see benchmarks/results/gpu-jax.json).
GPU_AUTOTUNE_LEVEL = 0

# XLA's CPU compiler, for JAX workers on a CPU: its fusion emitters off and LLVM at -O1 halve a
# small trial's compile time (2.65 s vs 5.60 s for one train step, the same program), with
# steps as fast and every epoch's loss and accuracy the same to 4 decimals (measured side by side,
# docs/backends-and-gpus.md). An unknown XLA flag aborts the process, so they are set only for
# the jaxlib releases they were measured on.
CPU_XLA_FLAGS = {"xla_cpu_use_fusion_emitters": "false", "xla_backend_optimization_level": "1"}
CPU_XLA_FLAGS_JAXLIB = ("0.10.",)


def resolve(requested: str | None) -> str:
    """The backend to train on: ``requested`` (CLI or config), else ``KERAS_BACKEND``, else TensorFlow."""
    name = requested if requested and requested != AUTO else os.environ.get("KERAS_BACKEND") or "tensorflow"
    if name not in BACKENDS:
        where = "backend" if requested and requested != AUTO else "KERAS_BACKEND"
        raise ConfigError(must(where, f"be one of {list(BACKENDS)}", name, "Pick one of them."))
    return name


def require(name: str) -> str:
    """``name`` if its package is installed here, else a one-line ``ConfigError`` saying how to get it."""
    if importlib.util.find_spec(name) is None:
        raise ConfigError(must("backend", "be installed", name, f"Install it: {INSTALL[name]}, or pick another."))
    return name


def loaded() -> str | None:
    """The backend Keras already runs on in this process, or None if Keras is not imported yet."""
    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None else None


def select(name: str) -> None:
    """Make ``name`` this process's Keras backend; fails if Keras already runs on another one."""
    current = loaded()
    if current is not None and current != name:
        raise ConfigError(
            must(
                "backend",
                f"match the one Keras already runs on in this process ({current})",
                name,
                "Use --isolation process (each worker starts on its own backend).",
            )
        )
    os.environ["KERAS_BACKEND"] = name


def runtime() -> ModuleType:
    """The runtime helpers of the backend Keras runs on (``_tensorflow`` or ``_jax``)."""
    import keras

    return importlib.import_module(f"spp_search.backends._{keras.backend.backend()}")


def gpu_count() -> int:
    """NVIDIA GPUs visible to this process (NVML, honouring ``CUDA_VISIBLE_DEVICES``); 0 without."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver, no library, no GPU: all mean "none"
        return 0
    if visible is not None:
        return len([v for v in visible.split(",") if v.strip() and v.strip() != "-1"])
    return count


def gpu_memory_bytes(index: int = 0) -> int | None:
    """Total memory of GPU ``index`` (NVML's numbering), or None when it cannot be read."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index)).total)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001
        return None


def worker_env(
    backend: str,
    device: str,
    *,
    gpu: str | None = None,
    gpu_memory_bytes: int | None = None,
    threads: int | None = None,
    cores: str | None = None,
) -> dict[str, str]:
    """Environment a worker process must start with: backend, visible GPU, memory cap, threads.

    * ``KERAS_BACKEND``: read when the worker imports Keras.
    * ``CUDA_VISIBLE_DEVICES``: ``-1`` on the CPU; one GPU per worker (``gpu``) on GPU hosts.
    * JAX on a GPU: XLA's autotuning off (``--xla_gpu_autotune_level=0``, unless ``XLA_FLAGS``
      sets it): measured, it is most of a small trial's compile time. JAX on a CPU:
      ``CPU_XLA_FLAGS`` (half the compile time, same steps), each unless ``XLA_FLAGS`` sets it.
    * JAX: compiled programs cached on disk (``.spp_cache/jax-compile``, or
      ``JAX_COMPILATION_CACHE_DIR``), shared by every worker and study; no preallocation of 75% of
      the GPU; with a budget, ``XLA_PYTHON_CLIENT_MEM_FRACTION``
      is the budget over the GPU's memory, so an over-budget trial fails with RESOURCE_EXHAUSTED.
      On the CPU, JAX is told it has no GPU platform (``JAX_PLATFORMS=cpu``).
    * TensorFlow: its GPU cap is a logical device, set after import (``_tensorflow.configure``).
    * ``threads`` (TensorFlow's thread pools) and ``cores`` (the CPUs a JAX worker is pinned to):
      several CPU workers share the cores instead of oversubscribing them.
    """
    env = {"KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = "-1"
        if backend == "jax":
            env["JAX_PLATFORMS"] = "cpu"
    elif gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    if backend == "jax":
        # compiled programs are kept on disk: a later trial (or study) with the same model and
        # input shape loads its program instead of compiling it (JAX compiles per shape)
        env["JAX_COMPILATION_CACHE_DIR"] = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.abspath(
            os.path.join(".spp_cache", "jax-compile")
        )
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    if backend == "jax" and device == "cpu" and _jaxlib_version().startswith(CPU_XLA_FLAGS_JAXLIB):
        _add_xla_flags(env, CPU_XLA_FLAGS)
    if backend == "jax" and device == "gpu":
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        _add_xla_flags(env, {"xla_gpu_autotune_level": str(GPU_AUTOTUNE_LEVEL)})
        total = gpu_memory_bytes and gpu_memory_bytes_of(gpu)
        if gpu_memory_bytes and total:
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{min(1.0, gpu_memory_bytes / total):.4f}"
    if threads:
        env["SPP_SEARCH_THREADS"] = str(threads)
    if cores:
        env["SPP_SEARCH_CORES"] = cores
    return env


def _add_xla_flags(env: dict[str, str], wanted: dict[str, str]) -> None:
    """``XLA_FLAGS`` with ``wanted`` added after the user's own, each unless the user sets it."""
    flags = os.environ.get("XLA_FLAGS", "")
    extra = [f"--{name}={value}" for name, value in wanted.items() if name not in flags]
    if extra:
        env["XLA_FLAGS"] = " ".join([flags, *extra]).strip()


def _jaxlib_version() -> str:
    """The installed jaxlib's version ("" without one), read without importing JAX."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jaxlib")
    except PackageNotFoundError:
        return ""


def gpu_memory_bytes_of(gpu: str | None) -> int | None:
    """Memory of the GPU a worker will see (``gpu`` is a ``CUDA_VISIBLE_DEVICES`` entry)."""
    index = int(gpu) if gpu is not None and gpu.strip().isdigit() else 0
    return gpu_memory_bytes(index)


_PROBE = {
    "tensorflow": "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))",
    "jax": "import jax\ntry:\n    print(len(jax.devices('gpu')))\nexcept RuntimeError:\n    print(0)",
}


def framework_gpu_count(backend: str, timeout: float = 120.0) -> int:
    """GPUs ``backend`` itself can use, asked in a child process (the driver imports no backend).

    Only asked where NVML found a GPU: a CPU-only wheel (``tensorflow-cpu``, JAX without its CUDA
    plugin) on a GPU host would otherwise train on the CPU while the study says "gpu".
    """
    import subprocess

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE[backend]], capture_output=True, text=True, timeout=timeout, env=env
        )
        return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else 0
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return 0
