"""What the MLflow additions of issue 13 cost a study: the default 50-trial study (TensorFlow,
pruning on, 2 workers) with system metrics sampled every 0.5 s per trial (the default) against
the same study with them off (``SPP_SEARCH_SYSTEM_METRICS=0``), side by side in the order off,
on, on, off; the medians are kept. Datasets and failure records are logged in both.

    python -m benchmarks.mlflow_overhead
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

from benchmarks.common import write
from benchmarks.study import run


def main() -> None:
    runs: dict[str, list] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as name:
        for which in ("off", "on", "on", "off"):
            where = Path(name) / f"{which}{len(runs[which])}"
            where.mkdir()
            os.environ["SPP_SEARCH_SYSTEM_METRICS"] = "1" if which == "on" else "0"
            result = run(where, 50, "median")
            runs[which].append(result)
            print(f"system metrics {which}: {result['wall_s'] / 60:.2f} min, {result['outcomes']}", flush=True)
    os.environ.pop("SPP_SEARCH_SYSTEM_METRICS", None)
    medians = {k: statistics.median(r["wall_s"] for r in v) for k, v in runs.items()}
    result = {
        "wall_s_median": medians,
        "ratio_on_vs_off": medians["on"] / medians["off"],
        "runs": {k: [r["wall_s"] for r in v] for k, v in runs.items()},
        "outcomes": {k: [r["outcomes"] for r in v] for k, v in runs.items()},
    }
    print(write("mlflow_overhead", result))


if __name__ == "__main__":
    main()
