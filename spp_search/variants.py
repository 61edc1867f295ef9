"""Other people's SPP: faithful re-implementations of the approaches the study compares.

Factor ``spp_impl``; each variant keeps its original's bin rule and its original's failure:

* ``floor_ceil``: ours (``layers.SpatialPyramidPooling2D``), Appendix A bins, any size.
* ``round_bins``: the classic Keras SPP layer: bin i spans ``[round(i*a/n), round((i+1)*a/n))``
  (TensorFlow's round, half to even), one slice and one reduction per bin. When the map is
  smaller than a level some bins are empty: max gives -inf, average NaN.
* ``paper_window``: the SPP paper's Section 2.3 rule as a pooling op: window ``ceil(a/n)``,
  stride ``floor(a/n)``, VALID padding. The number of bins is only ``n`` for some sizes (10 -> 9
  with n = 6), so the flattened length changes with the input size; stride 0 when ``a < n``.
* ``crop_split``: the deprecated TF-Addons layer: crop each side to a multiple of ``n`` (dropping
  ``a mod n`` rows and columns) and split into equal bins; empty bins (-inf / NaN) when ``a < n``.
* ``keras_adaptive``: Keras 3's ``AdaptiveMax/AveragePooling2D(n)`` per level. Level 1 uses
  ``GlobalMax/AveragePooling2D`` because ``output_size=1`` itself fails ("Negative dimension
  size", it pools with window a + 1); on TensorFlow the layer needs static spatial sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from spp_search.layers import SpatialPyramidPooling2D, validate_levels, validate_pooling

SPP_IMPLS = ("floor_ceil", "round_bins", "paper_window", "crop_split", "keras_adaptive")


def _reduce(x: tf.Tensor, axis, pooling: str) -> tf.Tensor:
    return tf.reduce_max(x, axis=axis) if pooling == "max" else tf.reduce_mean(x, axis=axis)


class _VariantSPP(keras.layers.Layer):
    """Shared argument handling and config of the variant layers (channels last)."""

    def __init__(self, levels: Sequence[int] = (1, 2, 4), pooling: str = "max", **kwargs) -> None:
        super().__init__(**kwargs)
        self.levels = validate_levels(levels)
        self.pooling = validate_pooling(pooling)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def get_config(self) -> dict:
        return {**super().get_config(), "levels": list(self.levels), "pooling": self.pooling}


@keras.saving.register_keras_serializable(package="spp_search")
class RoundBinsSPP(_VariantSPP):
    """The classic Keras SPP layer: rounded bin edges, one slice per bin."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(x)
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        outputs = []
        for n in self.levels:
            row, col = height / n, width / n
            for j in range(n):
                for i in range(n):
                    y1, y2 = tf.cast(tf.round(j * row), tf.int32), tf.cast(tf.round((j + 1) * row), tf.int32)
                    x1, x2 = tf.cast(tf.round(i * col), tf.int32), tf.cast(tf.round((i + 1) * col), tf.int32)
                    outputs.append(_reduce(x[:, y1:y2, x1:x2, :], [1, 2], self.pooling))
        return tf.concat(outputs, axis=-1)

    def compute_output_shape(self, input_shape):
        c = input_shape[-1]
        return (input_shape[0], None if c is None else c * sum(n * n for n in self.levels))


def _pool(x: tf.Tensor, win: list, stride: list, pooling: str) -> tf.Tensor:
    """VALID pooling with window ``win`` and ``stride`` (Python ints, or scalar tensors)."""
    static = all(isinstance(v, int) for v in (*win, *stride))
    if static and pooling == "avg":
        return tf.nn.avg_pool2d(x, win, stride, "VALID")
    if pooling == "max":
        ksize, strides = tf.stack([1, *win, 1]), tf.stack([1, *stride, 1])
        return tf.raw_ops.MaxPoolV2(input=x, ksize=ksize, strides=strides, padding="VALID")
    # TensorFlow's AvgPool needs static windows: separable window means from cumulative sums
    return _window_mean(_window_mean(x, 1, win[0], stride[0]), 2, win[1], stride[1])


def _window_mean(x: tf.Tensor, axis: int, k: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
    """Means of VALID windows of length ``k`` and stride ``s`` along ``axis``."""
    starts = tf.range((tf.shape(x)[axis] - k) // s + 1) * s
    zero = tf.zeros_like(tf.gather(x, [0], axis=axis))
    csum = tf.concat([zero, tf.cumsum(x, axis=axis)], axis=axis)
    sums = tf.gather(csum, starts + k, axis=axis) - tf.gather(csum, starts, axis=axis)
    return sums / tf.cast(k, x.dtype)


@keras.saving.register_keras_serializable(package="spp_search")
class PaperWindowSPP(_VariantSPP):
    """Section 2.3's window/stride pooling; static sizes when known, dynamic windows otherwise."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        static = x.shape[1] is not None and x.shape[2] is not None
        dims = (x.shape[1], x.shape[2]) if static else (tf.shape(x)[1], tf.shape(x)[2])
        outputs = []
        for n in self.levels:
            win, stride = [-(-d // n) for d in dims], [d // n for d in dims]
            pooled = _pool(x, win, stride, self.pooling)
            outputs.append(tf.reshape(pooled, [tf.shape(x)[0], -1]))
        return tf.concat(outputs, axis=-1)


@keras.saving.register_keras_serializable(package="spp_search")
class CropSplitSPP(_VariantSPP):
    """TF-Addons' SPP: crop to a multiple of n, split into equal bins, reduce each."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(x)
        batch, channels = shape[0], x.shape[3] or shape[3]
        outputs = []
        for n in self.levels:
            h, w = shape[1] // n, shape[2] // n
            cropped = x[:, : h * n, : w * n, :]
            grid = tf.reshape(cropped, [batch, n, h, n, w, channels])
            outputs.append(tf.reshape(_reduce(grid, [2, 4], self.pooling), [batch, -1]))
        return tf.concat(outputs, axis=-1)

    def compute_output_shape(self, input_shape):
        c = input_shape[-1]
        return (input_shape[0], None if c is None else c * sum(n * n for n in self.levels))


def keras_adaptive(x: keras.KerasTensor, levels: Sequence[int], pooling: str) -> keras.KerasTensor:
    """Keras 3's adaptive pooling per level (global pooling for level 1), flattened, joined."""
    adaptive = keras.layers.AdaptiveMaxPooling2D if pooling == "max" else keras.layers.AdaptiveAveragePooling2D
    glob = keras.layers.GlobalMaxPooling2D if pooling == "max" else keras.layers.GlobalAveragePooling2D
    parts = []
    for n in validate_levels(tuple(levels)):
        pooled = glob()(x) if n == 1 else keras.layers.Flatten()(adaptive(n)(x))
        parts.append(pooled)
    return parts[0] if len(parts) == 1 else keras.layers.Concatenate()(parts)


def spp_head(x: keras.KerasTensor, impl: str, levels: Sequence[int], pooling: str) -> keras.KerasTensor:
    """Apply the SPP variant ``impl`` to a feature map."""
    if impl == "keras_adaptive":
        return keras_adaptive(x, levels, pooling)
    layer = {
        "floor_ceil": SpatialPyramidPooling2D,
        "round_bins": RoundBinsSPP,
        "paper_window": PaperWindowSPP,
        "crop_split": CropSplitSPP,
    }[impl]
    return layer(levels, pooling, name="spp")(x)
