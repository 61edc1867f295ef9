"""spp-search: find out why Spatial Pyramid Pooling models fail to train, and what trains best.

Importing the package registers :class:`SpatialPyramidPooling2D` and the other SPP variants with
Keras (so it imports Keras, on the backend ``KERAS_BACKEND`` names): a saved ``.keras`` model that
uses them loads after a plain ``import spp_search``, under TensorFlow or JAX.

The command line sets ``SPP_SEARCH_LAZY=1`` before importing the package: its driver and the
commands that only read results (``report``, ``export-best``) never train, and must not pay a
backend's import (TensorFlow: ~4.5 s). Code that builds models imports the layers itself.
"""

import os

if os.environ.get("SPP_SEARCH_LAZY") != "1":
    from spp_search import variants  # noqa: F401  (registers the variant layers for .keras loading)
    from spp_search.layers import SpatialPyramidPooling2D

__all__ = ["SpatialPyramidPooling2D"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``spp_search.SpatialPyramidPooling2D`` also where the import was lazy."""
    if name == "SpatialPyramidPooling2D":
        from spp_search.layers import SpatialPyramidPooling2D

        return SpatialPyramidPooling2D
    raise AttributeError(f"module 'spp_search' has no attribute {name!r}")
