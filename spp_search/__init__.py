"""spp-search: find out why Spatial Pyramid Pooling models fail to train, and what trains best.

Importing the package registers :class:`SpatialPyramidPooling2D` with Keras, so a saved
``.keras`` model that uses it loads after a plain ``import spp_search``.
"""

from spp_search import variants  # noqa: F401  (registers the variant layers for .keras loading)
from spp_search.layers import SpatialPyramidPooling2D

__all__ = ["SpatialPyramidPooling2D"]
__version__ = "0.1.0"
