"""Choose where trials train: ``auto`` takes a GPU when TensorFlow sees one, else the CPU."""

from __future__ import annotations

import os

from spp_search.errors import ConfigError, must


def resolve_device(requested: str) -> str:
    """Return ``"gpu"`` or ``"cpu"`` for ``auto|cpu|gpu``; ``gpu`` with no GPU is a config error.

    With ``cpu`` the GPUs are hidden from this process (and from workers it spawns, through
    ``CUDA_VISIBLE_DEVICES``) before TensorFlow initialises them.
    """
    if requested == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import tensorflow as tf

    if requested == "cpu":
        tf.config.set_visible_devices([], "GPU")
        return "cpu"
    gpus = tf.config.list_physical_devices("GPU")
    if requested == "gpu" and not gpus:
        raise ConfigError(
            must(
                "device",
                "name a device TensorFlow sees",
                requested,
                "No GPU is visible here: use --device cpu or --device auto.",
            )
        )
    return "gpu" if gpus else "cpu"
