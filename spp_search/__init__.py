"""spp-search: find out why Spatial Pyramid Pooling models fail to train, and what trains best.

Importing the package registers :class:`SpatialPyramidPooling2D` and the other SPP variants with
Keras (so it imports Keras, on the backend ``KERAS_BACKEND`` names): a saved ``.keras`` model that
uses them loads after a plain ``import spp_search``, under TensorFlow or JAX.

The command line does not: its driver and the commands that only read results (``report``,
``export-best``) never train, must not pay a backend's import (TensorFlow: ~4.5 s), and ``train
--backend jax`` must be free to choose Keras' backend. ``study.py`` sets ``SPP_SEARCH_LAZY=1``
before importing the package; the ``spp-search`` script and ``python -m spp_search`` are
recognised here (the package is imported before their code runs). Code that builds models
imports the layers itself.
"""

import os
import sys


def _command_line() -> bool:
    """This process is spp-search's command line (``spp-search ...``, ``python -m spp_search ...``)."""
    argv = list(getattr(sys, "orig_argv", []))
    if "-m" in argv and argv[argv.index("-m") + 1 : argv.index("-m") + 2] == ["spp_search"]:
        return True
    return bool(sys.argv) and os.path.basename(sys.argv[0]) == "spp-search"


if os.environ.get("SPP_SEARCH_LAZY") != "1" and not _command_line():
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
