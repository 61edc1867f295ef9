"""The SPP layer against a NumPy reference, plus shapes, gradients, errors and serialization."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from spp_search import SpatialPyramidPooling2D
from spp_search.bins import reference_bins, reference_spp
from spp_search.errors import ConfigError

LEVEL_SETS = [(1,), (2,), (1, 2), (1, 2, 4), (1, 2, 3, 6), (1, 2, 4, 8), (3, 5), (7,)]
RNG = np.random.default_rng(0)


def random_cases(count: int) -> list[tuple[int, int, int, tuple[int, ...]]]:
    """(H, W, C, levels) with H and W from 1 to 20, so many maps are smaller than a level."""
    return [
        (
            int(RNG.integers(1, 21)),
            int(RNG.integers(1, 21)),
            int(RNG.integers(1, 5)),
            LEVEL_SETS[int(RNG.integers(len(LEVEL_SETS)))],
        )
        for _ in range(count)
    ]


@pytest.mark.parametrize(
    ("size", "n", "expected"),
    [
        (1, 4, [(0, 1)] * 4),
        (13, 2, [(0, 7), (6, 13)]),
        (8, 4, [(0, 2), (2, 4), (4, 6), (6, 8)]),
        (3, 2, [(0, 2), (1, 3)]),
    ],
)
def test_reference_bins_follow_appendix_a(size, n, expected):
    assert reference_bins(size, n) == expected


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_matches_numpy_reference_static_shapes(pooling):
    for h, w, c, levels in random_cases(150):
        x = RNG.normal(size=(2, h, w, c)).astype("float32")
        got = SpatialPyramidPooling2D(levels, pooling)(x)
        np.testing.assert_allclose(
            got, reference_spp(x, levels, pooling), rtol=1e-5, atol=1e-6, err_msg=f"{h=} {w=} {c=} {levels=}"
        )


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_matches_numpy_reference_dynamic_shapes(pooling):
    """The same layer traced once with None sizes: exercises the tf.cond between both paths."""
    for levels in LEVEL_SETS:
        layer = SpatialPyramidPooling2D(levels, pooling)
        fn = tf.function(layer.call, input_signature=[tf.TensorSpec([None, None, None, 3])])
        sizes = [(1, 1), (2, 3), (4, 4), (6, 12), (8, 8), (13, 7), (24, 24), (5, 20)]
        for h, w in sizes:
            x = RNG.normal(size=(2, h, w, 3)).astype("float32")
            np.testing.assert_allclose(
                fn(x), reference_spp(x, levels, pooling), rtol=1e-5, atol=1e-6, err_msg=f"{h=} {w=} {levels=}"
            )


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (2, 9)])
def test_maps_smaller_than_levels_give_finite_values_and_gradients(shape):
    x = tf.constant(RNG.normal(size=(2, *shape, 4)).astype("float32"))
    for pooling in ("max", "avg"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = SpatialPyramidPooling2D((1, 2, 4, 8), pooling)(x)
            loss = tf.reduce_sum(y * y)
        grad = tape.gradient(loss, x)
        assert y.shape == (2, 4 * 85)
        assert np.isfinite(y.numpy()).all() and np.isfinite(grad.numpy()).all()
        assert np.abs(grad.numpy()).sum() > 0


def test_channels_first_equals_channels_last():
    x = RNG.normal(size=(2, 7, 5, 3)).astype("float32")
    last = SpatialPyramidPooling2D((1, 2, 3))(x)
    first = SpatialPyramidPooling2D((1, 2, 3), data_format="channels_first")(x.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(first, last, rtol=1e-6)


@pytest.mark.parametrize(
    ("data_format", "input_shape", "expected"),
    [
        ("channels_last", (None, None, None, 8), (None, 8 * 21)),
        ("channels_last", (4, 32, 32, 3), (4, 3 * 21)),
        ("channels_first", (None, 8, None, None), (None, 8 * 21)),
        ("channels_last", (None, None, None, None), (None, None)),
    ],
)
def test_compute_output_shape_passes_none(data_format, input_shape, expected):
    layer = SpatialPyramidPooling2D((1, 2, 4), data_format=data_format)
    assert layer.compute_output_shape(input_shape) == expected


def test_symbolic_shape_with_none_spatial_size():
    inputs = keras.Input((None, None, 5))
    assert SpatialPyramidPooling2D((1, 2, 4))(inputs).shape == (None, 5 * 21)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"levels": ()}, "non-empty"),
        ({"levels": (0, 1)}, "positive"),
        ({"levels": (-2,)}, "positive"),
        ({"levels": (1, 2.5)}, "positive integers"),
        ({"levels": "124"}, "sequence"),
        ({"levels": (True,)}, "positive"),
        ({"levels": (2, 2)}, "distinct"),
        ({"pooling": "min"}, "`pooling`"),
        ({"data_format": "nhwc"}, "`data_format`"),
    ],
)
def test_invalid_arguments_raise_clear_errors(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        SpatialPyramidPooling2D(**kwargs)
    assert "but got" in str(info.value)


def _tiny_model() -> keras.Model:
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = SpatialPyramidPooling2D((1, 2, 4), "max")(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def test_compiled_fit_with_variable_sizes_has_finite_loss():
    """Sizes 16, 20, 5, 3, 1 and 28 in one compiled fit: no eager fallback, no NaN."""

    def batches():
        for size in (16, 20, 5, 3, 1, 28):
            yield RNG.normal(size=(4, size, size, 3)).astype("float32"), np.array([0, 1, 0, 1])

    spec = (tf.TensorSpec((None, None, None, 3)), tf.TensorSpec((None,), tf.int64))
    data = tf.data.Dataset.from_generator(batches, output_signature=spec)
    model = _tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy", run_eagerly=False, jit_compile=False)
    history = model.fit(data.repeat(), epochs=2, steps_per_epoch=6, shuffle=False, verbose=0)
    assert not model.run_eagerly
    assert np.isfinite(history.history["loss"]).all()


def test_compiled_fit_with_xla_and_variable_sizes():
    """XLA compiles both branches of a tf.cond for every size: the layer must not use one there."""

    def batches():
        for size in (16, 13, 5, 1, 24):
            yield RNG.normal(size=(4, size, size + 2, 3)).astype("float32"), np.array([0, 1, 0, 1])

    spec = (tf.TensorSpec((None, None, None, 3)), tf.TensorSpec((None,), tf.int64))
    data = tf.data.Dataset.from_generator(batches, output_signature=spec)
    model = _tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=True)
    history = model.fit(data.repeat(), epochs=1, steps_per_epoch=5, shuffle=False, verbose=0)
    assert model.jit_compile
    assert np.isfinite(history.history["loss"]).all()
    x = RNG.normal(size=(2, 7, 5, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling", ["max", "avg"])
@pytest.mark.parametrize("size", [(8, 8), (5, 7), (1, 1)])
def test_xla_matches_reference(pooling, size):
    """Under XLA (no tf.cond) the layer gives the same numbers as the NumPy reference."""
    x = RNG.normal(size=(2, *size, 3)).astype("float32")
    layer = SpatialPyramidPooling2D((1, 2, 4), pooling)
    compiled = tf.function(layer.call, jit_compile=True, input_signature=[tf.TensorSpec([None, None, None, 3])])
    np.testing.assert_allclose(compiled(x), reference_spp(x, (1, 2, 4), pooling), rtol=1e-5, atol=1e-6)


def test_save_load_round_trip(tmp_path):
    model = _tiny_model()
    x = RNG.normal(size=(2, 11, 9, 3)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    layer = [lyr for lyr in loaded.layers if isinstance(lyr, SpatialPyramidPooling2D)][0]
    assert layer.get_config()["levels"] == [1, 2, 4] and layer.pooling == "max"
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)


def test_get_config_round_trip():
    layer = SpatialPyramidPooling2D((1, 3), "avg", data_format="channels_first", name="spp")
    clone = SpatialPyramidPooling2D.from_config(layer.get_config())
    assert (clone.levels, clone.pooling, clone.data_format, clone.name) == (
        (1, 3),
        "avg",
        "channels_first",
        "spp",
    )
