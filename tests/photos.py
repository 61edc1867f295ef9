"""A messy folder of real photos, built from photos that installed packages ship (no download).

Three classes, one per source photo (scikit-learn's ``china.jpg`` and ``flower.jpg``,
matplotlib's ``grace_hopper.jpg``); each image is a crop at a random position and scale, resized
to a random size, so sizes vary as in a user's folder. Per class the files are stored the ways a
user's files come: RGB PNG and JPEG, grayscale, RGBA, CMYK JPEG, 16-bit PNG, palette PNG,
grayscale with alpha, plus one truncated JPEG; the folder also holds a stray text file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MODES = ("RGB", "RGB", "RGB", "RGB", "RGB", "RGB", "L", "RGBA", "CMYK", "I;16", "P", "LA")


def source_photos() -> dict[str, Path]:
    """The three photos, by class name."""
    import matplotlib
    import sklearn.datasets

    images = Path(sklearn.datasets.__file__).parent / "images"
    sample = Path(matplotlib.get_data_path()) / "sample_data"
    return {"china": images / "china.jpg", "flower": images / "flower.jpg", "hopper": sample / "grace_hopper.jpg"}


def _crop(photo, rng: np.random.Generator):
    """A random square-ish crop (40-90% of the short side), resized to 32-80 px per side."""
    from PIL import Image

    short = min(photo.size)
    side = int(short * rng.uniform(0.4, 0.9))
    left = int(rng.integers(0, photo.width - side + 1))
    top = int(rng.integers(0, photo.height - side + 1))
    size = tuple(int(v) for v in rng.integers(32, 81, size=2))
    return photo.crop((left, top, left + side, top + side)).resize(size, Image.Resampling.BILINEAR)


def _save(image, mode: str, path: Path) -> Path:
    """Save ``image`` (RGB) in ``mode``; returns the path written (its suffix follows the mode)."""
    from PIL import Image

    if mode == "I;16":
        values = np.asarray(image.convert("L"), dtype=np.uint16) * 257
        path = path.with_suffix(".png")
        Image.fromarray(values).save(path)
    elif mode == "CMYK":
        path = path.with_suffix(".jpg")
        image.convert("CMYK").save(path, quality=90)
    elif mode == "P":
        path = path.with_suffix(".png")
        image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(path)
    elif mode in ("L", "LA", "RGBA"):
        path = path.with_suffix(".png")
        image.convert(mode).save(path)
    else:
        image.save(path, quality=90)
    return path


def messy_folder(root: Path, per_class: int = 24, seed: int = 0) -> dict[str, list[str]]:
    """Write the folder; returns ``{"truncated": [...], "stray": [...]}`` relative paths."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    truncated = []
    for name, source in source_photos().items():
        folder = root / name
        folder.mkdir(parents=True)
        with Image.open(source) as photo:
            photo = photo.convert("RGB")
            for i in range(per_class):
                mode = MODES[i % len(MODES)]
                suffix = ".jpg" if mode == "RGB" and i % 2 else ".png"
                _save(_crop(photo, rng), mode, folder / f"{name}_{i:03d}{suffix}")
            broken = folder / f"{name}_broken.jpg"
            _crop(photo, rng).save(broken, quality=90)
            broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # truncated mid-scan
            truncated.append(broken.relative_to(root).as_posix())
    (root / "china" / "notes.txt").write_text("shot list, not an image\n")
    return {"truncated": truncated, "stray": ["china/notes.txt"]}
