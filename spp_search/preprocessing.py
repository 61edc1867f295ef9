"""Input-size and preprocessing policies, as tf.data pipelines.

Size policies (factor ``input_policy``), the heart of the "SPP needs a fixed input" question:

* ``fixed``: every image is fitted to ``image_size x image_size``; the model gets an explicit size.
* ``multi_size``: the SPP paper's training: the fitted size switches every epoch between
  ``image_size`` and ``round(image_size * multi_size_ratio)`` (the paper's 224 and 180).
* ``variable_bucketed``: each side goes to the nearest of a few bucket sides, images are fitted
  to their bucket and batched per bucket, so at most ``len(sides)**2`` shapes are ever traced.
* ``variable_padded``: native sizes, zero-padded to the largest image of each batch.

Fitting methods (factor ``preprocessing``): ``resize`` (stretch), ``letterbox`` (keep the aspect
ratio, pad), ``center_crop`` (cover the target, crop the middle). Value scaling (``value_scaling``):
``unit`` ([0, 1]), ``symmetric`` ([-1, 1]) or ``standardize`` (per-band mean/std of the train set).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from spp_search.data import ImageSet

INPUT_POLICIES = ("fixed", "multi_size", "variable_bucketed", "variable_padded")
PREPROCESSING = ("resize", "letterbox", "center_crop")
VALUE_SCALINGS = ("unit", "symmetric", "standardize")
PAPER_RATIO = 180 / 224


@dataclass(frozen=True)
class Pipelines:
    """What a trial trains on: endless train batches, one-pass validation, and the input size."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    steps_per_epoch: int
    input_size: tuple[int, int] | None
    train_sizes: tuple[tuple[int, int], ...]


def fit_to(image: tf.Tensor, height: tf.Tensor, width: tf.Tensor, method: str) -> tf.Tensor:
    """Fit a float ``H x W x C`` image to exactly ``height x width`` with ``method``."""
    if method == "resize":
        return tf.image.resize(image, tf.stack([height, width]))
    if method == "letterbox":
        return tf.image.resize_with_pad(image, height, width)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    target = tf.cast(tf.stack([height, width]), tf.float32)
    scale = tf.reduce_max(target / shape)
    covered = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    return tf.image.resize_with_crop_or_pad(tf.image.resize(image, covered), height, width)


def scaler(train: ImageSet, value_scaling: str):
    """A function ``uint8 image -> float32 image`` for ``value_scaling``; statistics from ``train``."""
    if value_scaling == "unit":
        return lambda image: tf.cast(image, tf.float32) / 255.0
    if value_scaling == "symmetric":
        return lambda image: tf.cast(image, tf.float32) / 127.5 - 1.0
    pixels = np.concatenate([im.reshape(-1, im.shape[-1]) for im in train.images]).astype(np.float64)
    mean = tf.constant(pixels.mean(axis=0), tf.float32)
    std = tf.constant(np.maximum(pixels.std(axis=0), 1e-3), tf.float32)
    return lambda image: (tf.cast(image, tf.float32) - mean) / std


def source(data: ImageSet) -> tf.data.Dataset:
    """Images and labels from Python lists (a generator: no giant constant in the graph)."""
    bands = data.images[0].shape[-1]

    def generate():
        yield from zip(data.images, data.labels, strict=False)

    signature = (tf.TensorSpec((None, None, bands), tf.uint8), tf.TensorSpec((), tf.int32))
    ds = tf.data.Dataset.from_generator(generate, output_signature=signature)
    return ds.apply(tf.data.experimental.assert_cardinality(len(data)))


def default_bucket_sides(train: ImageSet, count: int = 3) -> tuple[int, ...]:
    """``count`` bucket sides: the centres of equal-population groups of the train images' sides,
    rounded to multiples of 8. Images go to the nearest side, so the mean pixel count stays
    close to the native one (rounding every side up would cost pixels and speed)."""
    sides = train.sizes().reshape(-1)
    centres = np.quantile(sides, (2 * np.arange(count) + 1) / (2 * count))
    return tuple(sorted({max(8, int(round(q / 8) * 8)) for q in centres}))


def bucket_of(size: tf.Tensor, sides: tf.Tensor) -> tf.Tensor:
    """Index of the bucket side nearest to ``size`` (the smaller one on a tie)."""
    return tf.argmin(tf.abs(sides - size), output_type=tf.int32)


def to_buckets(ds: tf.data.Dataset, sides: tuple[int, ...], method: str) -> tf.data.Dataset:
    """Fit each image to its bucket (each side rounded up to a bucket side); add the bucket key."""
    sides_t = tf.constant(sides, tf.int32)

    def fit(image, label):
        shape = tf.shape(image)
        h, w = bucket_of(shape[0], sides_t), bucket_of(shape[1], sides_t)
        key = tf.cast(h * len(sides) + w, tf.int64)
        return fit_to(image, sides_t[h], sides_t[w], method), label, key

    return ds.map(fit, num_parallel_calls=tf.data.AUTOTUNE)


def batch_by_bucket(ds: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Batches that each hold images of one bucket (so of one shape)."""
    drop_key = lambda image, label, key: (image, label)  # noqa: E731
    return ds.group_by_window(
        key_func=lambda image, label, key: key,
        reduce_func=lambda key, window: window.map(drop_key).batch(batch_size),
        window_size=batch_size,
    )


def build_pipelines(train: ImageSet, val: ImageSet, factors: dict, seed: int) -> Pipelines:
    """tf.data pipelines for one trial's ``input_policy``, ``preprocessing`` and ``value_scaling``."""
    policy, method = factors["input_policy"], factors.get("preprocessing", "resize")
    size, batch = int(factors["image_size"]), int(factors["batch_size"])
    scale = scaler(train, factors.get("value_scaling", "unit"))
    autotune = tf.data.AUTOTUNE
    steps = math.ceil(len(train) / batch)

    def scaled(data: ImageSet) -> tf.data.Dataset:
        return source(data).map(lambda i, lab: (scale(i), lab), num_parallel_calls=autotune)

    def fixed_at(data: ImageSet, side: int) -> tf.data.Dataset:
        fit = lambda i, lab: (fit_to(i, side, side, method), lab)  # noqa: E731
        return scaled(data).map(fit, num_parallel_calls=autotune)

    def shuffled(ds: tf.data.Dataset) -> tf.data.Dataset:
        return ds.cache().shuffle(len(train), seed=seed, reshuffle_each_iteration=True)

    if policy == "fixed":
        train_ds = shuffled(fixed_at(train, size)).batch(batch).repeat()
        val_ds, sizes, input_size = fixed_at(val, size).batch(batch), ((size, size),), (size, size)
    elif policy == "multi_size":
        sides = (size, max(1, round(size * float(factors.get("multi_size_ratio", PAPER_RATIO)))))
        passes = [shuffled(fixed_at(train, s)).batch(batch).repeat() for s in sides]
        # one full pass (an epoch of `steps` batches) per size, in turn
        turn = tf.data.Dataset.range(len(sides)).flat_map(lambda i: tf.data.Dataset.from_tensors(i).repeat(steps))
        train_ds = tf.data.Dataset.choose_from_datasets(passes, turn.repeat())
        val_ds, sizes, input_size = fixed_at(val, size).batch(batch), tuple((s, s) for s in sides), None
    elif policy == "variable_bucketed":
        sides = tuple(factors.get("bucket_sides") or default_bucket_sides(train))
        bucketed = to_buckets(scaled(train), sides, method).cache()
        train_ds = batch_by_bucket(bucketed.shuffle(len(train), seed=seed).repeat(), batch)
        val_ds = batch_by_bucket(to_buckets(scaled(val), sides, method), batch)
        sizes, input_size = tuple((h, w) for h in sides for w in sides), None
    elif policy == "variable_padded":
        bands = train.images[0].shape[-1]
        pad = ([None, None, bands], [])
        train_ds = shuffled(scaled(train)).padded_batch(batch, padded_shapes=pad).repeat()
        val_ds, sizes, input_size = scaled(val).padded_batch(batch, padded_shapes=pad), (), None
    else:
        raise ValueError(f"unknown input_policy {policy!r}")  # config validation catches it first
    return Pipelines(train_ds.prefetch(autotune), val_ds.prefetch(autotune), steps, input_size, sizes)
