"""A trial's data: the built-in sources and image folders, corrupted and split as configured.

``SOURCES`` maps each built-in ``data.source`` to its spec (a config section of the same name)
and its generator; any other source is an image folder. ``trial_data`` is what a trial trains
on: the split after its channel policy and order (``channels.conform``). Loading is cached per
process, so a worker that runs many trials generates or reads the images once.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from spp_search.data.digits import DigitsSpec, make_digits
from spp_search.data.images import ImageSet, load_folder, split
from spp_search.data.synthetic import SyntheticSpec, make_synthetic

SOURCES = {"synthetic": (SyntheticSpec, make_synthetic), "digits": (DigitsSpec, make_digits)}
BUILT_IN = tuple(SOURCES)  # data.source names that are not folders (use ./digits for a folder of that name)


@lru_cache(maxsize=4)
def _load(source: str, built_in: tuple, corruption: tuple, val_fraction: float, seed: int, cache: str, skip: bool):
    from spp_search.data.corruption import CorruptionSpec, corrupt, through_files

    if source in SOURCES:
        spec_type, generate = SOURCES[source]
        spec = spec_type(**dict(built_in))
        images, max_size = generate(spec), spec.max_size
    else:
        images = load_folder(Path(source), skip)
        max_size = int(images.sizes().max()) if len(images.sizes()) else 64
    damage = CorruptionSpec(**dict(corruption))
    if damage.active:
        images = corrupt(images, damage, max_size)
        if damage.needs_files:
            images = through_files(images, damage, Path(cache))
    return split(images, val_fraction, seed)


def load_trial_data(data_cfg: dict) -> tuple[ImageSet, ImageSet]:
    """Train/val :class:`~spp_search.data.images.ImageSet` (corrupted as configured); cached per process."""
    items = lambda key: tuple(sorted(data_cfg.get(key, {}).items()))  # noqa: E731
    source = data_cfg["source"]
    return _load(
        source,
        items(source if source in SOURCES else "synthetic"),
        items("corruption"),
        data_cfg["val_fraction"],
        data_cfg["split_seed"],
        data_cfg.get("cache_dir", ".spp_cache"),
        data_cfg.get("on_unreadable", "skip") == "skip",
    )


def bands_of(data_cfg: dict) -> int:
    """The model's band count: the built-in generator's, or ``data.bands`` for a folder."""
    if data_cfg["source"] in SOURCES:
        return int(data_cfg[data_cfg["source"]]["bands"])
    return int(data_cfg["bands"])


def classes_of(data_cfg: dict) -> int:
    """How many classes the data has, without reading an image (a folder: its class subfolders)."""
    from spp_search.data.images import class_folders

    if data_cfg["source"] in SOURCES:
        return int(data_cfg[data_cfg["source"]]["num_classes"])
    return len(class_folders(Path(data_cfg["source"])))


def trial_data(data_cfg: dict, factors: dict) -> tuple[ImageSet, ImageSet]:
    """The trial's train/val sets after its channel policy and order (``channels.conform``);
    ``factors`` are resolved (``config.factors.resolved``)."""
    from spp_search.data.channels import conform

    bands = bands_of(data_cfg)
    policy, order = factors["channel_policy"], factors["channel_order"]
    return tuple(conform(part, bands, policy, order) for part in load_trial_data(data_cfg))
