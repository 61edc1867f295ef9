"""The study's findings, on generated and on real data, as the result file the README is built from.

Runs the four ablations below one after the other, each in its own temporary folder, reports
each, and writes ``benchmarks/results/findings.json`` (per study: outcomes, the blog post's
claims with their verdicts and evidence, and the SPP paper's comparison where the study has its
arms) plus each report's text as ``benchmarks/results/reports/<study>.md``. ``--only`` reruns some
and keeps the others' results. About 25 minutes on 2 CPU cores for all four.

    python -m benchmarks.findings [--only paper-multisize-real,failure-modes-ablation-real]
    python -m benchmarks.findings --workdir runs/findings   # keep the storages: a rerun resumes
                                                            # (finished studies train nothing)
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from benchmarks.common import RESULTS, write

ROOT = Path(__file__).resolve().parent.parent
STUDIES = {
    "paper-multisize": "experiments/paper_multisize.yaml",
    "paper-multisize-real": "experiments/paper_multisize_real.yaml",
    "failure-modes-ablation": "experiments/failure_modes_ablation.yaml",
    "failure-modes-ablation-real": "experiments/failure_modes_ablation_real.yaml",
}


def study_findings(name: str, storage: str, tracking: str) -> tuple[dict, str]:
    """(the findings of a finished study, its report's markdown without the plots section)."""
    import optuna

    from spp_search.results.claims import verdicts
    from spp_search.results.paper import paper_numbers
    from spp_search.results.report import build_markdown, load_study_data

    study = optuna.load_study(study_name=name, storage=storage)
    data = load_study_data(study, tracking)
    frame = data.frame
    span = float(frame["run_end"].max() - frame["run_start"].min()) if "run_start" in frame else None
    found = {
        "trials": len(frame),
        "wall_s": round(span, 1) if span == span and span is not None else None,  # first trial start to last end
        "outcomes": dict(Counter(frame["outcome"])),
        "verdicts": [asdict(v) for v in verdicts(frame, data.facts)],
        "facts": asdict(data.facts),
        "paper": paper_numbers(frame) if frame["arm"].notna().any() else None,
    }
    text = build_markdown(study, data, [])
    return found, re.sub(r"\n## Plots\n.*", "\n", text, flags=re.S)


def run_study(name: str, config: str, workdir: Path) -> tuple[dict, str]:
    """Run one ablation from scratch in ``workdir`` and return its findings and report text."""
    from spp_search.cli import main as cli

    storage, tracking = f"sqlite:///{workdir}/optuna.db", f"sqlite:///{workdir}/mlflow.db"
    code = cli(["ablate", "--config", str(ROOT / config), "--storage", storage, "--tracking-uri", tracking])
    if code != 0:
        raise SystemExit(f"{name}: the ablation exited {code}")
    found, text = study_findings(name, storage, tracking)
    return {"config": config, **found}, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(STUDIES)}")
    parser.add_argument("--workdir", type=Path, help="keep storages in WORKDIR/<study> (default: temporary)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(STUDIES)
    unknown = [n for n in names if n not in STUDIES]
    if unknown:
        raise SystemExit(f"--only: unknown study {unknown[0]!r}; use some of {', '.join(STUDIES)}")
    path = RESULTS / "findings.json"
    studies = json.loads(path.read_text())["studies"] if path.is_file() else {}
    (RESULTS / "reports").mkdir(parents=True, exist_ok=True)
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = args.workdir / name if args.workdir else Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            studies[name], text = run_study(name, STUDIES[name], workdir)
        (RESULTS / "reports" / f"{name}.md").write_text(text)
        print(f"{name}: {studies[name]['outcomes']} in {studies[name]['wall_s']:.0f} s")
    print(f"wrote {write('findings', {'studies': studies})}")


if __name__ == "__main__":
    main()
