"""Size and preprocessing policies: exact output sizes, aspect handling, per-policy batch shapes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from spp_search.data import SyntheticSpec, make_synthetic, split
from spp_search.factors import default_factors
from spp_search.preprocessing import bucket_of, build_pipelines, default_bucket_sides, fit_to

DATA = make_synthetic(SyntheticSpec(num_images=40, min_size=16, max_size=48, seed=4))
TRAIN, VAL = split(DATA, 0.25, seed=0)


@pytest.mark.parametrize("method", ["resize", "letterbox", "center_crop"])
@pytest.mark.parametrize("shape", [(10, 30), (31, 7), (16, 16)])
def test_fit_to_gives_exact_size(method, shape):
    image = tf.ones((*shape, 3))
    assert fit_to(image, 20, 24, method).shape == (20, 24, 3)


def test_letterbox_keeps_aspect_and_pads_with_zeros():
    out = fit_to(tf.ones((10, 40, 1)), 40, 40, "letterbox").numpy()[..., 0]
    rows = out.max(axis=1)
    assert rows[:14].max() == 0 and rows[-14:].max() == 0 and np.allclose(out[16:24], 1)


def test_center_crop_keeps_the_middle():
    image = np.zeros((10, 30, 1), "float32")
    image[:, 10:20] = 1.0
    out = fit_to(tf.constant(image), 10, 10, "center_crop").numpy()
    assert np.allclose(out, 1.0)


def test_bucket_of_takes_the_nearest_side():
    sides = tf.constant([16, 32, 48])
    assert [int(bucket_of(tf.constant(s), sides)) for s in (5, 16, 23, 25, 40, 41, 90)] == [0, 0, 0, 1, 1, 2, 2]


def _factors(**kw):
    return {**default_factors(), "image_size": 24, "batch_size": 8, **kw}


def _shapes(ds, count):
    return [tuple(x.shape) for x, _ in ds.take(count)]


def test_fixed_policy_batches_and_explicit_size():
    pipes = build_pipelines(TRAIN, VAL, _factors(input_policy="fixed"), seed=0)
    assert pipes.input_size == (24, 24) and pipes.steps_per_epoch == 4
    assert set(_shapes(pipes.train, 6)) == {(8, 24, 24, 3)}
    x, y = next(iter(pipes.train))
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0 and y.dtype == tf.int32


def test_multi_size_switches_size_every_epoch():
    pipes = build_pipelines(TRAIN, VAL, _factors(input_policy="multi_size"), seed=0)
    steps = pipes.steps_per_epoch
    sides = [s[1] for s in _shapes(pipes.train, 3 * steps)]
    small = round(24 * 180 / 224)
    assert sides == [24] * steps + [small] * steps + [24] * steps
    assert pipes.input_size is None


def test_bucketed_shapes_stay_within_the_buckets():
    sides = default_bucket_sides(TRAIN)
    assert 1 <= len(sides) <= 3 and all(s % 8 == 0 for s in sides)
    native = TRAIN.sizes().prod(axis=1).mean()
    bucketed = np.mean(
        [
            sides[np.abs(np.array(sides) - h).argmin()] * sides[np.abs(np.array(sides) - w).argmin()]
            for h, w in TRAIN.sizes()
        ]
    )
    assert abs(bucketed / native - 1) < 0.15  # nearest sides keep the pixel count
    pipes = build_pipelines(TRAIN, VAL, _factors(input_policy="variable_bucketed"), seed=0)
    for shape in _shapes(pipes.train, 20) + _shapes(pipes.val, 20):
        assert shape[1] in sides and shape[2] in sides
    assert len(pipes.train_sizes) == len(sides) ** 2


def test_padded_batches_are_the_largest_native_size():
    pipes = build_pipelines(VAL, VAL, _factors(input_policy="variable_padded", batch_size=len(VAL)), seed=0)
    x, _ = next(iter(pipes.val))
    assert tuple(x.shape[1:3]) == tuple(VAL.sizes().max(axis=0))


@pytest.mark.parametrize(("scaling", "low", "high"), [("unit", 0, 1), ("symmetric", -1, 1)])
def test_value_scaling_ranges(scaling, low, high):
    pipes = build_pipelines(TRAIN, VAL, _factors(input_policy="fixed", value_scaling=scaling), seed=0)
    x, _ = next(iter(pipes.val))
    assert low <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= high


def test_standardize_centres_the_train_set():
    pipes = build_pipelines(
        TRAIN,
        VAL,
        _factors(input_policy="variable_padded", value_scaling="standardize", batch_size=len(TRAIN)),
        seed=0,
    )
    x, _ = next(iter(pipes.train))
    native = [tf.reshape(x[i, :h, :w], (-1, 3)) for i, (h, w) in enumerate(TRAIN.sizes())]
    assert abs(float(tf.reduce_mean(tf.concat(native, 0)))) < 0.3
