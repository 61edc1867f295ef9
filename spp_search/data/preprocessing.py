"""Input-size and preprocessing policies, as NumPy batches that every Keras backend trains on.

Size policies (factor ``input_policy``), the heart of the "SPP needs a fixed input" question:

* ``fixed``: every image is fitted to ``image_size x image_size``; the model gets an explicit size.
* ``multi_size``: the SPP paper's training: the fitted size switches every epoch between
  ``image_size`` and ``round(image_size * multi_size_ratio)`` (the paper's 224 and 180).
* ``variable_bucketed``: each side goes to the nearest of a few bucket sides, images are fitted
  to their bucket and batched per bucket, so at most ``len(sides)**2`` shapes are ever compiled.
* ``variable_padded``: native sizes, zero-padded per batch up to the next rung of a ladder of
  sides (the largest native side on top), so the number of shapes is bounded too.

Fitting methods (factor ``preprocessing``): ``resize`` (stretch, bilinear), ``letterbox`` (keep the
aspect ratio, pad), ``center_crop`` (cover the target, crop the middle). Value scaling
(``value_scaling``): ``unit`` ([0, 1]), ``symmetric`` ([-1, 1]) or ``standardize`` (per-band
mean/std of the train set).

Why NumPy: the same batches, in the same order for the same seed, on TensorFlow and on JAX (which
must not need TensorFlow), and every image is fitted once per trial (fitting is deterministic,
so it is the cache ``tf.data`` had). Every training batch is full: batches are cut from an
endless shuffled stream of images (a new permutation per pass, as ``shuffle().repeat()`` did), so
a bucket's last few images wait for the next pass instead of making a smaller batch: one
compiled shape per bucket. Validation batches are padded to the batch size with zero sample
weights for the same reason. ``backends.runtime().inputs`` hands the batches to Keras.

One module of ~340 lines on purpose: the four size policies share the fitting functions and the
``Batches`` stream, and read side by side they show how each bounds the compiled shapes.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from spp_search.data.images import ImageSet

INPUT_POLICIES = ("fixed", "multi_size", "variable_bucketed", "variable_padded")
PREPROCESSING = ("resize", "letterbox", "center_crop")
VALUE_SCALINGS = ("unit", "symmetric", "standardize")
PAPER_RATIO = 180 / 224  # the SPP paper's two training sizes, 180 and 224


def _axis_weights(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear source indices and weights along one axis, half-pixel centres (as TensorFlow)."""
    position = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    position = np.clip(position, 0, size_in - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, (position - low).astype(np.float32)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float ``H x W x C`` image to ``height x width`` (no antialiasing)."""
    if image.shape[:2] == (height, width):
        return image
    low, high, t = _axis_weights(image.shape[0], height)
    rows = image[low] * (1 - t)[:, None, None] + image[high] * t[:, None, None]
    low, high, t = _axis_weights(image.shape[1], width)
    return rows[:, low] * (1 - t)[None, :, None] + rows[:, high] * t[None, :, None]


def _place(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre ``image`` on a zero canvas of ``height x width``, cropping what does not fit."""
    h, w = image.shape[:2]
    top, left = (h - height) // 2, (w - width) // 2
    cropped = image[max(top, 0) : max(top, 0) + height, max(left, 0) : max(left, 0) + width]
    canvas = np.zeros((height, width, image.shape[2]), image.dtype)
    y, x = max(-top, 0), max(-left, 0)
    canvas[y : y + cropped.shape[0], x : x + cropped.shape[1]] = cropped
    return canvas


def fit_to(image: np.ndarray, height: int, width: int, method: str) -> np.ndarray:
    """Fit a float ``H x W x C`` image to exactly ``height x width`` with ``method``."""
    h, w = image.shape[:2]
    if method == "resize":
        return resize(image, height, width)
    if method == "letterbox":
        ratio = max(w / width, h / height)
        inner = resize(image, max(1, int(h / ratio)), max(1, int(w / ratio)))
        return _place(inner, height, width)
    scale = max(height / h, width / w)
    covered = resize(image, max(height, math.ceil(h * scale)), max(width, math.ceil(w * scale)))
    return _place(covered, height, width)


def scaler(train: ImageSet, value_scaling: str):
    """A function ``uint8 image -> float32 image`` for ``value_scaling``; statistics from ``train``."""
    if value_scaling == "unit":
        return lambda image: image.astype(np.float32) / 255.0
    if value_scaling == "symmetric":
        return lambda image: image.astype(np.float32) / 127.5 - 1.0
    pixels = np.concatenate([im.reshape(-1, im.shape[-1]) for im in train.images]).astype(np.float64)
    mean = pixels.mean(axis=0).astype(np.float32)
    std = np.maximum(pixels.std(axis=0), 1e-3).astype(np.float32)
    return lambda image: (image.astype(np.float32) - mean) / std


def default_bucket_sides(train: ImageSet, count: int = 3) -> tuple[int, ...]:
    """``count`` bucket sides: the centres of equal-population groups of the train images' sides,
    rounded to multiples of 8. Images go to the nearest side, so the mean pixel count stays
    close to the native one (rounding every side up would cost pixels and speed)."""
    return bucket_sides_of(train.sizes().reshape(-1), count)


def bucket_sides_of(sides: np.ndarray, count: int = 3) -> tuple[int, ...]:
    """``default_bucket_sides`` of an array of image sides (heights and widths together)."""
    centres = np.quantile(sides, (2 * np.arange(count) + 1) / (2 * count))
    return tuple(sorted({max(8, int(round(q / 8) * 8)) for q in centres}))


def padding_ladder(train: ImageSet, count: int = 3) -> tuple[int, ...]:
    """Sides a padded batch is padded up to: the bucket sides, the largest native side on top."""
    top = int(train.sizes().max())
    return tuple(sorted({*(s for s in default_bucket_sides(train, count) if s < top), top}))


def bucket_of(size: int, sides: tuple[int, ...]) -> int:
    """Index of the bucket side nearest to ``size`` (the smaller one on a tie)."""
    return int(np.argmin(np.abs(np.asarray(sides) - size)))


def _rung(size: int, ladder: tuple[int, ...]) -> int:
    """The smallest side of ``ladder`` that holds ``size`` (the top one if none does)."""
    return next((s for s in ladder if s >= size), ladder[-1])


@dataclass
class Batches:
    """Batches of one split: ``(x, y)`` for training (endless, full), ``(x, y, w)`` for validation.

    ``groups`` holds the fitted images as arrays of one shape each (one group per size for
    ``fixed`` and ``multi_size``, per bucket for ``variable_bucketed``) or, for padded batches,
    the scaled native images (``ladder`` gives the sides to pad up to). ``sizes_by_epoch``: for
    ``multi_size``, epoch ``e`` trains on group ``e % 2``.
    """

    groups: list
    labels: list[np.ndarray]
    batch_size: int
    seed: int
    ladder: tuple[int, ...] | None = None
    alternate: bool = False

    def __len__(self) -> int:
        """Training steps per epoch: one pass over the images (as many as a plain epoch)."""
        images = len(self.labels[0]) if self.alternate else sum(len(lab) for lab in self.labels)
        return math.ceil(images / self.batch_size)

    def __post_init__(self) -> None:
        self._plans: list[list[tuple[int, list[int]]]] = []
        self._stream = self._indices()
        self._lock = threading.Lock()
        self._ahead: dict[tuple[int, int], Future] = {}
        self._pool: ThreadPoolExecutor | None = None

    def train_batch(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Training batch ``step`` of ``epoch``: the same for the same seed, whoever asks, in any order.

        Built ahead: while the device trains on this batch, a thread builds the next two (the NumPy
        copies release the GIL), so a fast GPU does not wait for the host between steps.
        """
        future = self._ahead.pop((epoch, step), None)
        batch = future.result() if future is not None else self.build(epoch, step)
        for key in self._following(epoch, step, 2):
            if key not in self._ahead:
                self._ahead[key] = self._executor().submit(self.build, *key)
        return batch

    def close(self) -> None:
        """Stop building ahead (the end of a trial)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._ahead.clear()

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="batches")
        return self._pool

    def _following(self, epoch: int, step: int, count: int) -> list[tuple[int, int]]:
        keys = []
        for _ in range(count):
            epoch, step = (epoch, step + 1) if step + 1 < len(self) else (epoch + 1, 0)
            keys.append((epoch, step))
        return keys

    def build(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Training batch ``step`` of ``epoch`` built on this thread, nothing ahead (what the
        prefetch thread runs; the pipeline benchmark times it)."""
        return self._batch(*self._plan(epoch)[step])

    def _plan(self, epoch: int) -> list[tuple[int, list[int]]]:
        with self._lock:  # the plan is drawn from one generator, whoever asks first
            while len(self._plans) <= epoch:
                self._plans.append([next(self._stream) for _ in range(len(self))])
            return self._plans[epoch]

    def at(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Training batch number ``step`` (0-based) of the endless sequence, whatever the epoch:
        a validation round of a step budget need not end where a pass does."""
        return self.train_batch(*divmod(step, len(self)))

    def shape_at(self, step: int) -> tuple[int, ...]:
        """Shape of training batch number ``step`` (0-based) of the endless sequence."""
        return self.shape_of(*divmod(step, len(self)))

    def shape_of(self, epoch: int, step: int) -> tuple[int, ...]:
        """Shape of training batch ``step`` of ``epoch`` (planned, not built)."""
        group, index = self._plan(epoch)[step]
        if self.ladder is None:
            return (len(index), *self.groups[group].shape[1:])
        images = [self.groups[group][i] for i in index]
        height = _rung(max(im.shape[0] for im in images), self.ladder)
        width = _rung(max(im.shape[1] for im in images), self.ladder)
        return (len(index), height, width, images[0].shape[2])

    def training(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every training batch of every epoch, in order, endlessly."""
        epoch = 0
        while True:
            for step in range(len(self)):
                yield self.train_batch(epoch, step)
            epoch += 1

    def _indices(self) -> Iterator[tuple[int, list[int]]]:
        """Endless full batches as (group, indices): shuffled passes, each batch from one group."""
        rng = np.random.default_rng(self.seed)
        windows: dict[int, list[int]] = {}
        emitted = 0
        while True:
            if self.alternate:  # multi-size: an epoch of batches per size, in turn
                group = (emitted // len(self)) % len(self.groups)
                order = [(group, int(i)) for i in rng.permutation(len(self.labels[group]))]
            else:
                order = [(g, i) for g, lab in enumerate(self.labels) for i in range(len(lab))]
                order = [order[k] for k in rng.permutation(len(order))]
            for group, index in order:
                window = windows.setdefault(group, [])
                window.append(index)
                if len(window) == self.batch_size:
                    yield group, window
                    windows[group] = []
                    emitted += 1
                    if self.alternate and emitted % len(self) == 0:
                        windows.clear()
                        break

    @property
    def validation_steps(self) -> int:
        return sum(math.ceil(len(labels) / self.batch_size) for labels in self.labels)

    def validation(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """One pass, in order, each batch padded to ``batch_size`` with zero-weight copies."""
        for group, labels in enumerate(self.labels):
            for start in range(0, len(labels), self.batch_size):
                index = list(range(start, min(start + self.batch_size, len(labels))))
                weights = np.zeros(self.batch_size, np.float32)
                weights[: len(index)] = 1.0
                index += [index[0]] * (self.batch_size - len(index))
                x, y = self._batch(group, index)
                yield x, y, weights

    def _batch(self, group: int, index: list[int]) -> tuple[np.ndarray, np.ndarray]:
        labels = self.labels[group][index]
        if self.ladder is None:
            x = self.groups[group][index]
        else:
            images = [self.groups[group][i] for i in index]
            height = _rung(max(im.shape[0] for im in images), self.ladder)
            width = _rung(max(im.shape[1] for im in images), self.ladder)
            x = np.zeros((len(images), height, width, images[0].shape[2]), np.float32)
            for k, im in enumerate(images):
                x[k, : im.shape[0], : im.shape[1]] = im
        return x, labels


@dataclass(frozen=True)
class Pipelines:
    """What a trial trains on: the batches of each split, and the model's input size."""

    train: Batches
    val: Batches
    input_size: tuple[int, int] | None
    train_sizes: tuple[tuple[int, int], ...]

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train)


def _fitted(data: ImageSet, index: list[int], height: int, width: int, method: str, scale) -> np.ndarray:
    out = np.empty((len(index), height, width, data.images[0].shape[-1]), np.float32)
    for k, i in enumerate(index):
        out[k] = fit_to(scale(data.images[i]), height, width, method)
    return out


def _by_size(data: ImageSet, sides: list[int], method: str, scale) -> tuple[list, list]:
    """One group per square side: every image fitted to it."""
    every = list(range(len(data)))
    return [_fitted(data, every, s, s, method, scale) for s in sides], [data.labels] * len(sides)


def _by_bucket(data: ImageSet, sides: tuple[int, ...], method: str, scale) -> tuple[list, list]:
    """One group per (height, width) bucket: each image fitted to the bucket nearest its size."""
    keys = [(bucket_of(im.shape[0], sides), bucket_of(im.shape[1], sides)) for im in data.images]
    groups, labels = [], []
    for key in sorted(set(keys)):
        index = [i for i, k in enumerate(keys) if k == key]
        groups.append(_fitted(data, index, sides[key[0]], sides[key[1]], method, scale))
        labels.append(data.labels[index])
    return groups, labels


def build_pipelines(train: ImageSet, val: ImageSet, factors: dict, seed: int) -> Pipelines:
    """Batches for one trial's ``input_policy``, ``preprocessing`` and ``value_scaling``."""
    policy, method = factors["input_policy"], factors["preprocessing"]
    size, batch = int(factors["image_size"]), int(factors["batch_size"])
    scale = scaler(train, factors["value_scaling"])
    make = lambda groups, labels, **kw: Batches(groups, labels, batch, seed, **kw)  # noqa: E731
    if policy == "fixed":
        pipes = Pipelines(
            make(*_by_size(train, [size], method, scale)),
            make(*_by_size(val, [size], method, scale)),
            (size, size),
            ((size, size),),
        )
    elif policy == "multi_size":
        sides = [size, max(1, round(size * float(factors["multi_size_ratio"])))]
        pipes = Pipelines(
            make(*_by_size(train, sides, method, scale), alternate=True),
            make(*_by_size(val, [size], method, scale)),
            None,
            tuple((s, s) for s in sides),
        )
    elif policy == "variable_bucketed":
        sides = tuple(factors["bucket_sides"] or default_bucket_sides(train))
        pipes = Pipelines(
            make(*_by_bucket(train, sides, method, scale)),
            make(*_by_bucket(val, sides, method, scale)),
            None,
            tuple((h, w) for h in sides for w in sides),
        )
    elif policy == "variable_padded":
        ladder = padding_ladder(train)
        native = lambda data: ([[scale(im) for im in data.images]], [data.labels])  # noqa: E731
        pipes = Pipelines(make(*native(train), ladder=ladder), make(*native(val), ladder=ladder), None, ())
    else:
        raise ValueError(f"unknown input_policy {policy!r}")  # config validation catches it first
    return pipes
