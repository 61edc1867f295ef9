"""Inject the data problems the document blames (culprit 3) into the built-in data, at set rates.

Kinds, each a rate in [0, 1] of the images it hits (disjoint draws, in this order):

* ``missing_bands``: the last band is gone (an RGB image with 2 bands; a satellite scene with a
  band missing).
* ``extra_bands``: an extra, constant band (an alpha channel).
* ``grayscale``: one band only (a grayscale file).
* ``sixteen_bit``: a 16-bit grayscale file (values scaled by 257).
* ``swapped_channels``: band order reversed (BGR), declared in the image's ``order``.
* ``odd_sizes``: a side outside the generated range: tiny (3-6 px) or huge (4 x ``max_size``).
* ``unreadable``: the file cannot be decoded.

File-level kinds (``grayscale``, ``sixteen_bit``, ``unreadable``) only exist as files, so when
any rate is set the corrupted data are written as real PNG files and read back through the same
folder loader a user's data go through.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from spp_search.data.images import ImageSet, load_folder, write_folder
from spp_search.infra.checks import SEED_MAX, check_numbers, numeric
from spp_search.infra.errors import ConfigError, must

KINDS = (
    "missing_bands",
    "extra_bands",
    "grayscale",
    "sixteen_bit",
    "swapped_channels",
    "odd_sizes",
    "unreadable",
)


@dataclass(frozen=True)
class CorruptionSpec:
    """Rates of each corruption kind (0 = off) and the seed that picks the images."""

    missing_bands: float = 0.0
    extra_bands: float = 0.0
    grayscale: float = 0.0
    sixteen_bit: float = 0.0
    swapped_channels: float = 0.0
    odd_sizes: float = 0.0
    unreadable: float = 0.0
    seed: int = numeric(0, 0, SEED_MAX, "Use a seed like 0.")

    def __post_init__(self) -> None:
        check_numbers(self)
        rates = {k: getattr(self, k) for k in KINDS}
        for kind, rate in rates.items():
            if isinstance(rate, bool) or not 0.0 <= rate <= 1.0:
                raise ConfigError(must(kind, "be a rate in [0, 1]", rate, "E.g. 0.05."))
        if sum(rates.values()) > 1.0:
            raise ConfigError(must("corruption", "have rates summing to at most 1", rates, "Lower them."))

    @property
    def active(self) -> bool:
        return any(getattr(self, k) > 0 for k in KINDS)

    @property
    def needs_files(self) -> bool:
        return self.grayscale > 0 or self.sixteen_bit > 0 or self.unreadable > 0


def _damage(kind: str, image: np.ndarray, rng: np.random.Generator, max_size: int):
    """One corrupted image (or None for unreadable) and its declared channel order."""
    if kind == "missing_bands":
        return image[..., :-1] if image.shape[-1] > 1 else image, "rgb"
    if kind == "extra_bands":
        return np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], -1), "rgb"
    if kind == "grayscale":
        return image.mean(axis=-1, keepdims=True).astype(np.uint8), "rgb"
    if kind == "sixteen_bit":
        return (image.mean(axis=-1, keepdims=True) * 257).astype(np.uint16), "rgb"
    if kind == "swapped_channels":
        return image[..., ::-1].copy(), "bgr"
    if kind == "odd_sizes":
        side = int(rng.integers(3, 7)) if rng.random() < 0.5 else 4 * max_size
        rows = np.linspace(0, image.shape[0] - 1, side).round().astype(int)
        cols = np.linspace(0, image.shape[1] - 1, side).round().astype(int)
        return image[rows][:, cols], "rgb"
    return None, "rgb"


def corrupt(data: ImageSet, spec: CorruptionSpec, max_size: int) -> ImageSet:
    """A copy of ``data`` with each kind applied to its share of the images (seeded)."""
    rng = np.random.default_rng(spec.seed)
    order = rng.permutation(len(data))
    images, orders, start = list(data.images), list(data.orders), 0
    for kind in KINDS:
        count = round(getattr(spec, kind) * len(data))
        for i in order[start : start + count]:
            images[i], orders[i] = _damage(kind, images[i], rng, max_size)
        start += count
    return data.replace_images(images, orders=orders)


def content_digest(data: ImageSet) -> str:
    """SHA-256 (first 12 hex digits) of an image set's content: every image's shape, dtype and
    bytes (or its read error), its label and its declared channel order."""
    sha = hashlib.sha256()
    for image, label, order, error in zip(data.images, data.labels, data.orders, data.errors, strict=True):
        if image is None:
            sha.update(f"unreadable:{error}".encode())
        else:
            sha.update(f"{image.shape}{image.dtype}".encode())
            sha.update(np.ascontiguousarray(image).tobytes())
        sha.update(f"|{int(label)}|{order};".encode())
    return sha.hexdigest()[:12]


def through_files(data: ImageSet, spec: CorruptionSpec, cache: Path) -> ImageSet:
    """Write the corrupted data as PNG files (once per spec and content) and read them back.

    The cache folder is keyed by the spec and a digest of the images themselves (pixels, labels,
    declared orders): two sources of the same size never share it, an edited folder gets a new one.
    """
    key = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode()).hexdigest()[:12]
    folder = cache / f"corrupt-{key}-{content_digest(data)}"
    if not (folder / "channel_order.json").is_file():
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        write_folder(data, tmp)
        try:
            tmp.rename(folder)
        except OSError:  # another worker wrote the same folder first
            shutil.rmtree(tmp, ignore_errors=True)
    return load_folder(folder)
