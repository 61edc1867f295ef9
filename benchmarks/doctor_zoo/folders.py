"""The folders the zoo's models train on, written as real image files (no download).

``photos``: crops of three photos that installed packages ship (``tests/photos.py``), the texture
task of a user's small folder; ``synthetic``: spp-search's generated position task at chosen
sizes; ``colours``: two classes told apart by colour alone, part of them stored BGR and declared
so in ``channel_order.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def synthetic(root: Path, min_size: int = 32, max_size: int = 64, num_images: int = 200, seed: int = 0) -> Path:
    from spp_search.data.images import write_folder
    from spp_search.data.synthetic import SyntheticSpec, make_synthetic

    write_folder(make_synthetic(SyntheticSpec(num_images, 4, min_size, max_size, seed=seed)), root)
    return root


def photos(root: Path, per_class: int = 60, modes: tuple[str, ...] = ("RGB",), truncated: int = 0, seed: int = 0):
    """Crops of the three photos, saved in ``modes`` in turn; ``truncated`` broken JPEGs per class."""
    from PIL import Image

    from tests.photos import _crop, _save, source_photos

    rng = np.random.default_rng(seed)
    for name, source in source_photos().items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        with Image.open(source) as photo:
            photo = photo.convert("RGB")
            for i in range(per_class):
                mode = modes[i % len(modes)]
                _save(_crop(photo, rng), mode, folder / f"{name}_{i:03d}.png")
            for i in range(truncated):
                broken = folder / f"{name}_broken{i}.jpg"
                _crop(photo, rng).save(broken, quality=90)
                broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    return root


def colours(root: Path, per_class: int = 60, bgr_fraction: float = 0.5, seed: int = 0) -> Path:
    """Two classes, red and blue noise textures; ``bgr_fraction`` of each stored with its bands
    reversed (as OpenCV writes), declared in ``channel_order.json``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    declared = {}
    for label, colour in (("red", 0), ("blue", 2)):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(32, 65, size=2))
            image = rng.normal(60, 25, size=(h, w, 3))
            image[..., colour] += 90 + 40 * rng.random((h, w))
            image = np.clip(image, 0, 255).astype(np.uint8)
            path = folder / f"{label}_{i:03d}.png"
            if i < round(bgr_fraction * per_class):
                image = image[..., ::-1]
                declared[path.relative_to(root).as_posix()] = "bgr"
            Image.fromarray(np.ascontiguousarray(image)).save(path)
    (root / "channel_order.json").write_text(json.dumps(declared, indent=0))
    return root
