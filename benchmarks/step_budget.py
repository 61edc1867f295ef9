"""The measurement behind the default training budget (``config/schedule.py``, issue 25).

Two parts, in one run on one machine:

1. **Learning curves by optimizer step.** One healthy configuration (fixed 64 px, levels 1-2-4,
   max pooling, Adam) trained 72 steps at batch 16, 32 and 64, validated every 6 steps, on the
   texture folder (72 real photos of 3 classes, built from photos that installed packages ship:
   ``tests/photos.py``; 54 training images) and on the built-in data (384 training images). It
   shows how many steps each needs to leave chance, whatever the batch size.
2. **The default study, epochs against steps, side by side.** ``python study.py`` with
   ``--epochs 3`` (the old default) and with the default budget (36 steps): 12 trials on the
   texture folder, 50 on the built-in data; best, mean of the best 5, trials ending at chance,
   outcomes and wall time. "At chance": trials that trained (ok or pruned) whose last validation
   accuracy is at most the largest class's share.

About 12 minutes on 2 CPU cores. Writes ``benchmarks/results/step_budget.json``.

    python -m benchmarks.step_budget [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import write

ROOT = Path(__file__).resolve().parent.parent
CURVE = {"input_policy": "fixed", "levels": (1, 2, 4), "pooling": "max", "learning_rate": 3e-3}


def curves(data: dict, steps: int, every: int, batches: tuple[int, ...]) -> list[dict]:
    """Validation accuracy every ``every`` steps, per batch size, for the ``CURVE`` configuration."""
    from spp_search.config.schedule import Budget
    from spp_search.config.settings import load_config, shipped_experiment
    from spp_search.trial.run import TrialSpec, run_trial

    defaults = load_config(shipped_experiment()).defaults

    class Quiet:
        def epoch_end(self, epoch, metrics):
            return False

    rows = []
    for batch in batches:
        factors = {**defaults, **CURVE, "batch_size": batch}
        start = time.perf_counter()
        result = run_trial(TrialSpec(0, factors, data, Budget(steps, steps // every), 1), Quiet())
        rows.append(
            {
                "batch_size": batch,
                "outcome": result.outcome.value,
                "steps": [int(e["steps_trained"]) for e in result.epochs],
                "val_accuracy": [round(e["val_accuracy"], 4) for e in result.epochs],
                "wall_s": round(time.perf_counter() - start, 1),
            }
        )
        print(rows[-1], flush=True)
    return rows


def study(args: list[str], cwd: Path) -> dict:
    """One default study in a fresh process; its outcomes and values from the Optuna storage."""
    import optuna

    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "study.py"), *args], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"study {args} exited {done.returncode}: {done.stderr[-1500:]}")
    trials = optuna.load_study(study_name="spp-default", storage=f"sqlite:///{cwd}/optuna.db").trials
    outcomes: dict[str, int] = {}
    for t in trials:
        outcomes[t.user_attrs["outcome"]] = outcomes.get(t.user_attrs["outcome"], 0) + 1
    ok = sorted((t.value for t in trials if t.user_attrs["outcome"] == "ok"), reverse=True)
    chance = [t for t in trials if t.user_attrs.get("val_majority_share") is not None]
    share = chance[0].user_attrs["val_majority_share"] if chance else None
    images = chance[0].user_attrs["val_images"] if chance else None  # half an image: float32 values
    trained = [t for t in trials if t.user_attrs["outcome"] in ("ok", "pruned") and t.intermediate_values]
    last = [t.intermediate_values[max(t.intermediate_values)] for t in trained]  # where each one stopped
    return {
        "args": args,
        "wall_s": round(wall, 1),
        "outcomes": outcomes,
        "best": ok[0] if ok else None,
        "top5_mean": round(statistics.mean(ok[:5]), 4) if ok else None,
        "ok_median": round(statistics.median(ok), 4) if ok else None,
        "at_chance": sum(v <= share + 0.5 / images for v in last) if share is not None else None,
        "chance": share,
        "budget_line": next((line for line in done.stdout.splitlines() if line.startswith("budget:")), None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few trials and steps (a smoke test)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from spp_search.config.settings import build_config
    from tests.photos import messy_folder

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        messy_folder(folder)
        texture = build_config({"data": {"source": str(folder)}, "defaults": {"channel_policy": "pad_missing"}})
        built_in = build_config({})
        steps, every, batches = (12, 6, (16, 64)) if args.quick else (72, 6, (16, 32, 64))
        result: dict = {
            "curve_config": {k: list(v) if isinstance(v, tuple) else v for k, v in CURVE.items()},
            "curves": {
                "texture_photos": curves(texture.data.for_trial(), steps, every, batches),
                "built_in": curves(built_in.data.for_trial(), steps, every, batches),
            },
            "studies": [],
        }
        plans = [("texture_photos", ["--data", str(folder)], 4 if args.quick else 12)]
        plans += [("built_in", [], 4 if args.quick else 50)]
        for data_name, data_args, trials in plans:
            for budget_name, budget_args in (("epochs_3", ["--epochs", "3"]), ("default_steps", [])):
                cwd = Path(tmp) / f"{data_name}-{budget_name}"
                cwd.mkdir()
                row = study(["--trials", str(trials), *data_args, *budget_args], cwd)
                result["studies"].append({"data": data_name, "budget": budget_name, "trials": trials, **row})
                print(json.dumps(result["studies"][-1]), flush=True)
    if args.quick:  # a smoke test: its figures are not the measurement
        print(json.dumps(result)[:2000])
    else:
        print(f"wrote {write('step_budget', result)}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
