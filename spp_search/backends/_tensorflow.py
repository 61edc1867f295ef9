"""TensorFlow runtime helpers: GPU cap and threads, memory stats, exact products, dynamic sizes.

Only this module (and ``_jax.py`` for JAX) may import a backend; see ``backends/__init__.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import tensorflow as tf

NAME = "tensorflow"


def configure(gpu_memory_bytes: int | None) -> None:
    """After import, before any op: thread pools (``SPP_SEARCH_THREADS``) and the GPU memory cap.

    With several workers on a CPU each gets ``cores // workers`` intra-op threads: one trial of
    this size keeps about one core busy whatever its thread count, and two workers with default
    threads oversubscribe the cores (measured: 38 s for two trials vs 27 s).
    The cap is a logical device with ``memory_limit``: a trial over it raises
    ``ResourceExhaustedError`` (``oom_gpu``), on any size of GPU.
    """
    threads = int(os.environ.get("SPP_SEARCH_THREADS", "0"))
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus and gpu_memory_bytes:
        limit_mb = max(1, gpu_memory_bytes // 2**20)
        tf.config.set_logical_device_configuration(
            gpus[0], [tf.config.LogicalDeviceConfiguration(memory_limit=limit_mb)]
        )


def gpu_names() -> list[str]:
    return [d.name for d in tf.config.list_physical_devices("GPU")]


def gpu_memory_in_use() -> int:
    """Bytes in use on the first GPU now (0 without a GPU)."""
    return tf.config.experimental.get_memory_info("GPU:0")["current"] if gpu_names() else 0


def reset_peak_gpu_memory() -> None:
    """Start a trial's peak from zero (the token ``peak_gpu_memory`` takes is unused here)."""
    if gpu_names():
        tf.config.experimental.reset_memory_stats("GPU:0")


def peak_gpu_memory(token=None) -> int | None:
    """Peak bytes on the first GPU since the last reset (None without a GPU)."""
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] if gpu_names() else None


def read(variable, model=None) -> float:
    """A Keras variable's current value as a float (TensorFlow variables are always current)."""
    return float(variable.numpy())


def sync(value) -> None:
    """Wait until ``value`` is computed (``numpy()`` copies to the host, which waits)."""
    tf.nest.map_structure(lambda v: v.numpy() if hasattr(v, "numpy") else v, value)


def exact_matmul(a, b):
    """``a @ b`` with float32 accuracy on every device.

    TensorFlow runs float32 products on TF32 tensor cores on Ampere and newer GPUs (inputs rounded
    to a 10-bit mantissa) unless that is switched off, and it has no per-op precision setting: when
    TF32 is on and a GPU is visible, the product is taken in float64 (exact for a one-hot matrix,
    float32-accurate for an averaging one). On a CPU, TF32 does not exist.
    """
    if a.dtype == tf.float32 and gpu_names() and tf.config.experimental.tensor_float_32_execution_enabled():
        return tf.cast(tf.matmul(tf.cast(a, tf.float64), tf.cast(b, tf.float64)), tf.float32)
    return tf.matmul(a, b)


def in_xla_context() -> bool:
    """True while tracing a function XLA will compile (``tf.function(jit_compile=True)``)."""
    try:
        from tensorflow.python.framework import ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # a TensorFlow internal: without it, assume XLA (the always-valid path)
        return True
    return bool(control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph()))


def max_drops_nan() -> bool:
    """True where a max reduction may drop a NaN: XLA as TensorFlow configures it (its fast
    min/max, ``xla_cpu_enable_fast_min_max``) returns the max of the other values. The SPP layer
    then marks the bins that hold a NaN itself."""
    return in_xla_context()


def dynamic_pyramid(x, grid: int, divisible: Callable, general: Callable):
    """Pick the SPP path per batch when height and width are unknown while tracing (``None``).

    ``divisible(x)`` is valid only when both sides are multiples of ``grid``; ``general(x)`` for
    any size. Outside XLA a ``tf.cond`` picks per batch. XLA compiles *both* branches of a
    ``tf.cond`` for each concrete size, and the divisible branch's reshape is invalid for sizes it
    would never see, so inside an XLA function only the general path is built.
    """
    shape = tf.shape(x)
    check = tf.debugging.assert_positive(shape[1:3], message="SPP input has an empty spatial size")
    with tf.control_dependencies([check]):
        x = tf.identity(x)
    if in_xla_context():
        return general(x)
    return tf.cond(tf.logical_and(shape[1] % grid == 0, shape[2] % grid == 0), lambda: divisible(x), lambda: general(x))


def _edges(size, n: int):
    i = tf.range(n, dtype=size.dtype)
    return (i * size) // n, ((i + 1) * size + n - 1) // n


def selection_matrix(size, n: int, dtype):
    """``bins.selection_matrix`` for a size known only at run time; also returns ``span``."""
    start, end = _edges(size, n)
    span = tf.reduce_max(end - start)
    idx = tf.minimum(start[:, None] + tf.range(span)[None, :], end[:, None] - 1)
    return tf.one_hot(tf.reshape(idx, [-1]), size, dtype=dtype), span


def selection_indices(size, n: int):
    """``bins.selection_indices`` for a size known only at run time."""
    start, end = _edges(size, n)
    span = tf.reduce_max(end - start)
    return tf.minimum(start[:, None] + tf.range(span)[None, :], end[:, None] - 1)


def bin_mask(size, n: int):
    """``bins.bin_mask`` for a size known only at run time."""
    start, end = _edges(size, n)
    length = end - start
    return tf.range(tf.reduce_max(length))[None, :] < length[:, None], length


def pyramid_averaging_matrix(height, width, levels: Sequence[int], dtype):
    """``bins.pyramid_averaging_matrix`` for sizes known only at run time."""

    def averaging(size, n):
        start, end = _edges(size, n)
        index = tf.range(size)
        inside = tf.cast((index[None, :] >= start[:, None]) & (index[None, :] < end[:, None]), dtype)
        return inside / tf.cast((end - start)[:, None], dtype)

    blocks = []
    for n in levels:
        rows, cols = averaging(height, n), averaging(width, n)
        blocks.append(tf.reshape(rows[:, None, :, None] * cols[None, :, None, :], [n * n, height * width]))
    return tf.concat(blocks, axis=0)


def window_pool(x, win: list, stride: list, pooling: str):
    """VALID pooling with windows and strides known only at run time (the ``paper_window`` variant)."""
    if pooling == "max":
        ksize, strides = tf.stack([1, *win, 1]), tf.stack([1, *stride, 1])
        return tf.raw_ops.MaxPoolV2(input=x, ksize=ksize, strides=strides, padding="VALID")
    # TensorFlow's AvgPool needs static windows: separable window means from cumulative sums
    return _window_mean(_window_mean(x, 1, win[0], stride[0]), 2, win[1], stride[1])


def _window_mean(x, axis: int, k, s):
    """Means of VALID windows of length ``k`` and stride ``s`` along ``axis``."""
    starts = tf.range((tf.shape(x)[axis] - k) // s + 1) * s
    zero = tf.zeros_like(tf.gather(x, [0], axis=axis))
    csum = tf.concat([zero, tf.cumsum(x, axis=axis)], axis=axis)
    sums = tf.gather(csum, starts + k, axis=axis) - tf.gather(csum, starts, axis=axis)
    return sums / tf.cast(k, x.dtype)


def inputs(pipes, steps_per_round: int) -> tuple:
    """``fit`` inputs from the NumPy batches: ``tf.data`` over generators, with explicit signatures.

    (A ``PyDataset`` would do, but Keras infers its TensorFlow signature from its first batches,
    and a bucket that first shows up later would then not fit it.) The training dataset is
    endless, so ``fit`` gets ``steps_per_epoch`` (and ``validation_steps``, so the finite validation
    set is not read past its end). ``steps_per_round``: training steps between validations.
    """
    fixed = pipes.input_size
    bands = _bands(pipes)
    x = tf.TensorSpec((pipes.train.batch_size, *(fixed or (None, None)), bands), tf.float32)
    y = tf.TensorSpec((pipes.train.batch_size,), tf.int32)
    train = tf.data.Dataset.from_generator(pipes.train.training, output_signature=(x, y))
    w = tf.TensorSpec((pipes.train.batch_size,), tf.float32)
    val = tf.data.Dataset.from_generator(pipes.val.validation, output_signature=(x, y, w))
    return train.prefetch(2), val.prefetch(2), steps_per_round, pipes.val.validation_steps


def _bands(pipes) -> int:
    group = pipes.train.groups[0]
    return group[0].shape[-1] if isinstance(group, list) else group.shape[-1]


def input_gradient(fn, shape: tuple, dynamic: bool = False):
    """A compiled function ``x -> d sum(fn(x)^2) / dx`` (benchmarks: forward + backward of a layer).

    ``dynamic``: traced once with ``None`` batch, height and width (the layer's run-time path).
    """
    spec = tf.TensorSpec([None, None, None, shape[3]] if dynamic else list(shape))

    @tf.function(input_signature=[spec])
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(y * y)  # depends on x: no constant-folded gradient
        return tape.gradient(loss, x)

    return step
