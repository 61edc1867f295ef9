"""SPP op speed: forward+backward of every ``spp_impl`` and of a global max pool (the floor).

For each input shape, levels, pooling and shape mode (static: the compiled function knows H and W;
dynamic: traced with None, TensorFlow only), every variant runs as one compiled function computing
its output and the gradient wrt its input; the variants are called in turns, ``--repeats`` rounds,
each call waited for (``backends.runtime().sync``: JAX and GPUs run asynchronously), and the
median of each is kept: ratios within one round's conditions (these machines are noisy).

    python -m benchmarks.spp_op [--backend tensorflow|jax] [--repeats 20] [--quick]

Results go to ``benchmarks/results/spp_op.json`` (TensorFlow) or ``spp_op-jax.json``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time

import numpy as np

from spp_search.model.impls import SPP_IMPLS

SHAPES = [(64, 32, 32, 128), (32, 13, 13, 256), (16, 7, 9, 512)]
LEVELS = [(1, 2, 4), (1, 2, 3, 6)]
IMPLS = ["global_floor", *SPP_IMPLS]  # the floor, then every implementation of the table


def _layer(impl: str, levels, pooling: str, shape):
    import keras

    if impl == "global_floor":
        return keras.layers.GlobalMaxPooling2D() if pooling == "max" else keras.layers.GlobalAveragePooling2D()
    build = SPP_IMPLS[impl].load()
    if isinstance(build, type):
        return build(levels, pooling)
    inputs = keras.Input(shape[1:])  # a head function (keras_adaptive): wrapped as a model
    return keras.Model(inputs, build(inputs, levels, pooling))


def compiled_variant(impl, levels, pooling, shape, dynamic: bool, x):
    """A warmed-up forward+backward function of one variant; None if it cannot run this case."""
    from spp_search.backends import runtime

    rt = runtime()
    layer = _layer(impl, levels, pooling, shape)
    try:
        step = rt.input_gradient(layer, shape, dynamic)
        for _ in range(3):
            rt.sync(step(x))
    except Exception:  # noqa: BLE001 - a variant that cannot run this case (its documented failure)
        return None
    return step


def time_variants(levels, pooling, shape, dynamic: bool, repeats: int) -> dict[str, float | None]:
    """Median seconds of one forward+backward pass of every variant, timed in turns (one call of
    each, then again): a busy machine slows every variant alike, so the ratios stay fair."""
    from keras import ops

    from spp_search.backends import runtime

    rt = runtime()
    x = ops.convert_to_tensor(np.random.default_rng(0).normal(size=shape).astype("float32"))
    steps = {impl: compiled_variant(impl, levels, pooling, shape, dynamic, x) for impl in IMPLS}
    times: dict[str, list[float]] = {impl: [] for impl, step in steps.items() if step is not None}
    for _ in range(repeats):
        for impl in times:
            start = time.perf_counter()
            rt.sync(steps[impl](x))
            times[impl].append(time.perf_counter() - start)
    return {impl: statistics.median(times[impl]) if impl in times else None for impl in IMPLS}


def check_exact(levels, pooling, shape) -> bool:
    """Our layer against the NumPy reference, on this backend and device."""
    from keras import ops

    from spp_search.model.bins import reference_spp
    from spp_search.model.layers import SpatialPyramidPooling2D

    x = np.random.default_rng(1).normal(size=(2, *shape[1:3], 3)).astype("float32")
    got = ops.convert_to_numpy(SpatialPyramidPooling2D(levels, pooling)(x))
    return bool(np.allclose(got, reference_spp(x, levels, pooling), rtol=1e-5, atol=1e-5))


def measure(quick: bool, repeats: int, modes: tuple[str, ...], shapes: list | None = None) -> list[dict]:
    """Every case: milliseconds per variant, exactness and the ratios the targets use."""
    cases = itertools.product(
        shapes or (SHAPES[:1] if quick else SHAPES),
        LEVELS[:1] if quick else LEVELS,
        ["max"] if quick else ["max", "avg"],
        modes,
    )
    rows = []
    for shape, levels, pooling, mode in cases:
        seconds = time_variants(levels, pooling, shape, mode == "dynamic", repeats)
        ms = {k: (v * 1000 if v is not None else None) for k, v in seconds.items()}
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
        shown = " ".join(f"{k}={v:.2f}" if v is not None else f"{k}=n/a" for k, v in ms.items())
        print(f"{shape} {levels} {pooling} {mode}: {shown} | x floor {row['ratio_vs_floor']:.2f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("tensorflow", "jax"), default=None)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="first shape, levels (1,2,4), max only")
    args = parser.parse_args()
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    import keras

    from benchmarks.common import write

    backend = keras.backend.backend()
    modes = ("static", "dynamic") if backend == "tensorflow" else ("static",)
    rows = measure(args.quick, args.repeats, modes)
    name = "spp_op" if backend == "tensorflow" else f"spp_op-{backend}"
    path = write(name, {"repeats": args.repeats, "rows": rows}, backend=backend)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
