"""spp-search: find out why Spatial Pyramid Pooling models fail to train, and what trains best.

Rooms, top to bottom (a room imports only from the rooms below it): ``cli`` parses and dispatches;
``doctor`` diagnoses a user's model; ``results`` (report, export, retraining) and ``study`` (the
engines, the trial loop, recording, liveness, MLflow tracking) run and read studies; ``trial``
trains one trial in an isolated worker and names its outcome; ``config`` validates experiments;
``model`` (SPP layers, the network) and ``data`` (images, policies, checks) are what a trial is
made of; ``backends`` and ``infra`` (errors, storages, retries, locks, redaction) serve them all.

Importing the package never imports Keras: the command line chooses the Keras backend after it
parses its arguments, and its driver never trains. It registers the SPP layers with Keras'
serialization as soon as Keras is imported (at once if it already is, else right after the first
``import keras``), so a saved ``.keras`` model that uses them loads after ``import spp_search``.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings

__all__ = ["SpatialPyramidPooling2D"]
__version__ = "0.1.0"


def _register_layers() -> None:
    """Import the layer modules: their classes register themselves with Keras."""
    try:
        from spp_search.model import layers, variants  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - never break the user's `import keras`
        warnings.warn(f"spp-search could not register its SPP layers with Keras: {exc}", stacklevel=2)


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``keras`` is about to be imported, it lets the normal finder
    find it and wraps the loader so that the layers register right after Keras has loaded."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def exec_module(module) -> None:
                run(module)
                _register_layers()

            spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    _register_layers()
elif not any(isinstance(f, _AfterKerasImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _AfterKerasImport())


def __getattr__(name: str):
    """``spp_search.SpatialPyramidPooling2D`` (imports Keras)."""
    if name == "SpatialPyramidPooling2D":
        from spp_search.model.layers import SpatialPyramidPooling2D

        return SpatialPyramidPooling2D
    raise AttributeError(f"module 'spp_search' has no attribute {name!r}")
