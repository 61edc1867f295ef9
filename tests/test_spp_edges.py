"""The SPP layer on edge inputs, every path x pooling x backend, against the NumPy reference.

Paths: ``grid`` (height and width multiples of ``lcm(levels)``), ``any`` (not), ``wide`` (levels
3, 5, 7: a finest grid of 105, pooled level by level), each called eagerly and compiled
(``jax.jit``; ``tf.function(jit_compile=True)``), and on TensorFlow traced with ``None`` batch,
height and width too, with and without XLA. Inputs: an empty batch, one NaN, +inf or -inf pixel,
a +inf and a -inf in one bin, int32 and uint8 maps. The reference pools exactly each bin's pixels
(``np.max`` / ``np.mean``, which keep a NaN or an inf in the bins that hold it, and only there);
integer maps are pooled as float32 numbers. Each backend's cases run in one call (one spawned
process for the other backend), so the table stays fast.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

from spp_search.model.bins import reference_spp
from tests.backends import BACKENDS, on

PATHS = {"grid": ((1, 2, 4), (8, 12)), "any": ((1, 2, 4), (7, 10)), "wide": ((3, 5, 7), (9, 11))}
MODES = {"tensorflow": ("eager", "jit", "dynamic", "dynamic_jit"), "jax": ("eager", "jit")}
INPUTS = ("empty", "nan", "posinf", "neginf", "inf_mix", "int32", "uint8")
CHANNELS = 3


def make_input(kind: str, size: tuple[int, int]) -> np.ndarray:
    """A (2, H, W, 3) map (batch 0 for ``empty``) with the edge value in batch 1, channel 1."""
    rng = np.random.default_rng(11)
    h, w = size
    if kind == "int32":
        return rng.integers(-50, 100, size=(2, h, w, CHANNELS)).astype("int32")
    if kind == "uint8":
        return rng.integers(0, 256, size=(2, h, w, CHANNELS)).astype("uint8")
    x = rng.normal(size=(0 if kind == "empty" else 2, h, w, CHANNELS)).astype("float32")
    r, c = h // 2, w // 2 - 1  # a few bins of each level hold it, not all
    if kind in ("nan", "posinf", "neginf"):
        x[1, r, c, 1] = {"nan": np.nan, "posinf": np.inf, "neginf": -np.inf}[kind]
    elif kind == "inf_mix":
        x[1, r, c, 1], x[1, r, c + 1, 1] = np.inf, -np.inf  # one bin of each level holds both
    return x


def expected(x: np.ndarray, levels, pooling: str) -> np.ndarray:
    return reference_spp(x.astype("float32"), levels, pooling).astype("float32")


CASES = [
    (backend, mode, path, pooling, kind)
    for backend in BACKENDS
    for mode, path, pooling, kind in itertools.product(MODES[backend], PATHS, ("max", "avg"), INPUTS)
]


# --- run on each backend (module-level, so a spawned process can call them) ----------------------


def _compiled(layer, mode: str, x: np.ndarray):
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(layer) if mode == "jit" else layer
    import tensorflow as tf

    if mode == "eager":
        return layer
    if mode == "jit":
        return tf.function(layer, jit_compile=True)
    spec = tf.TensorSpec([None, None, None, x.shape[-1]], tf.as_dtype(x.dtype))
    return tf.function(layer, input_signature=[spec], jit_compile=mode == "dynamic_jit")


def run_cases(cases: list) -> list:
    """Each (mode, path, pooling, kind): (output as NumPy, its dtype) or the error raised."""
    from keras import ops

    from spp_search import SpatialPyramidPooling2D

    results = []
    for mode, path, pooling, kind in cases:
        levels, size = PATHS[path]
        x = make_input(kind, size)
        try:
            y = _compiled(SpatialPyramidPooling2D(levels, pooling), mode, x)(x)
            results.append((ops.convert_to_numpy(y), str(y.dtype)))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            results.append(f"{type(exc).__name__}: {str(exc)[:300]}")
    return results


@functools.cache
def results_on(backend: str) -> dict:
    """Every case of ``backend``, run in one call."""
    mine = [case[1:] for case in CASES if case[0] == backend]
    return dict(zip(mine, on(backend, run_cases, mine), strict=True))


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("backend", "mode", "path", "pooling", "kind"), CASES)
def test_edge_input_matches_numpy_reference(backend, mode, path, pooling, kind):
    got = results_on(backend)[(mode, path, pooling, kind)]
    assert not isinstance(got, str), got
    y, dtype = got
    levels, size = PATHS[path]
    want = expected(make_input(kind, size), levels, pooling)
    assert y.shape == want.shape
    assert "float32" in dtype  # integer maps are pooled as numbers, in the compute dtype
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)  # NaN where NumPy has NaN, and only there


def test_reference_keeps_non_finite_values_in_their_bins():
    """The table's premise: NumPy changes only the bins that hold the edge pixel."""
    x = make_input("nan", (7, 10))
    ref = expected(x, (1, 2, 4), "max").reshape(2, -1, CHANNELS)
    assert 3 <= np.isnan(ref[1, :, 1]).sum() < 21  # at least one bin in each level, not all
    assert not np.isnan(ref[0]).any() and not np.isnan(ref[1, :, [0, 2]]).any()
    mixed = expected(make_input("inf_mix", (7, 10)), (1, 2, 4), "avg").reshape(2, -1, CHANNELS)[1, :, 1]
    assert np.isnan(mixed).any() and np.isinf(mixed).any() and np.isfinite(mixed).any()
    assert expected(make_input("empty", (7, 10)), (1, 2, 4), "avg").shape == (0, 21 * CHANNELS)
