"""Each SPP variant shows its original's documented behaviour on every backend; ours stays exact."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from spp_search import SpatialPyramidPooling2D
from spp_search.model.bins import reference_spp
from spp_search.model.variants import CropSplitSPP, PaperWindowSPP, RoundBinsSPP
from tests.backends import BACKENDS, on

RNG = np.random.default_rng(7)
LAYERS = {"ours": SpatialPyramidPooling2D, "round_bins": RoundBinsSPP, "paper": PaperWindowSPP, "crop": CropSplitSPP}


def _x(h, w, c=2):
    return RNG.normal(size=(2, h, w, c)).astype("float32")


def apply(name: str, levels, pooling: str, x: np.ndarray):
    """A variant's output as NumPy, or the text of the error it raised."""
    try:
        return keras.ops.convert_to_numpy(LAYERS[name](levels, pooling)(x))
    except Exception as exc:  # noqa: BLE001 - the test asserts on the message
        return f"{type(exc).__name__}: {exc}"


def adaptive_on_variable_sizes() -> str:
    """Keras' adaptive pooling in a model with a ``None`` spatial input, predicting at 3 sizes
    (TensorFlow retraces with ``None`` sizes once it has seen a second shape)."""
    from spp_search.model.variants import keras_adaptive

    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras_adaptive(inputs, (1, 2), "max"))
    model.compile(loss="mse", jit_compile=False)
    try:
        shapes = {model.predict(_x(s, s, 3), verbose=0).shape for s in (8, 10, 12)}
        return f"ok {shapes}"
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_bins_gives_minus_inf_and_nan_when_the_map_is_smaller_than_the_level(backend):
    x = _x(3, 3)
    assert np.isneginf(on(backend, apply, "round_bins", (1, 2, 4), "max", x)).any()
    assert np.isnan(on(backend, apply, "round_bins", (4,), "avg", x)).any()
    assert np.isfinite(on(backend, apply, "ours", (1, 2, 4), "max", x)).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_bins_is_exact_where_its_bins_agree_with_appendix_a(backend):
    x = _x(16, 16)
    got = on(backend, apply, "round_bins", (1, 2, 4), "max", x)
    np.testing.assert_allclose(got, reference_spp(x, (1, 2, 4), "max"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("size", "n", "bins"), [(10, 6, 9), (11, 4, 5), (16, 4, 4), (13, 2, 2)])
def test_paper_window_bin_count_depends_on_size(backend, size, n, bins):
    assert on(backend, apply, "paper", (n,), "max", _x(size, size, 1)).shape == (2, bins * bins)


@pytest.mark.parametrize("backend", BACKENDS)
def test_paper_window_stride_zero_when_map_is_smaller_than_level(backend):
    assert "Stride must be > 0" in on(backend, apply, "paper", (4,), "max", _x(3, 3))


def test_paper_window_avg_with_dynamic_windows_matches_static_on_tensorflow():
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("dynamic windows exist on TensorFlow only")
    layer = PaperWindowSPP((2, 3), "avg")
    x = _x(9, 12)
    dynamic = tf.function(layer.call, input_signature=[tf.TensorSpec([None, None, None, 2])])
    np.testing.assert_allclose(dynamic(x), layer(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_crop_split_drops_remainder_rows_and_empties_small_maps(backend):
    x = _x(5, 5)
    x[:, 4, :, :] = 100.0  # the row a multiple-of-2 crop drops
    assert on(backend, apply, "crop", (2,), "max", x).max() < 100.0
    assert on(backend, apply, "ours", (2,), "max", x).max() == 100.0
    assert np.isneginf(on(backend, apply, "crop", (4,), "max", _x(3, 3))).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_adaptive_needs_static_sizes_on_tensorflow_only(backend):
    """TensorFlow refuses a None spatial size; JAX traces each call with its concrete size."""
    result = on(backend, adaptive_on_variable_sizes)
    if backend == "tensorflow":
        assert "statically known" in result
    else:
        assert result == "ok {(2, 15)}"
