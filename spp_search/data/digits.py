"""A real-image task shipped offline: handwritten digits at random scale and place, among clutter.

The built-in ``synthetic`` data are easy and made up; findings should also hold on real images.
No download is allowed at run time, so this task is built from images a PyPI package ships:
scikit-learn's handwritten digits (1797 scans of 8x8 pixels, 16 grey levels, from the UCI
"Optical Recognition of Handwritten Digits" set). Each image of ``data.source: digits`` is

* a canvas of random height and width (``min_size``..``max_size``) with noise;
* one digit, its class, scaled to ``min_scale``..``max_scale`` of the canvas' shorter side
  (bilinear), at a random position: size and place vary, so scale matters;
* ``clutter`` fragments of *other* digits (a random quarter to half of one, at the same scale,
  so their strokes look like the target's), anywhere: a bag of local stroke features does not
  name the class, the arrangement of the strokes does;
* ink and background of random colours per image (colour carries no class information).

Each source digit is used at most once while ``num_images`` <= 1797, so training and validation
images never share a handwritten sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spp_search.data.images import ImageSet
from spp_search.infra.checks import SEED_MAX, check_numbers, numeric
from spp_search.infra.errors import ConfigError, must


@dataclass(frozen=True)
class DigitsSpec:
    """How ``data.source: digits`` is built; every field is a key of the config's ``data.digits``."""

    num_images: int = numeric(1200, 1, None, "Use e.g. 1200.")
    num_classes: int = numeric(10, 2, 10, "Use 10 (the digits 0-9).")
    min_size: int = numeric(40, 16, None, "E.g. 40 and 96.")
    max_size: int = numeric(96, 16, None, "E.g. 40 and 96.")
    min_scale: float = numeric(0.3, 0.05, 1.0, "E.g. 0.3 and 0.9.")
    max_scale: float = numeric(0.9, 0.05, 1.0, "E.g. 0.3 and 0.9.")
    clutter: int = numeric(3, 0, None, "E.g. 3 fragments per image.")
    noise: float = numeric(20.0, 0, None, "Use e.g. 20.")
    bands: int = numeric(3, 1, None, "Use 3 for RGB.")
    seed: int = numeric(0, 0, SEED_MAX, "Use a seed like 0.")

    def __post_init__(self) -> None:
        check_numbers(self)
        if not 16 <= self.min_size <= self.max_size:
            raise ConfigError(must("min_size", "be >= 16 and <= max_size", self.min_size, "E.g. 40 and 96."))
        if not 0.05 <= self.min_scale <= self.max_scale <= 1.0:
            fix = "E.g. 0.3 and 0.9."
            raise ConfigError(must("min_scale", "be in [0.05, max_scale], max_scale <= 1", self.min_scale, fix))
        if self.num_images < 2 * self.num_classes:
            raise ConfigError(must("num_images", "be at least twice num_classes", self.num_images, "Use 1200."))


def _source() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``uint8`` 8x8 images in 0..255 and their labels (no download)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images * (255 / 16)).round().astype(np.uint8), digits.target.astype(np.int32)


def _scaled(digit: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR), dtype=np.float64)


def _paste(ink: np.ndarray, patch: np.ndarray, rng: np.random.Generator) -> None:
    """Max-combine ``patch`` into ``ink`` at a random place where it fits (clipped if it cannot)."""
    ph, pw = min(patch.shape[0], ink.shape[0]), min(patch.shape[1], ink.shape[1])
    top = int(rng.integers(0, ink.shape[0] - ph + 1))
    left = int(rng.integers(0, ink.shape[1] - pw + 1))
    np.maximum(ink[top : top + ph, left : left + pw], patch[:ph, :pw], out=ink[top : top + ph, left : left + pw])


def _one_image(rng, target: np.ndarray, others: list[np.ndarray], spec: DigitsSpec) -> np.ndarray:
    height, width = (int(v) for v in rng.integers(spec.min_size, spec.max_size + 1, size=2))
    side = max(8, round(rng.uniform(spec.min_scale, spec.max_scale) * min(height, width)))
    ink = np.zeros((height, width))
    for other in others:  # clutter first: the target is drawn over it
        frag = _scaled(other, side)
        fh, fw = (int(rng.integers(side // 4, side // 2 + 1)) for _ in range(2))
        top, left = int(rng.integers(0, side - fh + 1)), int(rng.integers(0, side - fw + 1))
        _paste(ink, frag[top : top + fh, left : left + fw], rng)
    _paste(ink, _scaled(target, side), rng)
    alpha = (ink / 255.0)[..., None]
    background = rng.uniform(0, 110, size=spec.bands)
    colour = rng.uniform(150, 255, size=spec.bands)
    image = background * (1 - alpha) + colour * alpha + rng.normal(0, spec.noise, size=(height, width, spec.bands))
    return np.clip(image, 0, 255).astype(np.uint8)


def make_digits(spec: DigitsSpec) -> ImageSet:
    """Build ``spec.num_images`` images of the first ``num_classes`` digits; same seed, same images."""
    rng = np.random.default_rng(spec.seed)
    images, labels = _source()
    pool = rng.permutation(np.flatnonzero(labels < spec.num_classes))
    picks = np.resize(pool, spec.num_images)  # each source digit once, then again if more are asked
    built = []
    for index in picks:
        others = [images[int(i)] for i in rng.choice(len(images), size=spec.clutter) if labels[int(i)] != labels[index]]
        built.append(_one_image(rng, images[index], others, spec))
    names = tuple(f"digit_{d}" for d in range(spec.num_classes))
    return ImageSet(built, labels[picks].astype(np.int32), names, [f"digits/{i}" for i in range(len(built))])
