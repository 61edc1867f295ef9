"""The default study end to end: wall time of ``python study.py --trials 50`` with and without
pruning, the best validation accuracy, and the driver's memory over the study (must stay flat).

The driver's resident memory (the study.py process alone, not its trial workers) is sampled
every second; growth = last minute's median minus the median of the first minute after the
first trial finished.

    python -m benchmarks.study [--trials 50]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import psutil

from benchmarks.common import write
from spp_search.engines.budget import counted_trials, outcome_of
from spp_search.storage import make_storage

ROOT = Path(__file__).resolve().parent.parent


def run(tmp: Path, trials: int, pruner: str) -> dict:
    name = f"bench-{pruner}"
    storage = f"sqlite:///{tmp}/{name}.db"
    cmd = [
        sys.executable,
        str(ROOT / "study.py"),
        "--trials",
        str(trials),
        "--study-name",
        name,
        "--storage",
        storage,
        "--tracking-uri",
        f"sqlite:///{tmp}/{name}-mlflow.db",
    ]
    if pruner == "none":
        config = (ROOT / "experiments" / "default.yaml").read_text().replace("pruner: median", "pruner: none")
        (tmp / "nopruning.yaml").write_text(config)
        cmd += ["--config", str(tmp / "nopruning.yaml")]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver, samples = psutil.Process(proc.pid), []
    while proc.poll() is None:
        try:
            samples.append((time.perf_counter() - start, driver.memory_info().rss / 2**20))
        except psutil.Error:
            break
        time.sleep(1)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, f"study failed with {proc.returncode}"
    study = optuna.load_study(study_name=name, storage=make_storage(storage))
    done = counted_trials(study)
    first = min(t.datetime_complete for t in done)
    t0 = (first - min(t.datetime_start for t in done)).total_seconds()
    early = [m for t, m in samples if t0 <= t <= t0 + 60] or [samples[0][1]]
    late = [m for t, m in samples if t >= wall - 60] or [samples[-1][1]]
    outcomes: dict[str, int] = {}
    for t in done:
        outcomes[outcome_of(t)] = outcomes.get(outcome_of(t), 0) + 1
    ok = [t.value for t in done if outcome_of(t) == "ok"]
    return {
        "pruner": pruner,
        "wall_s": wall,
        "trials": len(done),
        "outcomes": outcomes,
        "best_val_accuracy": max(ok) if ok else None,
        "driver_rss_mb": {
            "early_median": statistics.median(early),
            "late_median": statistics.median(late),
            "growth": statistics.median(late) - statistics.median(early),
            "max": max(m for _, m in samples),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--pruners", default="median,none")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run(Path(tmp), args.trials, p) for p in args.pruners.split(",")]
    for r in results:
        print(
            f"pruner={r['pruner']}: {r['wall_s'] / 60:.1f} min, best {r['best_val_accuracy']}, "
            f"{r['outcomes']}, driver RSS growth {r['driver_rss_mb']['growth']:.1f} MB"
        )
    print(f"wrote {write('study', {'trials': args.trials, 'runs': results})}")


if __name__ == "__main__":
    main()
