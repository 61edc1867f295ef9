"""Start-up of the commands that only read results: they must import no Keras backend.

``export-best`` runs end to end on a one-trial study (wall time of the whole command); ``report``
is timed to the point where it has imported everything it needs (its work, plots included,
depends on the study). Each is the median of ``--repeats`` fresh processes; the modules each
process imported are checked for Keras, TensorFlow and JAX.

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


def _make_study(tmp: Path) -> str:
    """A study with one successful trial, written through the project's own code."""
    storage = f"sqlite:///{tmp}/o.db"
    script = textwrap.dedent(f"""
        from spp_search.config.settings import build_config
        from spp_search.study.lifecycle import open_study
        study = open_study(build_config({{"study": {{"name": "s", "storage": "{storage}"}}}}))
        trial = study.ask()
        trial.set_user_attr("outcome", "ok")
        trial.set_user_attr("factors", {{"levels": [1, 2]}})
        study.tell(trial, 0.5)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, capture_output=True)
    return storage


def _timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=cwd, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        storage = _make_study(tmp)
        export = [sys.executable, str(ROOT / "study.py"), "export-best", "--study-name", "s", "--storage", storage]
        export_s = [_timed([*export, "--out", str(tmp / f"b{i}.yaml")], tmp) for i in range(args.repeats)]
        probe = "import sys; import spp_search.cli, spp_search.results.report; "
        probe += f"print([m for m in {BACKENDS!r} if m in sys.modules])"
        report_s = [_timed([sys.executable, "-c", probe], tmp) for _ in range(args.repeats)]
        loaded = subprocess.run([sys.executable, "-c", probe], cwd=tmp, capture_output=True, text=True).stdout.strip()
    result = {
        "repeats": args.repeats,
        "export_best_s_median": statistics.median(export_s),
        "report_imports_s_median": statistics.median(report_s),
        "backends_imported": loaded,
        "export_best_s": export_s,
        "report_imports_s": report_s,
    }
    print(result)
    print(f"wrote {write('startup', result)}")


if __name__ == "__main__":
    main()
