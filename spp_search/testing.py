"""Shared helpers for the tests and benchmarks: reference implementations and tiny fixtures.

Kept in the package (not under ``tests/``) so benchmarks can check exactness with the same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def reference_bins(size: int, n: int) -> list[tuple[int, int]]:
    """The SPP paper's Appendix A bins: ``[floor(i*a/n), ceil((i+1)*a/n))``, in plain Python."""
    return [(math.floor(i * size / n), math.ceil((i + 1) * size / n)) for i in range(n)]


def reference_spp(x: np.ndarray, levels: Sequence[int], pooling: str) -> np.ndarray:
    """NumPy SPP of an NHWC array, one loop per bin: slow and obviously right."""
    reduce = np.max if pooling == "max" else np.mean
    batch, height, width, _ = x.shape
    parts = []
    for n in levels:
        level = np.stack(
            [
                np.stack(
                    [reduce(x[:, r0:r1, c0:c1, :], axis=(1, 2)) for c0, c1 in reference_bins(width, n)],
                    axis=1,
                )
                for r0, r1 in reference_bins(height, n)
            ],
            axis=1,
        )
        parts.append(level.reshape(batch, -1))
    return np.concatenate(parts, axis=1)


def tiny_config(tmp_path, **study) -> dict:
    """A raw config for a study that trains in seconds: 48 tiny images, a 4-filter net."""
    return {
        "study": {
            "name": "tiny",
            "trials": 3,
            "epochs": 2,
            "storage": f"sqlite:///{tmp_path}/optuna.db",
            "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
            "device": "cpu",
            **study,
        },
        "data": {"synthetic": {"num_images": 48, "min_size": 16, "max_size": 32}},
        "defaults": {"image_size": 24, "width": 4, "dense_units": 8, "batch_size": 8},
        "space": {
            "levels": {"choices": [[1], [1, 2]]},
            "pooling": {"choices": ["max", "avg"]},
            "input_policy": {"choices": ["fixed", "variable_padded"]},
            "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
        },
    }
