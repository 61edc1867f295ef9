"""Trial overhead: the same 10 fixed configurations run isolated (worker process) and inline.

Both runs go through the CLI with one worker, on a fresh storage each, the configurations
enqueued as an ablation (10 arms x 1 seed). Reported: the wall time of each run, their ratio, and
per trial the time spent outside ``fit`` (trial wall time in the driver minus training time).

    python -m benchmarks.overhead
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml
from mlflow import MlflowClient

from benchmarks.common import write
from spp_search.infra.storage import make_storage

ROOT = Path(__file__).resolve().parent.parent
ARMS = {f"lr{i}": {"learning_rate": 0.001 * (i + 1), "levels": [1, 2, 4] if i % 2 else [1, 2]} for i in range(10)}


def config(tmp: Path, isolation: str) -> Path:
    raw = {
        "study": {
            "name": f"overhead-{isolation}",
            "epochs": 2,
            "isolation": isolation,
            "workers": 1,
            "storage": f"sqlite:///{tmp}/{isolation}.db",
            "tracking_uri": f"sqlite:///{tmp}/{isolation}-mlflow.db",
        },
        "data": {"synthetic": {"num_images": 256}},
        "defaults": {"image_size": 48, "batch_size": 32},
        "ablation": {"repeats": 1, "arms": ARMS},
    }
    path = tmp / f"{isolation}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run(tmp: Path, isolation: str) -> dict:
    path = config(tmp, isolation)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "study.py"), "ablate", "--config", str(path)],
        check=True,
        capture_output=True,
        cwd=tmp,
    )
    wall = time.perf_counter() - start
    raw = yaml.safe_load(path.read_text())["study"]
    study = optuna.load_study(study_name=raw["name"], storage=make_storage(raw["storage"]))
    client = MlflowClient(raw["tracking_uri"])
    outside = []
    for t in study.trials:
        metrics = client.get_run(t.user_attrs["mlflow_run_id"]).data.metrics
        duration = (t.datetime_complete - t.datetime_start).total_seconds()
        outside.append(duration - metrics["train_time_s"])
    return {
        "wall_s": wall,
        "trials": len(study.trials),
        "outside_fit_median_s": statistics.median(outside),
        "outside_fit_s": outside,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        inline = run(Path(tmp), "inline")
        isolated = run(Path(tmp), "process")
    ratio = isolated["wall_s"] / inline["wall_s"]
    path = write("overhead", {"inline": inline, "process": isolated, "ratio_process_vs_inline": ratio})
    print(
        f"inline {inline['wall_s']:.1f} s, process {isolated['wall_s']:.1f} s, ratio {ratio:.3f}; "
        f"outside fit per trial: inline {inline['outside_fit_median_s']:.2f} s, "
        f"process {isolated['outside_fit_median_s']:.2f} s"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
