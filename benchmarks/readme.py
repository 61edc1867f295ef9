"""Regenerate every table of results in README.md and docs/*.md from the committed result files.

Each table sits between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` and is
rebuilt from ``benchmarks/results/`` by the renderer of that name below (``outcomes`` from the
outcome table in ``spp_search/trial/outcomes.py``); hand edits between the markers are
overwritten. ``tests/test_readme.py`` fails when a table and its result file disagree, and when
a table of results sits outside the markers.

    python -m benchmarks.readme           # rewrite the tables
    python -m benchmarks.readme --check   # exit 1 naming the stale tables
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import RESULTS
from benchmarks.table import SECTIONS, _gpu_runs, _load, feedback_summary, step_budget_section, targets_section
from spp_search.results.markdown import table_lines

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]  # every page that may hold generated tables
BLOCK = re.compile(r"(<!-- generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S)


def _json(name: str, folder: Path) -> dict:
    path = folder / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `python -m benchmarks.{name.split('-')[0]}` to create it")
    return json.loads(path.read_text())


def engines(folder: Path) -> list[str]:
    data = _json("engines", folder)
    rows = [
        [
            r["engine"],
            r["epochs_trained"],
            f"{r['best_val_accuracy']:.3f}" if r["best_val_accuracy"] is not None else "-",
            r["trials_to_95pct"] or "-",
            f"{r['ok']} / {r['pruned']} / {r['failed']}",
            f"{r['wall_min']:.1f}",
        ]
        for r in data["rows"]
    ]
    header = ["engine", "epochs trained", "best val acc", "trials to 95% of best", "ok / pruned / failed", "wall min"]
    return table_lines(header, rows) + ["", f"_From `benchmarks/results/engines.json` ({data['trials']} trials each)._"]


def _all_results(folder: Path) -> dict:
    return {name + suffix: _load(name + suffix, folder) for name in SECTIONS for suffix in ("", "-jax")}


def _target_rows(folder: Path, gpu: bool) -> list[str]:
    section = targets_section(_all_results(folder), _gpu_runs(folder))
    rows = [r for r in section if r.startswith("| ") and "---" not in r]
    body = [r for r in rows[1:] if ("| GPU " in r) == gpu]
    return ["| target | measured | target | |", "|---|---|---|---|", *body]


def targets(folder: Path) -> list[str]:
    return _target_rows(folder, gpu=False) + ["", "_From `benchmarks/results/*.json` (CPU: the 2-core machine)._"]


HEADLINE = (  # the README's rows
    "SPP any size, dynamic",
    "CPU TensorFlow: default 50-trial study, pruning",
    "CPU JAX: default 50-trial study",
    "report start-up",
    "GPU JAX: default 50-trial study",
)


def targets_summary(folder: Path) -> list[str]:
    """The README's short performance table: the headline targets (CPU, and the last GPU run)."""
    rows = [r for r in _target_rows(folder, gpu=False)[2:] + _target_rows(folder, gpu=True)[2:]]
    body = [r for r in rows if any(h in r for h in HEADLINE)]
    return ["| target | measured | target | |", "|---|---|---|---|", *body] + [
        "",
        "_From `benchmarks/results/` (CPU: the 2-core machine; GPU: the last H200 run). All: docs/benchmarks.md._",
    ]


def gpu(folder: Path) -> list[str]:
    data = _gpu_runs(folder).get("gpu-jax") or {}
    precision = data.get("precision") or {}
    rows = [
        [
            policy,
            f"{p['images_per_s']:.0f}",
            f"{p['step_ms']:.1f}",
            f"{p['compile_s']:.1f}",
            f"{p['gpu_busy_percent']:.0f}",
        ]
        for policy, p in precision.items()
        if isinstance(p, dict) and p.get("outcome") == "ok"
    ]
    device = ", ".join(data.get("environment", {}).get("gpus", [])) or "no GPU run"
    lines = _target_rows(folder, gpu=True) + [""]
    lines += table_lines(["dtype policy (128 px, batch 256)", "images/s", "step ms", "compile s", "GPU busy %"], rows)
    host = precision.get("host_batch_ms")
    note = f"; one float32 batch built on the host in {host:.1f} ms" if host else ""
    return lines + ["", f"_From `benchmarks/results/gpu-jax.json` ({device}){note}._"]


def _findings(folder: Path) -> dict:
    return _json("findings", folder)["studies"]


def claims(folder: Path) -> list[str]:
    studies = _findings(folder)
    synthetic, real = studies["failure-modes-ablation"], studies["failure-modes-ablation-real"]
    rows = [
        [a["claim"], f"**{a['verdict']}**", f"**{b['verdict']}**"]
        for a, b in zip(synthetic["verdicts"], real["verdicts"], strict=True)
    ]
    lines = table_lines(["claim", "generated data", "real digits"], rows)
    return lines + [
        "",
        f"_From `benchmarks/results/findings.json`: {synthetic['trials']} and {real['trials']} trials; the evidence "
        "of each verdict (counts and intervals per implementation) is in "
        "`benchmarks/results/reports/failure-modes-ablation.md` and `failure-modes-ablation-real.md`._",
    ]


def paper(folder: Path) -> list[str]:
    studies = _findings(folder)
    numbers = {
        "generated": studies["paper-multisize"]["paper"],
        "real digits": studies["paper-multisize-real"]["paper"],
    }
    cell = lambda e: f"{e[0]:.2f} [{e[1]:.2f}, {e[2]:.2f}]"  # noqa: E731
    arms = list(numbers["real digits"]["arms"])
    rows = []
    for arm in arms:
        paper_value = numbers["real digits"]["arms"][arm]["paper"]
        row = [arm]
        for data in numbers.values():
            a = data["arms"].get(arm)
            row.append(f"{cell(a['error'])} (n={a['seeds']})" if a else "-")
        rows.append(row + [f"{paper_value:.2f}" if paper_value is not None else "-"])
    lines = table_lines(["arm", "error %, generated [95% CI]", "error %, real digits [95% CI]", "paper ZF-5 %"], rows)
    lines.append("")
    for label, data in numbers.items():
        for d in data["differences"]:
            (high, low), (diff, lo, hi) = d["pair"], d["points"]
            paper_diff = f"paper {d['paper']:+.2f}" if d["paper"] is not None else "not in the paper"
            lines.append(
                f"- {label}: {high} - {low} = {diff:+.2f} points [{lo:+.2f}, {hi:+.2f}] ({paper_diff}); "
                f"a 1-point difference needs {d['seeds_needed']} seeds per arm"
            )
    return lines + ["", "_From `benchmarks/results/findings.json`._"]


def feedback(folder: Path) -> list[str]:
    return feedback_summary(_json("sampler_feedback", folder)) + [
        "",
        "_From `benchmarks/results/sampler_feedback.json`._",
    ]


def outcomes(folder: Path) -> list[str]:
    """The outcome taxonomy, from its table (not a result file: it defines what results mean)."""
    from spp_search.trial.outcomes import KINDS

    recorded = {
        "complete": "COMPLETE (final val accuracy)",
        "pruned": "PRUNED (a divergence: at its epoch, value 0)",
        "infeasible": "PRUNED + constraint `deterministic_failure = 1` (infeasible)",
        "fail": "FAIL",
    }
    rows = []
    for name, kind in KINDS.items():
        then = (
            "retried up to `--max-retries`"
            if kind.retry
            else "the study stops"
            if kind.fatal
            else "re-queued at no attempt's cost; the study stops"
            if kind.host
            else "-"
        )
        rows.append([f"`{name}`", kind.meaning, recorded[kind.record], then, kind.status])
    return table_lines(["outcome", "meaning", "Optuna state", "then", "MLflow status"], rows) + [
        "",
        "_From `KINDS` in `spp_search/trial/outcomes.py`._",
    ]


def culprits(folder: Path) -> list[str]:
    """The doctor's culprit vocabulary, from its table (a definition, like ``outcomes``)."""
    from spp_search.doctor.culprits import CULPRITS

    rows = [[f"`{name}`", c.typical, c.fix] for name, c in CULPRITS.items()]
    rows.append(["`none` / `unknown`", "it trains / no arm made it train", "-"])
    return table_lines(["culprit", "typical symptom", "the change its arm makes"], rows) + [
        "",
        "_From `CULPRITS` in `spp_search/doctor/culprits.py`._",
    ]


def doctor(folder: Path, name: str = "doctor") -> list[str]:
    """The doctor on its zoo: per case the planted fault, the culprit expected and named, seconds."""
    data = _json(name, folder)
    rows = [
        [
            r["case"],
            r["fault"],
            f"`{r['expected']}`",
            f"`{r['named']}`" + ("" if r["correct"] else " (miss)"),
            r["symptom"],
            f"{r['seconds']:.0f}",
        ]
        for r in data["rows"]
    ]
    s = data["summary"]
    lines = table_lines(["case", "planted fault", "expected", "named", "symptom of the user's setup", "seconds"], rows)
    return lines + [
        "",
        f"Top-1 on the {s['faults']} planted faults: **{s['top1']:.0%}**; false alarms on the {s['healthy']} healthy "
        f"controls: **{s['false_alarms']}**; seconds per diagnosis: median **{s['median_s']:.0f}**, max "
        f"**{s['max_s']:.0f}** (targets: >= 90%, 0, <= 180, <= 300).",
        "",
        f"_From `benchmarks/results/{name}.json` ({data['environment'].get('backend')}, "
        f"{data['environment'].get('cpu_count')} CPU cores)._",
    ]


def doctor_summary(folder: Path) -> list[str]:
    """The doctor's targets against its zoo (the README's short table)."""
    data = _json("doctor", folder)
    s = data["summary"]
    rows = [
        ["top-1 on planted faults", f"{s['top1']:.0%} of {s['faults']}", ">= 90%", s["top1"] >= 0.9],
        ["false alarms on healthy controls", f"{s['false_alarms']} of {s['healthy']}", "0", s["false_alarms"] == 0],
        ["median seconds per diagnosis", f"{s['median_s']:.0f}", "<= 180", s["median_s"] <= 180],
        ["max seconds per diagnosis", f"{s['max_s']:.0f}", "<= 300", s["max_s"] <= 300],
    ]
    rows = [[*r[:3], "met" if r[3] else "MISSED"] for r in rows]
    env = data["environment"]
    return table_lines(["doctor on its zoo", "measured", "target", ""], rows) + [
        "",
        f"_From `benchmarks/results/doctor.json` ({env.get('backend')}, {env.get('cpu_count')} CPU cores; "
        "per case in docs/doctor.md)._",
    ]


def step_budget(folder: Path) -> list[str]:
    """The default study with 3 epochs against the default step budget, side by side."""
    data = _json("step_budget", folder)
    env = data["environment"]
    return step_budget_section(data)[2:] + [
        "",
        f"_From `benchmarks/results/step_budget.json` ({env.get('backend')}, {env.get('cpu_count')} CPU cores)._",
    ]


RENDERERS: dict[str, Callable[[Path], list[str]]] = {
    "step-budget": step_budget,
    "outcomes": outcomes,
    "culprits": culprits,
    "doctor": doctor,
    "doctor-summary": doctor_summary,
    "doctor-jax": lambda folder: doctor(folder, "doctor-jax"),
    "engines": engines,
    "targets": targets,
    "targets-summary": targets_summary,
    "gpu": gpu,
    "claims": claims,
    "paper": paper,
    "feedback": feedback,
}


def update(text: str, folder: Path = RESULTS) -> str:
    """``text`` with every generated block rebuilt; an unknown block name is an error."""

    def rebuild(match: re.Match) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise SystemExit(f"README block `{name}` has no renderer; use one of {', '.join(RENDERERS)}")
        return match.group(1) + "\n".join(RENDERERS[name](folder)) + "\n" + match.group(4)

    return BLOCK.sub(rebuild, text)


def stale(text: str, folder: Path = RESULTS) -> list[str]:
    """Names of the blocks whose text differs from what their result files give."""
    fresh = {m["name"]: m["body"] for m in BLOCK.finditer(update(text, folder))}
    return [m["name"] for m in BLOCK.finditer(text) if m["body"] != fresh[m["name"]]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if a table is stale")
    args = parser.parse_args()
    if args.check:
        old = [f"{page.relative_to(ROOT)}: {name}" for page in PAGES for name in stale(page.read_text())]
        if old:
            sys.exit(f"stale tables: {', '.join(old)}; run `python -m benchmarks.readme`")
        print("README and docs tables match benchmarks/results/")
        return
    for page in PAGES:
        text = page.read_text()
        if BLOCK.search(text):
            page.write_text(update(text))
            print(f"rewrote {len(BLOCK.findall(text))} tables in {page.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
