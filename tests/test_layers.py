"""The SPP layer against a NumPy reference on every backend, plus shapes, gradients, errors,
precision and serialization (a model saved under one backend loads under the other)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from spp_search import SpatialPyramidPooling2D
from spp_search.infra.errors import ConfigError
from spp_search.model.bins import reference_bins, reference_spp
from tests.backends import BACKENDS, on

LEVEL_SETS = [(1,), (2,), (1, 2), (1, 2, 4), (1, 2, 3, 6), (1, 2, 4, 8), (3, 5), (7,)]
RNG = np.random.default_rng(0)


def random_cases(count: int) -> list[tuple[np.ndarray, tuple[int, ...]]]:
    """(x, levels) with H and W from 1 to 20, so many maps are smaller than a level."""
    cases = []
    for _ in range(count):
        h, w, c = int(RNG.integers(1, 21)), int(RNG.integers(1, 21)), int(RNG.integers(1, 5))
        levels = LEVEL_SETS[int(RNG.integers(len(LEVEL_SETS)))]
        cases.append((RNG.normal(size=(2, h, w, c)).astype("float32"), levels))
    return cases


CASES = random_cases(60)


# --- run on each backend (module-level, so a spawned process can call them) ----------------------


def pooled(cases, pooling: str) -> list[np.ndarray]:
    """The layer's output for each (x, levels) case, static shapes, as NumPy."""
    from keras import ops

    return [ops.convert_to_numpy(SpatialPyramidPooling2D(levels, pooling)(x)) for x, levels in cases]


def fit_variable_sizes(sizes, jit_compile) -> tuple[list[float], np.ndarray, np.ndarray]:
    """Compiled ``fit`` on batches of several sizes (1x1 included); the losses, and a prediction."""
    model = _tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=jit_compile)
    rng = np.random.default_rng(3)
    losses = []
    for h, w in sizes:
        x = rng.normal(size=(4, h, w, 3)).astype("float32")
        losses.append(float(model.train_on_batch(x, np.array([0, 1, 0, 1]))))
    x = rng.normal(size=(2, 7, 5, 3)).astype("float32")
    return losses, model.predict(x, verbose=0), keras.ops.convert_to_numpy(model(x))


def gradient_of_small_maps(shape, pooling: str) -> tuple[np.ndarray, np.ndarray]:
    """Output and input gradient of sum(SPP(x)^2) for levels up to 8 on a tiny map."""
    x = np.random.default_rng(1).normal(size=(2, *shape, 4)).astype("float32")
    layer = SpatialPyramidPooling2D((1, 2, 4, 8), pooling)
    if keras.backend.backend() == "jax":
        import jax

        y = layer(x)
        grad = jax.grad(lambda t: (layer(t) ** 2).sum())(x)
        return np.asarray(y), np.asarray(grad)
    import tensorflow as tf

    t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(t)
        y = layer(t)
        loss = tf.reduce_sum(y * y)
    return y.numpy(), tape.gradient(loss, t).numpy()


def save(path: str) -> np.ndarray:
    """Save a tiny SPP model; return its prediction on a fixed input."""
    model = _tiny_model()
    model.save(path)
    return model.predict(_fixed_input(), verbose=0)


def load(path: str) -> tuple[list, np.ndarray]:
    """Load a saved model (``import spp_search`` first); its SPP levels and its prediction."""
    import spp_search  # noqa: F401  (registers the layer)

    loaded = keras.saving.load_model(path)
    layer = [lyr for lyr in loaded.layers if isinstance(lyr, SpatialPyramidPooling2D)][0]
    return layer.get_config()["levels"], loaded.predict(_fixed_input(), verbose=0)


def _fixed_input() -> np.ndarray:
    return np.random.default_rng(5).normal(size=(2, 11, 9, 3)).astype("float32")


def _tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = SpatialPyramidPooling2D((1, 2, 4), "max")(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


# --- tests ------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_matches_numpy_reference_on_every_backend(backend, pooling):
    for (x, levels), got in zip(CASES, on(backend, pooled, CASES, pooling), strict=True):
        np.testing.assert_allclose(
            got, reference_spp(x, levels, pooling), rtol=1e-5, atol=1e-6, err_msg=f"{x.shape=} {levels=}"
        )


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_matches_numpy_reference_with_dynamic_shapes_on_tensorflow(pooling):
    """TensorFlow traced once with None sizes: the tf.cond between both paths, run-time matrices.
    (JAX traces with concrete shapes, so it has no dynamic path.)"""
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the dynamic path exists on TensorFlow only")
    for levels in LEVEL_SETS:
        layer = SpatialPyramidPooling2D(levels, pooling)
        fn = tf.function(layer.call, input_signature=[tf.TensorSpec([None, None, None, 3])])
        for h, w in [(1, 1), (2, 3), (4, 4), (6, 12), (8, 8), (13, 7), (24, 24), (5, 20)]:
            x = RNG.normal(size=(2, h, w, 3)).astype("float32")
            np.testing.assert_allclose(
                fn(x), reference_spp(x, levels, pooling), rtol=1e-5, atol=1e-6, err_msg=f"{h=} {w=} {levels=}"
            )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (2, 9)])
def test_maps_smaller_than_levels_give_finite_values_and_gradients(backend, shape):
    for pooling in ("max", "avg"):
        y, grad = on(backend, gradient_of_small_maps, shape, pooling)
        assert y.shape == (2, 4 * 85)
        assert np.isfinite(y).all() and np.isfinite(grad).all() and np.abs(grad).sum() > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_fit_with_variable_sizes_has_finite_loss(backend):
    """Sizes 16, 20, 5, 3, 1 and 28 (and non-square) through one compiled model: no NaN."""
    sizes = [(16, 16), (20, 20), (5, 5), (3, 3), (1, 1), (28, 28), (13, 15)]
    losses, predicted, called = on(backend, fit_variable_sizes, sizes, "auto")
    assert np.isfinite(losses).all()
    np.testing.assert_allclose(predicted, called, rtol=1e-5, atol=1e-6)


def test_compiled_fit_with_xla_and_variable_sizes_on_tensorflow():
    """XLA compiles both branches of a tf.cond for every size: the layer must not use one there."""
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's dynamic-shape path")

    def batches():
        for size in (16, 13, 5, 1, 24):
            yield RNG.normal(size=(4, size, size + 2, 3)).astype("float32"), np.array([0, 1, 0, 1])

    spec = (tf.TensorSpec((None, None, None, 3)), tf.TensorSpec((None,), tf.int64))
    data = tf.data.Dataset.from_generator(batches, output_signature=spec)
    model = _tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=True)
    history = model.fit(data.repeat(), epochs=1, steps_per_epoch=5, shuffle=False, verbose=0)
    assert model.jit_compile and np.isfinite(history.history["loss"]).all()
    for pooling in ("max", "avg"):
        layer = SpatialPyramidPooling2D((1, 2, 4), pooling)
        compiled = tf.function(layer.call, jit_compile=True, input_signature=[tf.TensorSpec([None, None, None, 3])])
        for size in ((8, 8), (5, 7), (1, 1)):
            x = RNG.normal(size=(2, *size, 3)).astype("float32")
            np.testing.assert_allclose(compiled(x), reference_spp(x, (1, 2, 4), pooling), rtol=1e-5, atol=1e-6)


def jax_products_and_output(pooling: str, size: tuple[int, int]) -> tuple[list[str], np.ndarray]:
    """Under ``jax_default_matmul_precision=bfloat16``: the precision of every matrix product in
    the layer's program, and its output."""
    import jax

    x = np.random.default_rng(2).normal(size=(2, *size, 3)).astype("float32")
    layer = SpatialPyramidPooling2D((1, 2, 3), pooling)
    with jax.default_matmul_precision("bfloat16"):
        jaxpr = jax.make_jaxpr(layer)(x)
        y = np.asarray(jax.jit(layer)(x))
    products = [str(e.params["precision"]) for e in _equations(jaxpr.jaxpr) if e.primitive.name == "dot_general"]
    return products, y


def _equations(jaxpr):
    """Every equation of a jaxpr, those inside its ``cond`` branches (and other sub-jaxprs) too."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _equations(inner)


@pytest.mark.skipif("jax" not in BACKENDS, reason="JAX is not installed")
@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_jax_products_keep_float32_precision_when_the_default_is_lowered(pooling):
    """A CPU computes float32 products exactly whatever the setting; a GPU would use TF32 or
    bfloat16 units. So the test checks what the program asks for: every product HIGHEST."""
    products, y = on("jax", jax_products_and_output, pooling, (7, 10))
    assert products and all("HIGHEST" in p for p in products), products
    x = np.random.default_rng(2).normal(size=(2, 7, 10, 3)).astype("float32")
    np.testing.assert_allclose(y, reference_spp(x, (1, 2, 3), pooling), rtol=1e-6, atol=1e-6)


def test_tensorflow_products_avoid_tf32_when_a_gpu_would_use_it(monkeypatch):
    """TensorFlow has no per-op precision: with TF32 on and a GPU visible the product runs in float64."""
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's product")
    from spp_search.backends import _tensorflow

    monkeypatch.setattr(_tensorflow, "gpu_names", lambda: ["/physical_device:GPU:0"])
    tf.config.experimental.enable_tensor_float_32_execution(True)
    layer = SpatialPyramidPooling2D((1, 2, 3), "avg")
    graph = tf.function(layer.call).get_concrete_function(tf.TensorSpec([2, 7, 10, 3])).graph
    products = [op for op in graph.get_operations() if op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3")]
    assert products and all(op.inputs[0].dtype == tf.float64 for op in products)
    monkeypatch.setattr(_tensorflow, "gpu_names", lambda: [])
    graph = tf.function(layer.call).get_concrete_function(tf.TensorSpec([2, 7, 10, 3])).graph
    assert all(op.inputs[0].dtype == tf.float32 for op in graph.get_operations() if "MatMul" in op.type)


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


@pytest.mark.parametrize("saved_on", BACKENDS)
@pytest.mark.parametrize("loaded_on", BACKENDS)
def test_save_under_one_backend_load_under_another(tmp_path, saved_on, loaded_on):
    path = str(tmp_path / "m.keras")
    expected = on(saved_on, save, path)
    levels, predicted = on(loaded_on, load, path)
    assert levels == [1, 2, 4]
    np.testing.assert_allclose(predicted, expected, rtol=1e-5, atol=1e-6)


def test_get_config_round_trip():
    layer = SpatialPyramidPooling2D((1, 3), "avg", data_format="channels_first", name="spp")
    clone = SpatialPyramidPooling2D.from_config(layer.get_config())
    assert (clone.levels, clone.pooling, clone.data_format, clone.name) == ((1, 3), "avg", "channels_first", "spp")
