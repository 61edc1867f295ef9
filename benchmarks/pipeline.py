"""Input pipeline + training step: images/s of each input-size policy at equal mean pixel count.

Every policy trains the same model on the same built-in images for ``--epochs`` epochs, one
worker, inline; images/s is the training part of every epoch but the first (which traces and
fills caches), validation excluded. Several epochs matter for bucketed batches: one epoch's
mix of small and large buckets varies with the shuffle, and with it that epoch's speed.
The fixed side is the square root of the images' mean native pixel count, and multi-size scales
its two sides so their mean pixel count is the same; bucketed and padded use native sizes. The
number of input shapes traced is recorded, for bucketed also with XLA (``jit_compile``).

The host's share: ``host_batch_ms`` is the median time to build one training batch from the
trial's prepared images (what the prefetch thread does while the device trains), next to
``step_ms``, the training time per batch; below 1, ``host_vs_step`` says the host keeps up.

The SPP model's training speed is also compared with the same model with a global-pool head
(levels ``[1]``) at the fixed size: ``spp_vs_global_pool_step`` is the ratio of their step times.

    python -m benchmarks.pipeline [--epochs 5] [--repeats 3] [--backend tensorflow|jax]

Results: ``benchmarks/results/pipeline.json`` (TensorFlow) or ``pipeline-jax.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics

from benchmarks.common import host_batch_ms, write
from spp_search.config.factors import default_factors
from spp_search.config.schedule import Budget
from spp_search.config.settings import build_config
from spp_search.data.loading import load_trial_data
from spp_search.data.preprocessing import PAPER_RATIO
from spp_search.trial.run import TrialSpec, run_trial


def measure(factors: dict, data: dict, epochs: int, seed: int) -> dict:
    seen = []

    class Keep:
        def epoch_end(self, epoch, metrics):
            seen.append(metrics)
            return False

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    result = run_trial(TrialSpec(0, factors, data, Budget.of_epochs(epochs), seed, backend=backend), Keep())
    assert result.outcome.value == "ok", result.error_message
    train_images = len(load_trial_data(data)[0])
    timed = seen[1:]
    images_per_s = train_images * len(timed) / sum(m["train_epoch_time_s"] for m in timed)
    host_ms = host_batch_ms(factors, data, seed)
    step_ms = 1000 * result.stats["step_time_median_s"]
    return {
        "images_per_s": images_per_s,
        "host_batch_ms": host_ms,
        "step_ms": step_ms,
        "host_vs_step": host_ms / step_ms,
        "val_accuracy": result.value,
        "traced_shapes": result.stats["traced_shapes"],
        "compile_s": result.stats["compile_s"],
        "steady_images_per_s": result.stats["images_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", choices=("tensorflow", "jax"), default="tensorflow")
    args = parser.parse_args()
    os.environ["KERAS_BACKEND"] = args.backend  # before the first trial imports Keras
    data = build_config({"data": {"synthetic": {"num_images": 512}}}).data.for_trial()
    train, _ = load_trial_data(data)
    mean_pixels = float(train.sizes().prod(axis=1).mean())
    side = round(math.sqrt(mean_pixels))
    multi = round(math.sqrt(2 * mean_pixels / (1 + PAPER_RATIO**2)))
    base = {**default_factors(), "batch_size": 32, "levels": (1, 2, 4)}
    cases = {
        "fixed": {"input_policy": "fixed", "image_size": side},
        "multi_size": {"input_policy": "multi_size", "image_size": multi},
        "variable_bucketed": {"input_policy": "variable_bucketed", "image_size": side},
        "variable_padded": {"input_policy": "variable_padded", "image_size": side},
        "variable_bucketed_xla": {"input_policy": "variable_bucketed", "image_size": side, "jit_compile": True},
        "global_pool_fixed": {"input_policy": "fixed", "image_size": side, "levels": (1,)},
    }
    if args.backend == "jax":  # JAX always compiles with XLA: the XLA row would repeat bucketed
        cases.pop("variable_bucketed_xla")
    rows = {}
    for name, overrides in cases.items():
        runs = [measure({**base, **overrides}, data, args.epochs, seed) for seed in range(args.repeats)]
        rows[name] = {
            "images_per_s_median": statistics.median(r["images_per_s"] for r in runs),
            "traced_shapes": max(r["traced_shapes"] for r in runs),
            "compile_s_median": statistics.median(r["compile_s"] for r in runs),
            "host_batch_ms_median": statistics.median(r["host_batch_ms"] for r in runs),
            "step_ms_median": statistics.median(r["step_ms"] for r in runs),
            "runs": runs,
        }
        row = rows[name]
        print(
            f"{name}: {row['images_per_s_median']:.0f} images/s, {row['traced_shapes']:.0f} traced shapes,"
            f" host batch {row['host_batch_ms_median']:.2f} ms vs step {row['step_ms_median']:.2f} ms"
        )
    fixed = rows["fixed"]["images_per_s_median"]
    ratios = {k: v["images_per_s_median"] / fixed for k, v in rows.items()}
    path = write(
        "pipeline" if args.backend == "tensorflow" else f"pipeline-{args.backend}",
        {
            "spp_vs_global_pool_step": rows["global_pool_fixed"]["images_per_s_median"] / fixed,
            "mean_native_pixels": mean_pixels,
            "fixed_side": side,
            "multi_sides": [multi, round(multi * PAPER_RATIO)],
            "epochs": args.epochs,
            "repeats": args.repeats,
            "policies": rows,
            "ratio_vs_fixed": ratios,
        },
        backend=args.backend,
        device="cpu",
    )
    print({k: round(v, 2) for k, v in ratios.items()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
