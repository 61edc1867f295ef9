"""The zoo: planted faults and healthy controls, each a model, a folder, the options a user would
pass, and the culprit a correct diagnosis names (per backend where they differ)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from benchmarks.doctor_zoo import folders

ZOO = "benchmarks.doctor_zoo.models"


@dataclass(frozen=True)
class Case:
    name: str
    builder: str  # pkg.module:function
    folder: Callable[[Path], Path]
    expected: str | dict  # the culprit, or {backend: culprit}
    options: dict = field(default_factory=dict)
    fault: str = ""  # what was planted, in words

    def expected_on(self, backend: str) -> str:
        return (
            self.expected.get(backend, self.expected.get("default"))
            if isinstance(self.expected, dict)
            else self.expected
        )


SMALL = partial(folders.synthetic, min_size=12, max_size=20)
MIXED = partial(folders.synthetic, min_size=24, max_size=64)
PHOTOS = folders.photos
CASES = [
    Case(
        "rounded_bins",
        f"{ZOO}:rounded_bins_avg",
        SMALL,
        "layer_bins",
        fault="blog SPP, rounded bins, avg: empty bins on small maps",
    ),
    Case(
        "crop_split",
        f"{ZOO}:crop_split",
        SMALL,
        "layer_bins",
        fault="TF-Addons-style crop-and-split SPP, level 6 over 3-5 px maps",
    ),
    Case(
        "paper_window",
        f"{ZOO}:paper_window",
        MIXED,
        "layer_bins",
        {"input_policy": "variable_bucketed"},
        fault="Section 2.3 window/stride SPP (built at 64 px) fed bucketed sizes",
    ),
    Case(
        "keras_adaptive",
        f"{ZOO}:keras_adaptive",
        MIXED,
        {"tensorflow": "layer_static_shape", "jax": "none"},
        fault="Keras AdaptiveMaxPooling2D head on (None, None) inputs",
    ),
    Case(
        "flatten_variable",
        f"{ZOO}:flatten_head",
        PHOTOS,
        "head_fixed_size",
        {"input_policy": "variable_bucketed"},
        fault="Flatten head (64x64 input) fed bucketed sizes",
    ),
    Case("adam_lr", f"{ZOO}:adam_lr_too_high", PHOTOS, "learning_rate", fault="Adam at learning rate 2"),
    Case(
        "sgd_lr",
        f"{ZOO}:sgd_lr_too_high",
        PHOTOS,
        "learning_rate",
        fault="SGD momentum 0.9 at learning rate 5",
    ),
    Case(
        "float16",
        f"{ZOO}:float16_overflow",
        PHOTOS,
        "precision",
        fault="float16 layers, activations past 65504",
    ),
    Case(
        "gray_rgb",
        f"{ZOO}:gap_cnn",
        partial(folders.photos, modes=("RGB", "L")),
        "channel_count",
        fault="half the folder grayscale, channel_policy strict",
    ),
    Case(
        "rgba_rgb",
        f"{ZOO}:gap_cnn",
        partial(folders.photos, modes=("RGB", "RGB", "RGBA")),
        "channel_count",
        fault="a third of the folder RGBA, channel_policy strict",
    ),
    Case(
        "half_bgr",
        f"{ZOO}:gap_cnn",
        folders.colours,
        "channel_order",
        fault="half of each class stored BGR",
    ),
    Case(
        "memory",
        f"{ZOO}:upsampled_wide",
        PHOTOS,
        "memory",
        {"epochs": 3, "batch_size": 64, "host_memory_budget": "3GiB"},
        fault="4x upsampling then 256 channels, batch 64, 3 GiB budget",
    ),
    Case(
        "truncated",
        f"{ZOO}:gap_cnn",
        partial(folders.photos, truncated=2),
        "unreadable_data",
        fault="two truncated JPEGs per class",
    ),
    Case("healthy_exact_spp", f"{ZOO}:exact_spp", MIXED, "none", fault="none: the exact SPP layer, any size"),
    Case("healthy_gap", f"{ZOO}:gap_cnn", PHOTOS, "none", fault="none: a GAP CNN on photos"),
    Case(
        "healthy_fixed_flatten",
        f"{ZOO}:flatten_head",
        PHOTOS,
        "none",
        fault="none: a Flatten head at its own fixed size",
    ),
    Case(
        "healthy_pad_missing",
        f"{ZOO}:gap_cnn",
        partial(folders.photos, modes=("RGB", "L")),
        "none",
        {"channel_policy": "pad_missing"},
        fault="none: mixed bands, reconciled by the user's own policy",
    ),
]
