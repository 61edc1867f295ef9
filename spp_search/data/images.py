"""Images as a study sees them: ``ImageSet`` (uint8 arrays of any size and band count, with labels),
reading and writing image folders (one subfolder per class), and the train/validation split.

Sizing, scaling and batching happen later, in ``preprocessing.py``; reconciling band counts and
channel order with the model is ``channels.py``'s job.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spp_search.infra.errors import ConfigError, DataError, must

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_FILE_BYTES = 64 * 2**20
MAX_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class ImageSet:
    """Images (``uint8``, ``H x W x bands``, sizes and band counts vary) with labels.

    Per image it also keeps a ``name`` (file path, or ``synthetic/<i>``) for error messages, the
    channel ``order`` its source declares (``rgb`` or ``bgr``), and, for a file that could not be
    decoded, ``None`` in ``images`` with the reason in ``errors``. What to do about unreadable
    files, wrong band counts and orders is the channel policy's decision (``channels.py``).
    """

    images: list[np.ndarray | None]
    labels: np.ndarray
    class_names: tuple[str, ...]
    names: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.images)
        object.__setattr__(self, "names", self.names or [f"synthetic/{i}" for i in range(n)])
        object.__setattr__(self, "orders", self.orders or ["rgb"] * n)
        object.__setattr__(self, "errors", self.errors or [None] * n)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index) -> ImageSet:
        pick = lambda values: [values[i] for i in index]  # noqa: E731
        return ImageSet(
            pick(self.images),
            self.labels[np.asarray(index, dtype=np.int64)],
            self.class_names,
            pick(self.names),
            pick(self.orders),
            pick(self.errors),
        )

    def replace_images(self, images: list[np.ndarray | None], **changes) -> ImageSet:
        return dataclasses.replace(self, images=images, **changes)

    def sizes(self) -> np.ndarray:
        """``(N, 2)`` array of (height, width) of the readable images."""
        return np.array([im.shape[:2] for im in self.images if im is not None], dtype=np.int64)


def class_folders(root: Path) -> list[Path]:
    """The class subfolders of an image folder, sorted; ``ConfigError`` if it is not one."""
    fix = "Point --data at a folder with one subfolder of PNG/JPEG images per class."
    if not root.is_dir():
        raise ConfigError(must("data", "be an existing folder", str(root), fix))
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        raise ConfigError(must("data", "hold at least two class subfolders", str(root), fix))
    return folders


def read_image(path: Path) -> np.ndarray:
    """Decode one PNG/JPEG file to ``uint8`` ``H x W x bands``; ``DataError`` naming the file.

    Bands are kept as stored where they mean colour bands (grayscale 1, RGB 3, RGBA 4): reconciling
    them with the model's band count is the channel policy's job. Files whose stored values are
    not colour bands are converted, because no channel policy could undo them: palette images
    (indices into a colour table) to RGB or RGBA, CMYK (and YCbCr, LAB, HSV) to RGB, a grayscale
    image with alpha to grayscale (as two bands it would read as an image missing its third),
    16-bit values scaled to 8-bit, 1-bit to 0/255; EXIF orientation is applied, as a photo viewer
    does. Files over ``MAX_FILE_BYTES`` or ``MAX_PIXELS`` (decompression bombs included) are
    refused before they are decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if path.stat().st_size > MAX_FILE_BYTES:
        raise DataError(f"{path}: file is larger than {MAX_FILE_BYTES} bytes; resize it first.")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise DataError(
                    f"{path}: {img.width}x{img.height} exceeds {MAX_PIXELS} pixels (a decompression bomb "
                    "or a huge scan); resize or remove it."
                )
            array = np.asarray(_as_bands(ImageOps.exif_transpose(img)))
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: refused as a decompression bomb ({exc}). Remove the file.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc}). Remove or replace the file.") from exc
    if array.dtype.kind in "ui" and array.dtype.itemsize > 1:  # 16-bit (I;16, I;16B) or I
        array = (array.astype(np.float64) / 257.0).clip(0, 255).round().astype(np.uint8)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.dtype != np.uint8:
        raise DataError(f"{path}: unsupported image layout {array.shape} {array.dtype}.")
    return array


def _as_bands(img):
    """The PIL image with its values as colour bands (see ``read_image``)."""
    if img.mode in ("P", "PA"):
        return img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    if img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    if img.mode in ("LA", "La"):
        return img.getchannel("L")
    return img


def image_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) directly in ``folder``, sorted; hidden files are ignored."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES], [
        p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES
    ]


def load_folder(root: Path, skip_unreadable: bool = False) -> ImageSet:
    """Read every image under ``root/<class>/``; classes are the sorted subfolder names.

    Files that cannot be decoded are kept as ``None`` with their error (the channel policy
    decides), or left out with ``skip_unreadable`` (a user's folder under the default
    ``data.on_unreadable: skip``, after ``datacheck`` has named them). An optional
    ``root/channel_order.json`` maps relative paths to ``"bgr"`` for files stored in BGR order
    (as written by OpenCV, or declared by a product header).
    """
    sidecar = root / "channel_order.json"
    declared = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    images, labels, names, orders, errors = [], [], [], [], []
    folders = class_folders(root)
    for label, folder in enumerate(folders):
        for path in image_files(folder)[0]:
            relative = path.relative_to(root).as_posix()
            try:
                image, error = read_image(path), None
            except DataError as exc:
                if skip_unreadable:
                    continue
                image, error = None, str(exc)
            images.append(image)
            errors.append(error)
            labels.append(label)
            names.append(str(path))
            orders.append(declared.get(relative, "rgb"))
    if len(images) < 2 * len(folders):
        raise DataError(f"{root}: found {len(images)} images; need at least two per class.")
    return ImageSet(images, np.array(labels, dtype=np.int32), tuple(f.name for f in folders), names, orders, errors)


def write_folder(data: ImageSet, root: Path) -> None:
    """Write ``data`` as PNG files under ``root/<class>/`` (with ``channel_order.json``).

    Images with 1, 2, 3 or 4 bands are stored as L, LA, RGB, RGBA. Unreadable entries become
    truncated PNG files, so a reader meets a real decoding error.
    """
    from PIL import Image

    declared = {}
    for i, (image, label) in enumerate(zip(data.images, data.labels, strict=True)):
        path = root / data.class_names[label] / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if image is None:
            path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
            continue
        if image.dtype == np.uint16:
            Image.fromarray(image[..., 0]).save(path)
        else:
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
        if data.orders[i] != "rgb":
            declared[path.relative_to(root).as_posix()] = data.orders[i]
    (root / "channel_order.json").write_text(json.dumps(declared, indent=0))


def validation_count(images: int, val_fraction: float) -> int:
    """How many of a class's ``images`` go to validation: at least one, so every class is seen."""
    return max(1, round(images * val_fraction))


def split(data: ImageSet, val_fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """A seeded train/validation split, stratified by class so both hold every class."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    for label in np.unique(data.labels):
        index = rng.permutation(np.flatnonzero(data.labels == label))
        cut = validation_count(len(index), val_fraction)
        val.extend(index[:cut])
        train.extend(index[cut:])
    return data.subset(rng.permutation(train)), data.subset(rng.permutation(val))
