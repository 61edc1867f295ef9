"""The built-in data: generated images whose class is *where* a target sits, so SPP's pyramid matters.

The class is the cell of a ``g x g`` grid (``g = ceil(sqrt(num_classes))``) that holds a target
disk, so a 1x1 pyramid (global pooling) cannot beat chance, while a level that resolves the grid
can. The target is bright in the first band and a distractor disk is bright in the last band, so
a swapped channel order (RGB vs BGR) silently swaps target and distractor: the damage shows up as
lost accuracy, not as an error. Image sizes vary (``min_size``..``max_size``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spp_search.data.images import ImageSet
from spp_search.infra.checks import SEED_MAX, check_numbers, numeric
from spp_search.infra.errors import ConfigError, must


@dataclass(frozen=True)
class SyntheticSpec:
    """How the built-in data are generated; every field is a key of the config's ``data``."""

    num_images: int = numeric(768, 1, None, "Use 768.")
    num_classes: int = numeric(4, 2, None, "Use 4.")
    min_size: int = numeric(32, 4, None, "E.g. 32 and 96.")
    max_size: int = numeric(96, 4, None, "E.g. 32 and 96.")
    bands: int = numeric(3, 1, None, "Use 3 for RGB.")
    noise: float = numeric(30.0, 0, None, "Use e.g. 30.")
    contrast: float = numeric(90.0, None, None, "Use e.g. 90.")
    seed: int = numeric(0, 0, SEED_MAX, "Use a seed like 0.")

    def __post_init__(self) -> None:
        check_numbers(self)
        if self.num_classes < 2:
            raise ConfigError(must("num_classes", "be at least 2", self.num_classes, "Use 4."))
        if self.bands < 1:
            raise ConfigError(must("bands", "be at least 1", self.bands, "Use 3 for RGB."))
        if not 4 <= self.min_size <= self.max_size:
            raise ConfigError(must("min_size", "be >= 4 and <= max_size", self.min_size, "E.g. 32 and 96."))
        if self.num_images < 2 * self.num_classes:
            raise ConfigError(must("num_images", "be at least twice num_classes", self.num_images, "Use 768."))


def _disk(height: int, width: int, cy: float, cx: float, radius: float) -> np.ndarray:
    yy, xx = np.ogrid[:height, :width]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def _ring(height: int, width: int, cy: float, cx: float, radius: float) -> np.ndarray:
    return _disk(height, width, cy, cx, radius) & ~_disk(height, width, cy, cx, 0.55 * radius)


def _one_image(rng: np.random.Generator, label: int, spec: SyntheticSpec) -> np.ndarray:
    """One image whose target disk lies inside grid cell ``label``, plus two decoys anywhere.

    Decoys: a disk bright in the last band (the target's colour swapped) and a ring bright in the
    first band (the target's colour, another shape); both over noise, so telling the target
    apart takes local features, and placing it takes spatial bins.
    """
    height, width = (int(v) for v in rng.integers(spec.min_size, spec.max_size + 1, size=2))
    grid = math.ceil(math.sqrt(spec.num_classes))
    row, col = divmod(label, grid)
    image = rng.normal(70, spec.noise, size=(height, width, spec.bands))
    radius = max(1.5, 0.3 * min(height, width) / grid)
    cy = (row + rng.uniform(0.3, 0.7)) * height / grid
    cx = (col + rng.uniform(0.3, 0.7)) * width / grid
    image[_disk(height, width, cy, cx, radius), 0] += spec.contrast
    dy, dx, ry, rx = (
        rng.uniform(0, height),
        rng.uniform(0, width),
        rng.uniform(0, height),
        rng.uniform(0, width),
    )
    image[_disk(height, width, dy, dx, radius), spec.bands - 1] += spec.contrast
    image[_ring(height, width, ry, rx, 1.2 * radius), 0] += spec.contrast
    return np.clip(image, 0, 255).astype(np.uint8)


def make_synthetic(spec: SyntheticSpec) -> ImageSet:
    """Generate ``spec.num_images`` images, balanced over classes; the same seed, the same data."""
    rng = np.random.default_rng(spec.seed)
    labels = rng.permutation(np.arange(spec.num_images) % spec.num_classes)
    images = [_one_image(rng, int(label), spec) for label in labels]
    names = tuple(f"cell_{i:02d}" for i in range(spec.num_classes))
    return ImageSet(images, labels.astype(np.int32), names)
