"""The default 50-trial study on TensorFlow: this code against the code before the backends port
(git ``BEFORE``: tf.data pipeline, TensorFlow-only layer and train step), side by side.

Both run ``study.py --trials 50`` (pruning on, 2 workers) on fresh storages, in the order
before, now, now, before (so drift of the machine weighs on both alike); the medians are kept.

    python -m benchmarks.study_port
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import write
from benchmarks.spp_port import BEFORE
from benchmarks.study import run

ROOT = Path(__file__).resolve().parent.parent


def _before_tree(tmp: Path) -> Path:
    tree = tmp / "before"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), BEFORE], cwd=ROOT, check=True, capture_output=True)
    return tree


def _run_before(tree: Path, tmp: Path) -> dict:
    """The old tree's own ``benchmarks.study.run`` (its study.py, its defaults), in a child process."""
    code = (
        "import json, sys; from pathlib import Path; from benchmarks.study import run; "
        f"print(json.dumps(run(Path({str(tmp)!r}), 50, 'median')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, check=True, capture_output=True, text=True)
    import json

    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        tree = _before_tree(tmp)
        try:
            runs = {"before": [], "now": []}
            for which in ("before", "now", "now", "before"):
                where = tmp / f"{which}{len(runs[which])}"
                where.mkdir()
                result = _run_before(tree, where) if which == "before" else run(where, 50, "median")
                runs[which].append(result)
                print(f"{which}: {result['wall_s'] / 60:.2f} min, {result['outcomes']}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    medians = {k: statistics.median(r["wall_s"] for r in v) for k, v in runs.items()}
    result = {
        "before": BEFORE,
        "wall_s_median": medians,
        "ratio_now_vs_before": medians["now"] / medians["before"],
        "runs": runs,
    }
    print(f"now / before: {result['ratio_now_vs_before']:.2f}")
    print(f"wrote {write('study_port', result, backend='tensorflow', device='cpu')}")


if __name__ == "__main__":
    main()
