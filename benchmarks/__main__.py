"""Run every benchmark, then write ``benchmarks/results/summary.md`` from their JSON.

python -m benchmarks            # all (about 20 minutes on 2 CPU cores)
python -m benchmarks --only spp_op,pipeline
python -m benchmarks --backend jax   # the per-backend ones (spp_op, pipeline, study) on JAX
python -m benchmarks --table    # only rebuild the markdown table from the JSON files
"""

from __future__ import annotations

import argparse
import importlib
import sys

from benchmarks.table import write_table

ALL = [
    "spp_op",
    "spp_port",
    "pipeline",
    "overhead",
    "study",
    "study_port",
    "sampler_feedback",
    "startup",
    "mlflow_overhead",
    "step_budget",
]
PER_BACKEND = ("spp_op", "pipeline", "study")  # these take --backend (results: <name>-jax.json)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {ALL}")
    parser.add_argument("--table", action="store_true", help="only rebuild summary.md")
    parser.add_argument("--backend", choices=("tensorflow", "jax"), default="tensorflow")
    args = parser.parse_args()
    if not args.table:
        for name in args.only.split(","):
            if args.backend != "tensorflow" and name not in PER_BACKEND:
                continue  # the other benchmarks measure the engine, not the backend
            print(f"== {name}", flush=True)
            module = importlib.import_module(f"benchmarks.{name}")
            sys.argv = [name, "--backend", args.backend] if name in PER_BACKEND else [name]
            if name == "study" and args.backend != "tensorflow":
                sys.argv += ["--pruners", "median"]  # JAX on a CPU is slow: the default study only
            module.main()
    print(f"wrote {write_table()}")


if __name__ == "__main__":
    main()
