"""The SPP implementations a study compares: one table, read by everything that needs to know them.

Factor ``spp_impl`` picks one. Each entry names where its head is built (``build``: a Keras layer
class, called with ``levels``, ``pooling`` and ``name="spp"``, or a function ``(features, levels,
pooling) -> tensor``; imported only when a model is built, so reading a config never imports a
backend), whether it takes any input size (``any_size``: one output length for every size, and
it trains with unknown spatial dimensions, so a trained model is exported size-agnostic and the
variable input policies are open to it), and one line on whose approach it reproduces.
``benchmarks/spp_op.py`` times every entry beside a global-pooling floor.

Adding an implementation is one entry here (and its layer's code, e.g. in ``variants.py``) plus
its tests; ``tests/test_impls.py`` checks every entry builds, pools and says what it needs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class SppImpl:
    """One SPP implementation: where it is built, what sizes it takes, where it comes from."""

    build: str  # "module:attribute", a Layer class or a head function (see the module docstring)
    any_size: bool  # the input policies it supports: True, every one (one output length for every
    # size, trains with (None, None) inputs); False, ``fixed`` only (an explicit input size)
    origin: str  # whose approach it reproduces, and how it fails

    def load(self):
        """The layer class or head function named by ``build``."""
        module, attribute = self.build.split(":")
        return getattr(importlib.import_module(module), attribute)


SPP_IMPLS: dict[str, SppImpl] = {
    "floor_ceil": SppImpl(
        "spp_search.model.layers:SpatialPyramidPooling2D",
        True,
        "ours: the SPP paper's Appendix A bins, exact at any size",
    ),
    "paper_window": SppImpl(
        "spp_search.model.variants:PaperWindowSPP",
        False,
        "the paper's Section 2.3 window/stride: length varies with size",
    ),
    "round_bins": SppImpl(
        "spp_search.model.variants:RoundBinsSPP", True, "the classic Keras SPP layer: rounded bins, empty on small maps"
    ),
    "crop_split": SppImpl(
        "spp_search.model.variants:CropSplitSPP", True, "TF-Addons' layer: crops to a multiple of n, empty when a < n"
    ),
    "keras_adaptive": SppImpl(
        "spp_search.model.variants:keras_adaptive", False, "Keras 3's adaptive pooling: static sizes on TensorFlow"
    ),
}
