"""Size and preprocessing policies as NumPy batches: exact sizes, aspect handling, bounded shapes,
full training batches, weighted validation, and the same batches for the same seed."""

from __future__ import annotations

import numpy as np
import pytest

from spp_search.config.factors import default_factors
from spp_search.data.images import split
from spp_search.data.preprocessing import (
    bucket_of,
    build_pipelines,
    default_bucket_sides,
    fit_to,
    padding_ladder,
    resize,
)
from spp_search.data.synthetic import SyntheticSpec, make_synthetic

DATA = make_synthetic(SyntheticSpec(num_images=40, min_size=16, max_size=48, seed=4))
TRAIN, VAL = split(DATA, 0.25, seed=0)


@pytest.mark.parametrize("method", ["resize", "letterbox", "center_crop"])
@pytest.mark.parametrize("shape", [(10, 30), (31, 7), (16, 16), (1, 1)])
def test_fit_to_gives_exact_size(method, shape):
    assert fit_to(np.ones((*shape, 3), np.float32), 20, 24, method).shape == (20, 24, 3)


def test_resize_matches_half_pixel_bilinear():
    """Upsampling a 2-pixel ramp by 2: half-pixel centres give 0, 0.25, 0.75, 1 (as TensorFlow)."""
    ramp = np.array([[0.0, 1.0]], np.float32)[:, :, None]
    np.testing.assert_allclose(resize(ramp, 1, 4)[0, :, 0], [0.0, 0.25, 0.75, 1.0])
    image = np.random.default_rng(0).random((9, 7, 2)).astype(np.float32)
    np.testing.assert_array_equal(resize(image, 9, 7), image)


def test_letterbox_keeps_aspect_and_pads_with_zeros():
    out = fit_to(np.ones((10, 40, 1), np.float32), 40, 40, "letterbox")[..., 0]
    rows = out.max(axis=1)
    assert rows[:14].max() == 0 and rows[-14:].max() == 0 and np.allclose(out[16:24], 1)


def test_center_crop_keeps_the_middle():
    image = np.zeros((10, 30, 1), "float32")
    image[:, 10:20] = 1.0
    assert np.allclose(fit_to(image, 10, 10, "center_crop"), 1.0)


def test_bucket_of_takes_the_nearest_side():
    sides = (16, 32, 48)
    assert [bucket_of(s, sides) for s in (5, 16, 23, 25, 40, 41, 90)] == [0, 0, 0, 1, 1, 2, 2]


def _factors(**kw):
    return {**default_factors(), "image_size": 24, "batch_size": 8, **kw}


def _train_shapes(pipes, epochs=3):
    return [pipes.train.train_batch(e, s)[0].shape for e in range(epochs) for s in range(pipes.steps_per_epoch)]


def test_fixed_policy_batches_and_explicit_size():
    pipes = build_pipelines(TRAIN, VAL, _factors(input_policy="fixed"), seed=0)
    assert pipes.input_size == (24, 24) and pipes.steps_per_epoch == 4
    assert set(_train_shapes(pipes)) == {(8, 24, 24, 3)}
    x, y = pipes.train.train_batch(0, 0)
    assert 0.0 <= x.min() and x.max() <= 1.0 and y.dtype == np.int32


def test_every_training_image_is_seen_and_batches_are_full():
    pipes = build_pipelines(TRAIN, VAL, _factors(input_policy="variable_bucketed"), seed=0)
    seen = [index for plan in (pipes.train._plan(e) for e in range(6)) for _, batch in plan for index in batch]
    groups = sum(len(labels) for labels in pipes.train.labels)
    assert all(len(b) == 8 for _, b in pipes.train._plan(0)) and len(seen) >= 5 * groups


def test_multi_size_switches_size_every_epoch():
    pipes = build_pipelines(TRAIN, VAL, _factors(input_policy="multi_size"), seed=0)
    steps, small = pipes.steps_per_epoch, round(24 * 180 / 224)
    assert [s[1] for s in _train_shapes(pipes)] == [24] * steps + [small] * steps + [24] * steps
    assert pipes.input_size is None and pipes.train.shape_of(1, 0) == (8, small, small, 3)


def test_bucketed_shapes_stay_within_the_buckets():
    sides = default_bucket_sides(TRAIN)
    assert 1 <= len(sides) <= 3 and all(s % 8 == 0 for s in sides)
    native = TRAIN.sizes().prod(axis=1).mean()
    bucketed = np.mean([sides[bucket_of(h, sides)] * sides[bucket_of(w, sides)] for h, w in TRAIN.sizes()])
    assert abs(bucketed / native - 1) < 0.15  # nearest sides keep the pixel count
    pipes = build_pipelines(TRAIN, VAL, _factors(input_policy="variable_bucketed"), seed=0)
    val_shapes = [x.shape for x, _, _ in pipes.val.validation()]
    for shape in _train_shapes(pipes, 5) + val_shapes:
        assert shape[0] == 8 and shape[1] in sides and shape[2] in sides
    assert len(set(_train_shapes(pipes, 5))) <= len(sides) ** 2
    assert [pipes.train.shape_of(1, s) for s in range(4)] == [pipes.train.train_batch(1, s)[0].shape for s in range(4)]


def test_padded_batches_pad_up_to_a_ladder_rung():
    ladder = padding_ladder(TRAIN)
    assert ladder[-1] == TRAIN.sizes().max()
    pipes = build_pipelines(TRAIN, VAL, _factors(input_policy="variable_padded"), seed=0)
    for x, _ in (pipes.train.train_batch(e, s) for e in range(3) for s in range(pipes.steps_per_epoch)):
        assert x.shape[1] in ladder and x.shape[2] in ladder
    assert len(set(_train_shapes(pipes))) <= len(ladder) ** 2


def test_validation_is_one_pass_padded_with_zero_weights():
    pipes = build_pipelines(TRAIN, VAL, _factors(input_policy="variable_bucketed"), seed=0)
    batches = list(pipes.val.validation())
    assert len(batches) == pipes.val.validation_steps
    assert sum(float(w.sum()) for _, _, w in batches) == len(VAL)
    assert all(len(y) == 8 for _, y, _ in batches)


def test_same_seed_same_batches_other_seed_other_order():
    one = build_pipelines(TRAIN, VAL, _factors(input_policy="fixed"), seed=3)
    two = build_pipelines(TRAIN, VAL, _factors(input_policy="fixed"), seed=3)
    other = build_pipelines(TRAIN, VAL, _factors(input_policy="fixed"), seed=4)
    np.testing.assert_array_equal(two.train.train_batch(2, 1)[0], one.train.train_batch(2, 1)[0])
    assert not np.array_equal(other.train.train_batch(0, 0)[1], one.train.train_batch(0, 0)[1])


@pytest.mark.parametrize(("scaling", "low", "high"), [("unit", 0, 1), ("symmetric", -1, 1)])
def test_value_scaling_ranges(scaling, low, high):
    pipes = build_pipelines(TRAIN, VAL, _factors(input_policy="fixed", value_scaling=scaling), seed=0)
    x, _, _ = next(pipes.val.validation())
    assert low <= x.min() and x.max() <= high


def test_standardize_centres_the_train_set():
    pipes = build_pipelines(TRAIN, VAL, _factors(input_policy="variable_padded", value_scaling="standardize"), seed=0)
    native = np.concatenate([im.reshape(-1, 3) for im in pipes.train.groups[0]])
    assert abs(float(native.mean())) < 1e-3 and abs(float(native.std()) - 1) < 1e-2


def fed_batches(policy: str) -> list[np.ndarray]:
    """The first training batches and validation batch as this backend's ``fit`` inputs yield them."""
    from spp_search.backends import runtime

    pipes = build_pipelines(TRAIN, VAL, _factors(input_policy=policy), seed=5)
    train, val, steps, _ = runtime().inputs(pipes, len(pipes.train))
    if steps is None:  # a PyDataset (JAX): batches by index, epoch by epoch
        first = [train[i] for i in range(2)]
        return [np.asarray(first[0][0]), np.asarray(first[1][1]), np.asarray(val[0][0]), np.asarray(val[0][2])]
    it, val_batch = iter(train), next(iter(val))
    first = [next(it) for _ in range(2)]
    return [first[0][0].numpy(), first[1][1].numpy(), val_batch[0].numpy(), val_batch[2].numpy()]


@pytest.mark.parametrize("policy", ["fixed", "variable_bucketed"])
def test_every_backend_is_fed_the_same_batches(policy):
    from tests.backends import BACKENDS, on

    fed = {backend: on(backend, fed_batches, policy) for backend in BACKENDS}
    for arrays in fed.values():
        for got, expected in zip(arrays, fed[BACKENDS[0]], strict=True):
            np.testing.assert_array_equal(got, expected)
