"""SPP bins without a backend: the Appendix A rule, argument checks, bin matrices, a NumPy reference.

Along an axis of length ``a``, bin ``i`` of ``n`` spans ``[floor(i*a/n), ceil((i+1)*a/n))`` (He et
al., TPAMI 2015, Appendix A): never empty, always ``n`` bins, overlapping when ``a`` is not a
multiple of ``n``. Everything here is NumPy, so config checks and the driver never import a deep
learning backend, and the layer (``layers.py``) turns these matrices into constants of any backend
when the spatial size is known while tracing (always under JAX).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from spp_search.infra.errors import ConfigError, must

POOLINGS = ("max", "avg")


def validate_levels(levels: object) -> tuple[int, ...]:
    """Return ``levels`` as a tuple of distinct positive ints, or raise ``ConfigError``."""
    if isinstance(levels, int) and not isinstance(levels, bool):
        levels = (levels,)
    fix = "Use a non-empty sequence of distinct positive integers, e.g. levels=(1, 2, 4)."
    if not isinstance(levels, Sequence) or isinstance(levels, str) or len(levels) == 0:
        raise ConfigError(must("levels", "be a non-empty sequence of integers", levels, fix))
    for n in levels:
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ConfigError(must("levels", "hold only positive integers", list(levels), fix))
    if len(set(levels)) != len(levels):
        raise ConfigError(must("levels", "hold distinct values", list(levels), fix))
    return tuple(int(n) for n in levels)


def validate_pooling(pooling: object) -> str:
    """Return ``pooling`` if it is one of ``POOLINGS``, else raise ``ConfigError``."""
    if pooling not in POOLINGS:
        raise ConfigError(must("pooling", f"be one of {POOLINGS}", pooling, "Use 'max' or 'avg'."))
    return str(pooling)


def edges(size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and end (exclusive) of the ``n`` bins over an axis of length ``size``."""
    i = np.arange(n)
    return (i * size) // n, ((i + 1) * size + n - 1) // n


def selection_indices(size: int, n: int) -> np.ndarray:
    """``(n, span)`` indices of each bin's rows, ``span`` the longest bin, clipped to its last row.

    Repeats do not change a max, so every bin can take the same number of rows.
    """
    start, end = edges(size, n)
    span = int((end - start).max())
    return np.minimum(start[:, None] + np.arange(span)[None, :], end[:, None] - 1)


def bin_mask(size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, span)`` mask of the real members of ``selection_indices`` (False on the repeats), and
    ``(n,)`` bin lengths: a sum over a bin leaves the repeats out with a select, never a product."""
    start, end = edges(size, n)
    length = end - start
    return np.arange(int(length.max()))[None, :] < length[:, None], length


def selection_matrix(size: int, n: int) -> np.ndarray:
    """``(n * span, size)`` one-hot rows picking each bin's indices (see ``selection_indices``)."""
    return np.eye(size, dtype=np.float32)[selection_indices(size, n).reshape(-1)]


def averaging_matrix(size: int, n: int) -> np.ndarray:
    """``(n, size)``: row k averages the indices of bin k."""
    start, end = edges(size, n)
    index = np.arange(size)
    inside = (index[None, :] >= start[:, None]) & (index[None, :] < end[:, None])
    return (inside / (end - start)[:, None]).astype(np.float32)


def pyramid_averaging_matrix(height: int, width: int, levels: Sequence[int]) -> np.ndarray:
    """``(sum n*n, height*width)``: row k of level n's block averages the pixels of its bin k."""
    blocks = []
    for n in levels:
        rows, cols = averaging_matrix(height, n), averaging_matrix(width, n)
        blocks.append((rows[:, None, :, None] * cols[None, :, None, :]).reshape(n * n, height * width))
    return np.concatenate(blocks, axis=0)


def finest_grid(levels: Sequence[int]) -> int:
    """``L = lcm(levels)``: every level's bins are unions of the bins of level ``L``."""
    return math.lcm(*levels)


def reference_bins(size: int, n: int) -> list[tuple[int, int]]:
    """The Appendix A bins in plain Python, the rule as the paper writes it."""
    return [(math.floor(i * size / n), math.ceil((i + 1) * size / n)) for i in range(n)]


def reference_spp(x: np.ndarray, levels: Sequence[int], pooling: str) -> np.ndarray:
    """NumPy SPP of an NHWC array, one loop per bin: slow and obviously right (tests, benchmarks)."""
    reduce = np.max if pooling == "max" else np.mean
    batch, height, width, _ = x.shape
    parts = []
    for n in levels:
        level = np.stack(
            [
                np.stack(
                    [reduce(x[:, r0:r1, c0:c1, :], axis=(1, 2)) for c0, c1 in reference_bins(width, n)],
                    axis=1,
                )
                for r0, r1 in reference_bins(height, n)
            ],
            axis=1,
        )
        parts.append(level.reshape(batch, n * n * x.shape[3]))  # not -1: the batch may be empty
    return np.concatenate(parts, axis=1)
