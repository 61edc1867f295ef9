"""Other people's SPP: faithful re-implementations of the approaches the study compares.

Factor ``spp_impl``; each variant keeps its original's bin rule and its original's failure, on
every Keras backend (written in ``keras.ops``):

* ``floor_ceil``: ours (``layers.SpatialPyramidPooling2D``), Appendix A bins, any size.
* ``round_bins``: the classic Keras SPP layer: bin i spans ``[round(i*a/n), round((i+1)*a/n))``
  (round half to even), one slice and one reduction per bin. When the map is smaller than a
  level some bins are empty: max gives -inf, average NaN (as the TensorFlow original did; JAX
  would refuse an empty max, so the max starts from -inf explicitly).
* ``paper_window``: the SPP paper's Section 2.3 rule as a pooling op: window ``ceil(a/n)``,
  stride ``floor(a/n)``, VALID padding. The number of bins is only ``n`` for some sizes (10 -> 9
  with n = 6), so the flattened length changes with the input size; stride 0 when ``a < n``.
* ``crop_split``: the deprecated TF-Addons layer: crop each side to a multiple of ``n`` (dropping
  ``a mod n`` rows and columns) and split into equal bins; empty bins (-inf / NaN) when ``a < n``.
* ``keras_adaptive``: Keras 3's ``AdaptiveMax/AveragePooling2D(n)`` per level. Level 1 uses
  ``GlobalMax/AveragePooling2D`` because ``output_size=1`` itself fails ("Negative dimension
  size", it pools with window a + 1); on TensorFlow the layer needs static spatial sizes (JAX
  always has them: it traces per shape).

The table of implementations (where each is built, what sizes it takes) is ``impls.SPP_IMPLS``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
from keras import ops

from spp_search.backends import runtime
from spp_search.infra.errors import ShapeError
from spp_search.model.bins import validate_levels, validate_pooling
from spp_search.model.impls import SPP_IMPLS
from spp_search.model.layers import _dims, _static


def _empty_safe(x, axis, pooling: str):
    """Max (from -inf, so an empty bin gives -inf on every backend) or mean (NaN when empty)."""
    return ops.max(x, axis=axis, initial=-math.inf) if pooling == "max" else ops.mean(x, axis=axis)


class _VariantSPP(keras.layers.Layer):
    """Shared argument handling and config of the variant layers (channels last)."""

    def __init__(self, levels: Sequence[int] = (1, 2, 4), pooling: str = "max", **kwargs) -> None:
        super().__init__(**kwargs)
        self.levels = validate_levels(levels)
        self.pooling = validate_pooling(pooling)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def get_config(self) -> dict:
        return {**super().get_config(), "levels": list(self.levels), "pooling": self.pooling}


class _FixedLengthSPP(_VariantSPP):
    """A variant whose output has ``C * sum(n*n)`` values for every input size."""

    def compute_output_shape(self, input_shape):
        c = input_shape[-1]
        return (input_shape[0], None if c is None else c * sum(n * n for n in self.levels))


def _round_edge(i: int, size, n: int):
    """``round(i * size / n)``, half to even (Python's round and TensorFlow's agree)."""
    if isinstance(size, int):
        return round(i * size / n)
    return ops.cast(ops.round(ops.cast(size, "float32") * (i / n)), "int32")


@keras.saving.register_keras_serializable(package="spp_search")
class RoundBinsSPP(_FixedLengthSPP):
    """The classic Keras SPP layer: rounded bin edges, one slice per bin."""

    def call(self, x):
        _, height, width, _ = _dims(x)
        outputs = []
        for n in self.levels:
            for j in range(n):
                for i in range(n):
                    y1, y2 = _round_edge(j, height, n), _round_edge(j + 1, height, n)
                    x1, x2 = _round_edge(i, width, n), _round_edge(i + 1, width, n)
                    outputs.append(_empty_safe(x[:, y1:y2, x1:x2, :], (1, 2), self.pooling))
        return ops.concatenate(outputs, axis=-1)


@keras.saving.register_keras_serializable(package="spp_search")
class PaperWindowSPP(_VariantSPP):
    """Section 2.3's window/stride pooling; static sizes when known, dynamic windows otherwise."""

    def call(self, x):
        b, height, width, _ = _dims(x)
        outputs = []
        for n in self.levels:
            if _static(height, width):
                win, stride = (-(-height // n), -(-width // n)), (height // n, width // n)
                if min(stride) == 0:  # TensorFlow's own error for this case, as a finding
                    raise ShapeError(f"Stride must be > 0, but got {stride} (a {height}x{width} map, level {n})")
                pool = ops.max_pool if self.pooling == "max" else ops.average_pool
                pooled = pool(x, win, stride, padding="valid")
            else:
                win, stride = [-(-d // n) for d in (height, width)], [d // n for d in (height, width)]
                pooled = runtime().window_pool(x, win, stride, self.pooling)
            outputs.append(ops.reshape(pooled, (b, -1)))
        return ops.concatenate(outputs, axis=-1)


@keras.saving.register_keras_serializable(package="spp_search")
class CropSplitSPP(_FixedLengthSPP):
    """TF-Addons' SPP: crop to a multiple of n, split into equal bins, reduce each."""

    def call(self, x):
        b, height, width, c = _dims(x)
        outputs = []
        for n in self.levels:
            h, w = height // n, width // n
            grid = ops.reshape(x[:, : h * n, : w * n, :], (b, n, h, n, w, c))
            outputs.append(ops.reshape(_empty_safe(grid, (2, 4), self.pooling), (b, -1)))
        return ops.concatenate(outputs, axis=-1)


def keras_adaptive(x, levels: Sequence[int], pooling: str):
    """Keras 3's adaptive pooling per level (global pooling for level 1), flattened, joined."""
    adaptive = keras.layers.AdaptiveMaxPooling2D if pooling == "max" else keras.layers.AdaptiveAveragePooling2D
    glob = keras.layers.GlobalMaxPooling2D if pooling == "max" else keras.layers.GlobalAveragePooling2D
    parts = []
    for n in validate_levels(tuple(levels)):
        pooled = glob()(x) if n == 1 else keras.layers.Flatten()(adaptive(n)(x))
        parts.append(pooled)
    return parts[0] if len(parts) == 1 else keras.layers.Concatenate()(parts)


def spp_head(x, impl: str, levels: Sequence[int], pooling: str):
    """Apply the SPP implementation ``impl`` (an entry of ``impls.SPP_IMPLS``) to a feature map."""
    build = SPP_IMPLS[impl].load()
    if isinstance(build, type):
        return build(levels, pooling, name="spp")(x)
    return build(x, levels, pooling)
