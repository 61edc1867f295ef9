"""Start-up of the commands that only read results: they must import no Keras backend.

``export-best``, ``report`` and ``check-data`` run end to end (wall time of the whole command):
``export-best`` and ``report`` on a one-trial study with its MLflow experiment and parent run,
``check-data`` on a folder of six tiny PNGs. ``report``'s start-up is also timed alone, to the
point where it has imported what it needs before reading the study: its work (reading and
logging to MLflow, matplotlib's and Optuna's plots, which import scikit-learn and SciPy) depends
on the study. Each is the median of ``--repeats`` fresh processes, the commands taking
turns; every command's imports are checked once for Keras, TensorFlow and JAX.

    python -m benchmarks.startup [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.common import write

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("keras", "tensorflow", "jax")


def _make_study(tmp: Path) -> tuple[str, str]:
    """A study with one successful trial (every factor at its default) and its MLflow experiment
    and parent run, written through the project's own code: the storage and tracking URLs."""
    storage, tracking = f"sqlite:///{tmp}/o.db", f"sqlite:///{tmp}/mlflow.db"
    script = textwrap.dedent(f"""
        from spp_search.config.factors import default_factors
        from spp_search.config.settings import build_config
        from spp_search.study.lifecycle import open_study
        from spp_search.study.tracking import Tracker
        study = open_study(build_config({{"study": {{"name": "s", "storage": "{storage}"}}}}))
        trial = study.ask()
        trial.set_user_attr("outcome", "ok")
        factors = {{k: list(v) if isinstance(v, tuple) else v for k, v in default_factors().items()}}
        trial.set_user_attr("factors", factors)
        study.tell(trial, 0.5)
        Tracker("{tracking}", "s").open_study({{}}, {{}})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp, capture_output=True)  # artifacts in tmp
    return storage, tracking


def _make_folder(tmp: Path) -> Path:
    """Two classes of three 8x8 PNGs."""
    import numpy as np
    from PIL import Image

    root = tmp / "photos"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / label / f"{i}.png")
    return root


def _timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=cwd, capture_output=True)
    return time.perf_counter() - start


def _backends(cmd: list[str], cwd: Path) -> set[str]:
    """The backends ``cmd`` (a Python command line) imports, from ``-X importtime``."""
    done = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], check=True, cwd=cwd, capture_output=True, text=True)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    return imported & set(BACKENDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        storage, tracking = _make_study(tmp)
        photos = _make_folder(tmp)
        study = [sys.executable, str(ROOT / "study.py")]
        export = [*study, "export-best", "--study-name", "s", "--storage", storage]
        report = [*study, "report", "--study-name", "s", "--storage", storage, "--tracking-uri", tracking]
        commands = {  # each repeat writes to a fresh --out
            "export_best": lambda i: [*export, "--out", str(tmp / f"b{i}.yaml")],
            "report_imports": lambda i: [sys.executable, "-c", "import spp_search.cli, spp_search.results.report"],
            "report": lambda i: [*report, "--out", str(tmp / f"r{i}")],
            "check_data": lambda i: [*study, "check-data", "--data", str(photos)],
        }
        loaded = set().union(*(_backends(command("warm-up"), tmp) for command in commands.values()))
        seconds: dict[str, list[float]] = {key: [] for key in commands}
        for i in range(args.repeats):
            for key, command in commands.items():
                seconds[key].append(_timed(command(i), tmp))
    result = {
        "repeats": args.repeats,
        **{f"{key}_s_median": statistics.median(values) for key, values in seconds.items()},
        "backends_imported": str(sorted(loaded)),
        **{f"{key}_s": values for key, values in seconds.items()},
    }
    print(result)
    print(f"wrote {write('startup', result)}")


if __name__ == "__main__":
    main()
