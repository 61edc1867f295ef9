"""The keras.ops SPP layer against the TensorFlow-only layer it replaced, side by side (TensorFlow).

The old layer is read from git (``spp_search/layers.py`` at commit ``BEFORE``, the last one
before the port) into a temporary module, so both run in one process on the same inputs:
forward+backward, median of ``--repeats`` calls, each case timed old, new, old, new and the
medians of the two rounds kept. Target: the port is no slower on a CPU (ratio new / old <= 1.1).

    python -m benchmarks.spp_port [--repeats 30]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "78223cc"
CASES = [
    ((64, 32, 32, 128), (1, 2, 4)),
    ((32, 13, 13, 256), (1, 2, 4)),
    ((32, 13, 13, 256), (1, 2, 3, 6)),
    ((16, 7, 9, 512), (1, 2, 4)),
    ((16, 7, 9, 512), (1, 2, 3, 6)),
]


def old_layer_class():
    """``SpatialPyramidPooling2D`` as it was at ``BEFORE`` (registered under another package name)."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE}:spp_search/layers.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.replace('package="spp_search"', 'package="spp_search_before_port"')
    path = Path(tempfile.mkdtemp()) / "layers_before_port.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("layers_before_port", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.SpatialPyramidPooling2D


def median_ms(layer, shape, dynamic: bool, repeats: int) -> float:
    import tensorflow as tf

    from spp_search.backends import runtime

    step = runtime().input_gradient(layer, shape, dynamic)
    x = tf.constant(np.random.default_rng(0).normal(size=shape).astype("float32"))
    for _ in range(3):
        step(x).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(x).numpy()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    import os

    os.environ["KERAS_BACKEND"] = "tensorflow"
    from benchmarks.common import write
    from spp_search.model.layers import SpatialPyramidPooling2D as New

    Old = old_layer_class()
    rows = []
    for (shape, levels), pooling, mode in (
        (case, p, m) for case in CASES for p in ("max", "avg") for m in ("static", "dynamic")
    ):
        dynamic = mode == "dynamic"
        old, new = [], []
        for _ in range(2):
            old.append(median_ms(Old(levels, pooling), shape, dynamic, args.repeats))
            new.append(median_ms(New(levels, pooling), shape, dynamic, args.repeats))
        row = {
            "shape": list(shape),
            "levels": list(levels),
            "pooling": pooling,
            "mode": mode,
            "old_ms": statistics.median(old),
            "new_ms": statistics.median(new),
        }
        row["ratio_new_vs_old"] = row["new_ms"] / row["old_ms"]
        rows.append(row)
        print(f"{shape} {levels} {pooling} {mode}: old {row['old_ms']:.2f} new {row['new_ms']:.2f} ms", flush=True)
    ratios = [r["ratio_new_vs_old"] for r in rows]
    result = {"before": BEFORE, "repeats": args.repeats, "rows": rows, "worst_ratio": max(ratios)}
    result["median_ratio"] = statistics.median(ratios)
    print(f"new / old: median {result['median_ratio']:.2f}, worst {result['worst_ratio']:.2f}")
    print(f"wrote {write('spp_port', result, backend='tensorflow')}")


if __name__ == "__main__":
    main()
