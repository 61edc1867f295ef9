"""JAX runtime helpers: CPU placement, memory stats, exact products, reading state inside ``fit``.

Only this module (and ``_tensorflow.py``) may import a backend; see ``backends/__init__.py``. The
GPU memory cap is set before import (``XLA_PYTHON_CLIENT_MEM_FRACTION``, ``worker_env``).
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp

NAME = "jax"


def configure(gpu_memory_bytes: int | None) -> None:
    """After import, before any op: pin a CPU worker to its cores (``SPP_SEARCH_CORES``), and keep
    TensorFlow out of the worker.

    XLA's CPU client sizes its thread pool from the cores the process may run on, so two
    workers on two cores each get one instead of both fighting over two. Keras'
    ``set_random_seed`` imports TensorFlow whenever it is installed, only to seed it: ~4.5 s and
    ~300 MB per worker that a JAX trial never uses, so a JAX worker makes that import fail.
    (The GPU cap is an environment variable read at import; nothing to do here.)
    """
    sys.modules.setdefault("tensorflow", None)  # type: ignore[arg-type]  # "not installed" to Keras
    cores = os.environ.get("SPP_SEARCH_CORES")
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in cores.split(",")})


def gpu_names() -> list[str]:
    return [str(d) for d in jax.devices() if d.platform == "gpu"]


def _stats() -> dict:
    device = jax.devices()[0]
    return (device.memory_stats() or {}) if device.platform == "gpu" else {}


def gpu_memory_in_use() -> int:
    """Bytes in use on the first GPU now (0 without a GPU)."""
    return int(_stats().get("bytes_in_use", 0))


def reset_peak_gpu_memory() -> int:
    """JAX cannot reset its peak: remember the process's peak so far, as the token."""
    return int(_stats().get("peak_bytes_in_use", 0))


def peak_gpu_memory(token: int | None = None) -> int | None:
    """The trial's peak bytes on the first GPU, when it set a new high for the process.

    Otherwise 0: the trial stayed below an earlier trial's peak in this worker, and the caller
    falls back to the bytes in use sampled at each epoch end (a lower bound). None without a GPU.
    """
    stats = _stats()
    if "peak_bytes_in_use" not in stats:
        return None
    peak = int(stats["peak_bytes_in_use"])
    return peak if token is None or peak > token else 0


def read(variable, model=None) -> float:
    """A Keras variable's current value as a float, also in the middle of ``fit``.

    Keras' JAX trainer keeps the training state outside the variables between steps (it writes
    it back at the end of each epoch); the latest state is on ``model._jax_state``.
    """
    state = getattr(model, "_jax_state", None) if model is not None else None
    if state and not getattr(model, "_jax_state_synced", True):
        for values, variables in (
            (state.get("optimizer_variables"), model.optimizer.variables if model.optimizer else []),
            (state.get("metrics_variables"), model.metrics_variables),
        ):
            for ref, value in zip(variables, values or [], strict=False):
                if ref is variable:
                    return float(value)
    return float(variable.value)


def sync(value) -> None:
    """Wait until ``value`` is computed: JAX dispatches asynchronously."""
    jax.block_until_ready(value)


def exact_matmul(a, b):
    """``a @ b`` at float32 precision on every device.

    On GPUs JAX's default precision lets float32 products run on TF32 tensor cores (10-bit
    mantissa), and ``jax_default_matmul_precision`` can lower it to bfloat16: both would change a
    max picked by a one-hot product, or an average. ``HIGHEST`` keeps float32.
    """
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def max_drops_nan() -> bool:
    """False: JAX asks XLA for NaN-propagating min/max (its default, unlike TensorFlow's)."""
    return False


def dynamic_pyramid(x, grid, divisible, general):
    """Never needed: JAX traces every call with concrete shapes."""
    raise AssertionError("JAX traces with static shapes; the layer picks the SPP path in Python")


def window_pool(x, win, stride, pooling):
    """Never needed: JAX traces every call with concrete shapes."""
    raise AssertionError("JAX traces with static shapes; the variant pools with static windows")


def inputs(pipes, steps_per_round: int) -> tuple:
    """``fit`` inputs from the NumPy batches: ``PyDataset``s (no TensorFlow on the JAX path).

    A Keras epoch is one validation round of ``steps_per_round`` steps; batch ``i`` of round
    ``r`` is step ``r * steps_per_round + i`` of the endless training sequence.
    """
    import keras

    class Training(keras.utils.PyDataset):
        """Batch ``i`` of the current round; Keras calls ``on_epoch_end`` between rounds."""

        def __init__(self, batches) -> None:
            super().__init__()
            self.batches, self.round = batches, 0

        def __len__(self) -> int:
            return steps_per_round

        def __getitem__(self, index: int):
            return self.batches.at(self.round * steps_per_round + index)

        def on_epoch_end(self) -> None:
            self.round += 1

    class Validation(keras.utils.PyDataset):
        def __init__(self, batches) -> None:
            super().__init__()
            self.items = list(batches.validation())

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, index: int):
            return self.items[index]

    return Training(pipes.train), Validation(pipes.val), None, None


def input_gradient(fn, shape: tuple, dynamic: bool = False):
    """A compiled function ``x -> d sum(fn(x)^2) / dx`` (benchmarks: forward + backward of a layer).

    JAX compiles per concrete shape, so ``dynamic`` is not a mode here (callers skip it).
    """
    if dynamic:
        raise ValueError("JAX has no dynamic-shape mode: it compiles one program per input shape")
    return jax.jit(jax.grad(lambda x: jnp.sum(jnp.square(fn(x)))))
