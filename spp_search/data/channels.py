"""Channel policies: what to do with images whose bands, order or file do not fit the model.

``channel_policy``:

* ``strict``: any unreadable file or band count other than the model's is a ``DataError``
  (the trial is ``data_error``), naming the first offending file and how many there are.
* ``pad_missing``: unreadable files are skipped; a 1-band image is replicated to every band,
  other missing bands are zero-filled; extra bands are dropped.
* ``drop_extra``: unreadable files are skipped; extra bands are dropped; missing bands are a
  ``DataError``.
* ``skip_unreadable``: unreadable files are skipped; any other band count is a ``DataError``, as
  under ``strict`` (the one change from ``strict`` the doctor tests for unreadable files).

``channel_order``: ``as_is`` trusts every image to be RGB (a BGR image silently swaps the
target's colour: lower accuracy, no error); ``normalize`` reverses images declared BGR.
"""

from __future__ import annotations

import numpy as np

from spp_search.data.images import ImageSet
from spp_search.infra.errors import DataError

CHANNEL_POLICIES = ("strict", "pad_missing", "drop_extra", "skip_unreadable")
CHANNEL_ORDERS = ("as_is", "normalize")


def _fit_bands(image: np.ndarray, bands: int) -> np.ndarray:
    have = image.shape[-1]
    if have >= bands:
        return image[..., :bands]
    if have == 1:
        return np.repeat(image, bands, axis=-1)
    return np.concatenate([image, np.zeros(image.shape[:2] + (bands - have,), image.dtype)], -1)


def _refuse(names: list[str], what: str, total: int, fix: str) -> DataError:
    return DataError(f"{names[0]}: {what} ({len(names)} of {total} images). {fix}")


def conform(data: ImageSet, bands: int, policy: str, order: str) -> ImageSet:
    """Apply ``policy`` and ``order``; the result has only readable ``bands``-band images."""
    unreadable = [n for n, im in zip(data.names, data.images, strict=True) if im is None]
    counts = [None if im is None else im.shape[-1] for im in data.images]
    missing = [n for n, c in zip(data.names, counts, strict=True) if c is not None and c < bands]
    extra = [n for n, c in zip(data.names, counts, strict=True) if c is not None and c > bands]
    if policy == "strict" and unreadable:
        first = data.errors[data.names.index(unreadable[0])]
        raise _refuse(
            unreadable,
            f"unreadable: {first}",
            len(data),
            "Fix or remove the files, or use channel_policy pad_missing or drop_extra to skip them.",
        )
    if policy in ("strict", "skip_unreadable") and (missing or extra):
        bad = missing or extra
        raise _refuse(
            bad,
            f"has {counts[data.names.index(bad[0])]} bands, the model takes {bands}",
            len(data),
            "Use channel_policy pad_missing or drop_extra, or fix the files.",
        )
    if policy == "drop_extra" and missing:
        raise _refuse(
            missing,
            f"has fewer than {bands} bands",
            len(data),
            "Use channel_policy pad_missing, or fix the files.",
        )
    keep = [i for i, im in enumerate(data.images) if im is not None]
    kept = data.subset(keep)
    images = [_fit_bands(im, bands) for im in kept.images]
    if order == "normalize":
        images = [im[..., ::-1].copy() if o == "bgr" else im for im, o in zip(images, kept.orders, strict=True)]
    return kept.replace_images(images, orders=["rgb"] * len(images) if order == "normalize" else kept.orders)
