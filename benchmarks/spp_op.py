"""SPP op speed: forward+backward of every ``spp_impl`` and of a global max pool (the floor).

For each input shape, levels, pooling and shape mode (static: the tf.function knows H and W;
dynamic: traced with None), every variant runs inside one tf.function computing the output and
its gradient; the median of ``--repeats`` timed calls is kept, and ratios are taken within the
same run (these machines are noisy).

    python -m benchmarks.spp_op [--repeats 20] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import write
from spp_search.bins import reference_spp
from spp_search.layers import SpatialPyramidPooling2D
from spp_search.variants import CropSplitSPP, PaperWindowSPP, RoundBinsSPP, keras_adaptive

SHAPES = [(64, 32, 32, 128), (32, 13, 13, 256), (16, 7, 9, 512)]
LEVELS = [(1, 2, 4), (1, 2, 3, 6)]


def _layer(impl: str, levels, pooling: str, shape):
    if impl == "global_floor":
        return keras.layers.GlobalMaxPooling2D() if pooling == "max" else keras.layers.GlobalAveragePooling2D()
    if impl == "keras_adaptive":
        inputs = keras.Input(shape[1:])
        return keras.Model(inputs, keras_adaptive(inputs, levels, pooling))
    cls = {
        "floor_ceil": SpatialPyramidPooling2D,
        "round_bins": RoundBinsSPP,
        "paper_window": PaperWindowSPP,
        "crop_split": CropSplitSPP,
    }[impl]
    return cls(levels, pooling)


def time_variant(impl, levels, pooling, shape, dynamic: bool, repeats: int) -> float | None:
    """Median seconds of one forward+backward pass; None if the variant cannot run this case."""
    layer = _layer(impl, levels, pooling, shape)
    spec = tf.TensorSpec([None, None, None, shape[3]] if dynamic else list(shape))

    @tf.function(input_signature=[spec])
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y)  # depends on x: no constant-folded gradient
        return tape.gradient(loss, x)  # CPU ops run synchronously: the call is the work

    x = tf.constant(np.random.default_rng(0).normal(size=shape).astype("float32"))
    try:
        for _ in range(3):
            step(x)
    except (ValueError, tf.errors.InvalidArgumentError):
        return None
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def check_exact(levels, pooling, shape) -> bool:
    x = np.random.default_rng(1).normal(size=(2, *shape[1:3], 3)).astype("float32")
    fn = tf.function(
        SpatialPyramidPooling2D(levels, pooling).call, input_signature=[tf.TensorSpec([None, None, None, 3])]
    )
    return bool(np.allclose(fn(x), reference_spp(x, levels, pooling), rtol=1e-5, atol=1e-5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="first shape, levels (1,2,4), max only")
    args = parser.parse_args()
    impls = ["global_floor", "floor_ceil", "paper_window", "round_bins", "crop_split", "keras_adaptive"]
    cases = list(
        itertools.product(
            SHAPES[:1] if args.quick else SHAPES,
            LEVELS[:1] if args.quick else LEVELS,
            ["max"] if args.quick else ["max", "avg"],
            ["static", "dynamic"],
        )
    )
    rows = []
    for shape, levels, pooling, mode in cases:
        ms = {impl: time_variant(impl, levels, pooling, shape, mode == "dynamic", args.repeats) for impl in impls}
        ms = {k: (v * 1000 if v is not None else None) for k, v in ms.items()}
        ours = ms["floor_ceil"]
        row = {
            "shape": list(shape),
            "levels": list(levels),
            "pooling": pooling,
            "mode": mode,
            "ms": ms,
            "floor_ceil_exact": check_exact(levels, pooling, shape),
            "ratio_vs_floor": ours / ms["global_floor"],
            "ratio_vs_paper_window": ours / ms["paper_window"] if ms["paper_window"] else None,
            "speedup_vs_round_bins": ms["round_bins"] / ours if ms["round_bins"] else None,
        }
        rows.append(row)
        shown = " ".join(f"{k}={v:.1f}" if v is not None else f"{k}=n/a" for k, v in ms.items())
        print(f"{shape} {levels} {pooling} {mode}: {shown} | x floor {row['ratio_vs_floor']:.2f}")
    path = write("spp_op", {"repeats": args.repeats, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
