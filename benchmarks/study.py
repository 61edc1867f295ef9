"""The default study end to end: wall time of ``python study.py --trials 50`` with and without
pruning, the best validation accuracy, and the driver's memory over the study (must stay flat).

The driver's resident memory (the study.py process alone, not its trial workers) is sampled
every second; growth = last minute's median minus the median of the first minute after the
first trial finished.

    python -m benchmarks.study [--trials 50] [--backend tensorflow|jax] [--pruners median,none]

Results: ``benchmarks/results/study.json`` (TensorFlow) or ``study-jax.json``.
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
from spp_search.infra.storage import make_storage
from spp_search.study.budget import counted_trials, outcome_of

ROOT = Path(__file__).resolve().parent.parent


def run(tmp: Path, trials: int, pruner: str, backend: str = "tensorflow") -> dict:
    name = f"bench-{pruner}-{backend}"
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
        "--backend",
        backend,
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
    compile_s = [m for m in (_metric(tmp, name, t, "compile_s") for t in done) if m is not None]
    return {
        "pruner": pruner,
        "backend": backend,
        "compile_s_total": sum(compile_s),
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


def _metric(tmp: Path, name: str, trial, key: str) -> float | None:
    """A trial's metric from its MLflow run (the study's tracking store)."""
    from mlflow import MlflowClient

    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id is None:
        return None
    return MlflowClient(f"sqlite:///{tmp}/{name}-mlflow.db").get_run(run_id).data.metrics.get(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--pruners", default="median,none")
    parser.add_argument("--backend", choices=("tensorflow", "jax"), default="tensorflow")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run(Path(tmp), args.trials, p, args.backend) for p in args.pruners.split(",")]
    for r in results:
        print(
            f"pruner={r['pruner']}: {r['wall_s'] / 60:.1f} min, best {r['best_val_accuracy']}, "
            f"{r['outcomes']}, driver RSS growth {r['driver_rss_mb']['growth']:.1f} MB, "
            f"compile {r['compile_s_total']:.0f} s"
        )
    name = "study" if args.backend == "tensorflow" else f"study-{args.backend}"
    print(f"wrote {write(name, {'trials': args.trials, 'runs': results}, backend=args.backend, device='cpu')}")


if __name__ == "__main__":
    main()
