"""The Spatial Pyramid Pooling layer: exact floor/ceil bins, any input size, every Keras backend.

Bins follow the SPP paper's Appendix A rule (``bins.py``). The layer is written in ``keras.ops``,
one implementation for TensorFlow and JAX. Its paths compute the same numbers as NumPy pooling
exactly each bin's pixels, NaN and inf included (``tests/test_spp_edges.py``; timed by
``benchmarks/spp_op.py``):

* grid path, when height and width are multiples of ``L = lcm(levels)``: a reshape-and-reduce to an
  ``L x L`` grid, one axis at a time, from which every level is a further reshape-and-reduce.
* any size, products (the fast path): max pools only the finest level ``L`` (each bin's rows
  picked by a one-hot matrix product, then a max; every coarser level's bins are exactly unions
  of its bins, see ``finest_max_pyramid``); average is one matrix product with a bin-averaging
  matrix over all levels. Exact for finite maps only: 0 x inf is NaN, so one NaN or inf pixel
  would spread to every bin of its channel.
* any size, gathers (the exact path): each bin's rows, then columns, gathered (``ops.take``) and
  reduced; for average the padding of short bins is replaced by zeros with a select (never a
  product) and the sums divided by the bin areas. A NaN or an inf stays in the bins that hold it.
  An ``ops.cond`` runs it only for such maps (see ``_any_size``); levels whose finest grid is
  large (3, 5, 7 -> 105) always pool max this way, level by level.

The products are exact (``exact_matmul``: float32 precision even where the GPU's default would
use TF32 or bfloat16 matrix units). When the spatial size is known while tracing (always under
JAX, which traces per shape; on TensorFlow for explicit input shapes) the path is chosen in
Python and the bin matrices and indices are NumPy constants. On TensorFlow with ``None``
height/width a ``tf.cond`` picks the path per batch and they are built from the run-time size
(``backends/_tensorflow.py``), so the layer works inside compiled ``model.fit`` with variable sizes,
with XLA too. XLA as TensorFlow configures it drops a NaN from a max (its fast min/max); there the
bins that hold a NaN are found by pooling the map's 0/1 NaN mask too and set with a select.
Sizes are spelled out in every reshape (never -1), so an empty batch gives ``(0, C * bins)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from spp_search.backends import runtime
from spp_search.infra.errors import ConfigError, ShapeError, must
from spp_search.model import bins
from spp_search.model.bins import validate_levels, validate_pooling

MAX_FINEST_GRID = 16  # above it (e.g. levels 3, 5, 7 -> 105), max pools level by level


def reduce(x, axis, pooling: str):
    """Max or mean over ``axis``: the one reduction every SPP variant uses."""
    return ops.max(x, axis=axis) if pooling == "max" else ops.mean(x, axis=axis)


def _dims(x) -> tuple:
    """(batch, height, width, channels): Python ints where known, scalar tensors elsewhere."""
    dynamic = ops.shape(x)
    return tuple(s if s is not None else d for s, d in zip(x.shape, dynamic, strict=True))


def _static(*sizes) -> bool:
    return all(isinstance(s, int) for s in sizes)


def _from_cells(cells, levels: Sequence[int], pooling: str) -> list:
    """Each level as ``(B, n, n, C)`` from an ``L x L`` grid of cells, ``L`` a multiple of every level.

    Each level is pooled from the smallest grid already made that it divides (the ``L`` grid at
    first: for levels 1, 2, 3, 6, level 1 comes from level 2), one axis at a time. Measured on a
    CPU (TensorFlow, forward+backward of (16, 6, 6, 512) cells): 2x faster than one reduction over
    both axes of a 6-D reshape per level; max and mean of equal cells are both exact this way.
    """
    grids = {bins.finest_grid(levels): cells}
    for n in sorted(levels, reverse=True):
        if n not in grids:
            grids[n] = _coarsen(grids[min(m for m in grids if m % n == 0)], n, pooling)
    return [grids[n] for n in levels]


def _coarsen(x, n: int, pooling: str):
    """``(B, H, W, C) -> (B, n, n, C)``, ``H`` and ``W`` multiples of ``n``: equal blocks pooled,
    rows then columns (each a reduction over a middle axis, the channels contiguous)."""
    b, h, w, c = _dims(x)
    if n == 1:
        return ops.reshape(reduce(x, (1, 2), pooling), (b, 1, 1, c))
    rows = reduce(ops.reshape(x, (b, n, h // n, w, c)), 2, pooling)
    return reduce(ops.reshape(rows, (b, n, n, w // n, c)), 3, pooling)


def grid_pyramid(x, levels: Sequence[int], pooling: str) -> list:
    """Every level as ``(B, n, n, C)``, when height and width are multiples of ``L = lcm(levels)``.

    Pools once to an ``L x L`` grid of equal cells, then derives each level from that grid: exact,
    because every level's bins are unions of whole cells of equal size. The grid is reduced one
    axis at a time (rows, then columns), each a reduction over a middle axis with the channels
    contiguous: measured on (64, 32, 32, 128) on a CPU, as fast as one global max or mean pool,
    and 3x faster than one reduction over both spatial axes of a 6-D reshape.
    """
    return _from_cells(_coarsen(x, bins.finest_grid(levels), pooling), levels, pooling)


# --- any size, finite maps: matrix products with bin matrices (the fast path) ----------------------


def _selection(size, n: int, dtype):
    """One-hot ``(n * span, size)`` matrix and ``span``; NumPy when ``size`` is known."""
    if isinstance(size, int):
        matrix = bins.selection_matrix(size, n)
        return ops.convert_to_tensor(matrix, dtype=dtype), matrix.shape[0] // n
    return runtime().selection_matrix(size, n, dtype)


def max_rows(x, n: int):
    """``(B, H, W, C) -> (B, n, W, C)``: the max over each of n floor/ceil bins of rows.

    Rows are picked by a one-hot matrix product rather than a gather: the gradient is a matrix
    product too, where a gather's is a scatter-add (measured on a CPU with TensorFlow: 1.2-1.4x
    faster forward+backward on 7x9 to 32x32 maps). Exact for finite maps only (0 x inf is NaN).
    """
    b, h, w, c = _dims(x)
    select, span = _selection(h, n, x.dtype)
    picked = runtime().exact_matmul(select[None], ops.reshape(x, (b, h, w * c)))  # (B, n * span, W * C)
    return ops.max(ops.reshape(picked, (b, n, span, w, c)), axis=2)


def max_cols(x, n: int):
    """``(B, R, W, C) -> (B, R, n, C)``: the max over each of n floor/ceil bins of columns."""
    b, r, w, c = _dims(x)
    select, span = _selection(w, n, x.dtype)
    picked = runtime().exact_matmul(select[None], ops.reshape(x, (b * r, w, c)))  # (B * R, n * span, C)
    return ops.max(ops.reshape(picked, (b, r, n, span, c)), axis=3)


def matmul_avg_pyramid(x, levels: Sequence[int]):
    """Average pyramid of any size, flat ``(B, C * sum(n*n))``, as one matrix product:
    ``(sum n*n, H*W) @ (B, H*W, C)``.

    Row k of the matrix averages bin k's pixels (level n's block is the outer product of its row
    and column averaging matrices), so overlapping bins cost nothing extra, and the gradient is
    one more matrix product. Measured on a CPU: 3x faster than gathering bins (4-8x with the
    gradient). Exact for finite maps only.
    """
    b, h, w, c = _dims(x)
    if _static(h, w):
        matrix = ops.convert_to_tensor(bins.pyramid_averaging_matrix(h, w, levels), dtype=x.dtype)
    else:
        matrix = runtime().pyramid_averaging_matrix(h, w, levels, x.dtype)
    pooled = runtime().exact_matmul(matrix[None], ops.reshape(x, (b, h * w, c)))  # (B, sum n*n, C)
    # its rows are the levels' bins in order, row-major, each with its C values: already the
    # layer's output layout, so one reshape flattens it (no slice and concatenation per level)
    return ops.reshape(pooled, (b, sum(n * n for n in levels) * c))


def product_pyramid(x, levels: Sequence[int], pooling: str, c):
    """Any size, finite maps, flat ``(B, C * sum(n*n))``: max from the finest level ``L`` (see
    ``finest_max_pyramid``), its rows and columns picked by one-hot products; average as one
    product."""
    if pooling == "avg":
        return matmul_avg_pyramid(x, levels)
    grid = bins.finest_grid(levels)
    return _flat(_from_cells(max_cols(max_rows(x, grid), grid), levels, "max"), levels, _dims(x)[0], c)


# --- any size, every value (NaN, inf): gathers and selects, no product ---------------------------


def _bins(size, n: int) -> tuple:
    """``(n, span)`` row indices of each bin (repeats of its last row as padding), the ``(n, span)``
    mask of its real rows and the ``(n,)`` bin lengths: NumPy constants when ``size`` is known."""
    if isinstance(size, int):
        idx = bins.selection_indices(size, n)
        mask, length = bins.bin_mask(size, n)
        return ops.convert_to_tensor(idx, dtype="int32"), ops.convert_to_tensor(mask), length
    rt = runtime()
    return (rt.selection_indices(size, n), *rt.bin_mask(size, n))


def max_axis(x, n: int, axis: int):
    """The max over each of ``n`` floor/ceil bins along ``axis`` (1: rows, 2: columns).

    Each bin's rows are gathered (``ops.take``; a short bin repeats its last row, which a max
    ignores) and reduced: a NaN or an inf changes only the bins that hold it.
    """
    idx, _, _ = _bins(_dims(x)[axis], n)
    return ops.max(ops.take(x, idx, axis=axis), axis=axis + 1)


def sum_axis(x, n: int, axis: int):
    """The sum over each of ``n`` floor/ceil bins along ``axis``, and the bin lengths: gathered as
    in ``max_axis``, the padding rows replaced by zeros with a select (never multiplied by 0)."""
    idx, mask, length = _bins(_dims(x)[axis], n)
    mask = ops.expand_dims(ops.expand_dims(mask, -1), 0)  # (1, n, span, 1) for columns
    if axis == 1:
        mask = ops.expand_dims(mask, -1)  # (1, n, span, 1, 1) for rows
    picked = ops.take(x, idx, axis=axis)
    return ops.sum(ops.where(mask, picked, ops.zeros((), x.dtype)), axis=axis + 1), length


def max_level(x, n: int):
    """One max level ``(B, n, n, C)``: rows, then columns."""
    if n == 1:
        return ops.max(x, axis=(1, 2), keepdims=True)
    return max_axis(max_axis(x, n, 1), n, 2)


def avg_level(x, n: int):
    """One average level ``(B, n, n, C)``: row sums, column sums, divided by the bin areas."""
    if n == 1:
        return ops.mean(x, axis=(1, 2), keepdims=True)
    rows, height = sum_axis(x, n, 1)
    sums, width = sum_axis(rows, n, 2)
    area = ops.cast(ops.expand_dims(height, 1) * ops.expand_dims(width, 0), x.dtype)  # (n, n)
    return sums / ops.expand_dims(area, -1)


def finest_max_pyramid(x, levels: Sequence[int]) -> list:
    """Max pyramid of any size from the finest level ``L = lcm(levels)`` alone.

    Under the Appendix A rule, bin i of level n covers exactly the rows of bins
    ``i*L/n .. (i+1)*L/n - 1`` of level L (their first row is floor(i*a/n), their last
    ceil((i+1)*a/n) - 1). They may overlap, which a max ignores: so one pooled level and
    cheap reductions of its ``L x L`` grid give every level, exactly.
    """
    return _from_cells(max_level(x, bins.finest_grid(levels)), levels, "max")


def gather_pyramid(x, levels: Sequence[int], pooling: str) -> list:
    """Any size, any values: max from the finest level (when its grid is small), else level by
    level; average level by level."""
    if pooling == "avg":
        return [avg_level(x, n) for n in levels]
    if bins.finest_grid(levels) <= MAX_FINEST_GRID:
        return finest_max_pyramid(x, levels)
    return [max_level(x, n) for n in levels]


# --- the layer's function ---------------------------------------------------------------------


def _flat(pyramid: list, levels: Sequence[int], b, c):
    """Levels in order, bins row-major, then C: ``(B, C * sum(n*n))``. The sizes are spelled out
    (not -1), so an empty batch reshapes too."""
    return ops.concatenate([ops.reshape(p, (b, n * n * c)) for p, n in zip(pyramid, levels, strict=True)], axis=1)


def _exact(pyramid, levels: Sequence[int], pooling: str, c):
    """``x -> (B, C * sum(n*n))`` by ``pyramid``, with a NaN kept in the bins that hold it where
    the backend's max would drop it (XLA on TensorFlow): those bins are found by pooling the 0/1
    map of NaNs the same way (a max of 0s and 1s, no gradient) and set to NaN with a select."""

    def flat(x):
        out = _flat(pyramid(x, levels, pooling), levels, _dims(x)[0], c)
        if pooling == "max" and runtime().max_drops_nan():
            nans = ops.cast(ops.isnan(ops.stop_gradient(x)), x.dtype)
            marks = _flat(pyramid(nans, levels, pooling), levels, _dims(x)[0], c)
            out = ops.where(marks > 0, ops.full_like(out, float("nan")), out)
        return out

    return flat


def _any_size(levels: Sequence[int], pooling: str, c):
    """``x -> (B, C * sum(n*n))`` for any size: the products for a finite map, else the gathers.

    For a finite map the products are exact (a one-hot row picks one value; an averaging row's
    weights are positive and sum to 1, so no partial sum overflows); a NaN or an inf spreads to
    every bin of its channel (0 x inf and 0 x NaN are NaN), so the products' output is non-finite
    exactly when the map is. One ``ops.cond`` picks the path: on JAX it tests the input and runs
    only the taken path (testing the output made any-size max pooling 3-4x slower on JAX's CPU
    backend, measured side by side); on TensorFlow it tests the products' output, because XLA's
    dynamic-shape padding cannot take the products inside a ``cond`` (a RET_CHECK failure in
    ``compiled fit`` with ``None`` sizes), and there the output check costs 5-20%.
    """
    exact = _exact(gather_pyramid, levels, pooling, c)
    if pooling == "max" and bins.finest_grid(levels) > MAX_FINEST_GRID:
        return exact  # no products: one-hot matrices of a 105 x 105 grid would be big

    def on_input(x):
        return ops.cond(ops.all(ops.isfinite(x)), lambda: product_pyramid(x, levels, pooling, c), lambda: exact(x))

    def on_output(x):
        fast = product_pyramid(x, levels, pooling, c)  # a non-finite pixel makes its channel's bins non-finite
        return ops.cond(ops.all(ops.isfinite(fast)), lambda: fast, lambda: exact(x))

    return on_input if keras.backend.backend() == "jax" else on_output


def spatial_pyramid(x, levels: Sequence[int], pooling: str):
    """Pool an NHWC tensor into ``(B, C * sum(n*n))``: levels in order, bins row-major, then C."""
    grid = bins.finest_grid(levels)
    b, h, w, c = _dims(x)
    divisible = _exact(grid_pyramid, levels, pooling, c)
    general = _any_size(levels, pooling, c)
    if not _static(h, w):
        return runtime().dynamic_pyramid(x, grid, divisible, general)
    if h == 0 or w == 0:
        raise ShapeError(f"SPP input must have a non-empty spatial size, but got {h}x{w}.")
    if b == 0:  # Keras' eager max refuses an empty tensor: an empty sum, which keeps the gradient
        empty = ops.sum(x, axis=(1, 2))[:, None, :]  # (0, 1, C)
        return ops.reshape(ops.repeat(empty, sum(n * n for n in levels), axis=1), (0, c * sum(n * n for n in levels)))
    return (divisible if h % grid == 0 and w % grid == 0 else general)(x)


@keras.saving.register_keras_serializable(package="spp_search")
class SpatialPyramidPooling2D(keras.layers.Layer):
    """Spatial Pyramid Pooling over 2-D feature maps of any size (SPP paper, Appendix A bins).

    Args:
        levels: pyramid levels; level ``n`` pools the map into ``n x n`` bins. Default (1, 2, 4).
        pooling: ``"max"`` or ``"avg"``.
        data_format: ``"channels_last"`` (default from Keras config) or ``"channels_first"``.

    Input shape:
        4-D ``(batch, height, width, channels)`` (or channels first); height and width may be
        ``None`` and may be smaller than the largest level; the batch may be empty. Integer maps
        (int32, uint8, ...) are cast to the layer's compute dtype (``keras.config.floatx()`` by
        default) and pooled as numbers, for max as for average: ``GlobalAveragePooling2D``
        returns a float mean of an integer map too, while ``GlobalMaxPooling2D`` keeps the integer
        dtype; here the output dtype never depends on ``pooling``.

    Output shape:
        2-D ``(batch, channels * sum(n * n for n in levels))``, the same for every input size.

    Example:
        >>> import numpy as np
        >>> spp = SpatialPyramidPooling2D(levels=(1, 2), pooling="max")
        >>> tuple(spp(np.zeros((2, 5, 7, 3), "float32")).shape)
        (2, 15)
    """

    def __init__(
        self,
        levels: Sequence[int] = (1, 2, 4),
        pooling: str = "max",
        data_format: str | None = None,
        **kwargs: object,
    ) -> None:
        kwargs.pop("jit_safe", None)  # accepted from models saved before XLA was detected
        super().__init__(**kwargs)
        self.levels = validate_levels(levels)
        self.pooling = validate_pooling(pooling)
        self.data_format = data_format or keras.config.image_data_format()
        if self.data_format not in ("channels_last", "channels_first"):
            raise ConfigError(
                must(
                    "data_format",
                    "be 'channels_last' or 'channels_first'",
                    data_format,
                    "Pass one of the two, or leave it unset.",
                )
            )
        self.input_spec = keras.layers.InputSpec(ndim=4)

    @property
    def bins(self) -> int:
        """Number of bins per channel: ``sum(n * n)``."""
        return sum(n * n for n in self.levels)

    def call(self, inputs):
        x = ops.transpose(inputs, (0, 2, 3, 1)) if self.data_format == "channels_first" else inputs
        if not keras.backend.is_float_dtype(x.dtype):  # ints are pooled as numbers (see the docstring)
            x = ops.cast(x, self.compute_dtype)
        return spatial_pyramid(x, self.levels, self.pooling)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        channels = input_shape[1] if self.data_format == "channels_first" else input_shape[3]
        return (input_shape[0], None if channels is None else channels * self.bins)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(levels=list(self.levels), pooling=self.pooling, data_format=self.data_format)
        return config
