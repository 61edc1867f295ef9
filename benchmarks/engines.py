"""Optuna's TPE against KerasTuner's Bayesian and Hyperband tuners on the default study.

Runs ``experiments/default.yaml`` three times, 20 trials each, seed 0, one engine each, in one
storage, and writes ``benchmarks/results/engines.json`` with the report's side-by-side rows
(trials, epochs trained, best accuracy, trials to 95% of it, outcomes, wall time). About 4 minutes
on 2 CPU cores.

    python -m benchmarks.engines [--trials 20]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import write

ROOT = Path(__file__).resolve().parent.parent
ENGINES = (("tpe", ["--engine", "optuna"]), ("kt-bayesian", ["--engine", "keras-tuner", "--tuner", "bayesian"]))
ENGINES += (("kt-hyperband", ["--engine", "keras-tuner", "--tuner", "hyperband"]),)


def main() -> None:
    import os

    import optuna

    from spp_search.cli import main as cli
    from spp_search.results.report import comparison_rows, load_study_data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        storage, tracking = f"sqlite:///{tmp}/optuna.db", f"sqlite:///{tmp}/mlflow.db"
        here = os.getcwd()
        os.chdir(tmp)  # KerasTuner keeps its projects in ./kt_projects
        try:
            for name, options in ENGINES:
                common = ["--storage", storage, "--tracking-uri", tracking, "--seed", "0"]
                code = cli(["run", "--trials", str(args.trials), "--study-name", name, *common, *options])
                if code != 0:
                    raise SystemExit(f"{name}: exited {code}")
        finally:
            os.chdir(here)
        studies = [optuna.load_study(study_name=n, storage=storage) for n, _ in ENGINES]
        rows = comparison_rows([(s, load_study_data(s, tracking)) for s in studies])
    path = write("engines", {"config": "experiments/default.yaml", "trials": args.trials, "rows": rows})
    for r in rows:
        print(r)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
