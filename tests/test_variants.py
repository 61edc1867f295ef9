"""Each SPP variant shows its original's documented behaviour; ours stays exact and finite."""

from __future__ import annotations

import numpy as np
import pytest

from spp_search import SpatialPyramidPooling2D
from spp_search.bins import reference_spp
from spp_search.variants import CropSplitSPP, PaperWindowSPP, RoundBinsSPP

RNG = np.random.default_rng(7)


def _x(h, w, c=2):
    return RNG.normal(size=(2, h, w, c)).astype("float32")


def test_round_bins_gives_minus_inf_on_3x3_with_level_4():
    out = RoundBinsSPP((1, 2, 4), "max")(_x(3, 3)).numpy()
    assert np.isneginf(out).any()
    assert np.isnan(RoundBinsSPP((4,), "avg")(_x(3, 3)).numpy()).any()
    assert np.isfinite(SpatialPyramidPooling2D((1, 2, 4))(_x(3, 3)).numpy()).all()


def test_round_bins_is_exact_where_its_bins_agree_with_appendix_a():
    x = _x(16, 16)
    np.testing.assert_allclose(RoundBinsSPP((1, 2, 4))(x), reference_spp(x, (1, 2, 4), "max"), rtol=1e-6)


@pytest.mark.parametrize(("size", "n", "bins"), [(10, 6, 9), (11, 4, 5), (16, 4, 4), (13, 2, 2)])
def test_paper_window_bin_count_depends_on_size(size, n, bins):
    out = PaperWindowSPP((n,))(_x(size, size, 1)).numpy()
    assert out.shape == (2, bins * bins)


def test_paper_window_stride_zero_when_map_is_smaller_than_level():
    with pytest.raises(Exception, match="[Ss]tride"):
        PaperWindowSPP((4,))(_x(3, 3))


def test_paper_window_avg_with_dynamic_windows_matches_static():
    import tensorflow as tf

    layer = PaperWindowSPP((2, 3), "avg")
    x = _x(9, 12)
    dynamic = tf.function(layer.call, input_signature=[tf.TensorSpec([None, None, None, 2])])
    np.testing.assert_allclose(dynamic(x), layer(x), rtol=1e-5, atol=1e-6)


def test_crop_split_drops_remainder_rows_and_empties_small_maps():
    x = _x(5, 5)
    x[:, 4, :, :] = 100.0  # the row a multiple-of-2 crop drops
    assert CropSplitSPP((2,))(x).numpy().max() < 100.0
    assert SpatialPyramidPooling2D((2,))(x).numpy().max() == 100.0
    assert np.isneginf(CropSplitSPP((4,))(_x(3, 3)).numpy()).all()


def test_keras_adaptive_needs_static_sizes():
    import keras
    import tensorflow as tf

    from spp_search.variants import keras_adaptive

    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras_adaptive(inputs, (1, 2), "max"))
    traced = tf.function(model, input_signature=[tf.TensorSpec([None, None, None, 3])])
    with pytest.raises(ValueError, match="statically known"):
        traced(_x(8, 8, 3))
    assert keras_adaptive(keras.Input((8, 8, 3)), (1, 2, 4), "avg").shape == (None, 3 * 21)
