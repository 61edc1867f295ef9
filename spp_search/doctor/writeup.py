"""A diagnosis written out: the console verdict, ``diagnosis.json``, ``diagnosis.md``, ``fix.yaml``,
and the same files on the diagnosis study's MLflow parent run."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import yaml

from spp_search.doctor.culprits import CULPRITS

DATA_KEYS = ("source", "on_unreadable", "val_fraction", "bands")  # what a fix config keeps of the data


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _arm_line(arm: dict) -> str:
    outcomes = ", ".join(f"{k} {v}" for k, v in arm["outcomes"].items())
    acc = arm["val_accuracy"]
    accuracy = f"; val accuracy {acc[0]:.3f}" if acc else ""
    change = ", ".join(f"{k}={v}" for k, v in arm["change"].items()) or "your setup"
    low, high = arm["failure_rate_95ci"]
    rate = f"failure rate 95% CI {low:.2f}-{high:.2f}"
    return f"{arm['arm']} ({change}): {outcomes} over {arm['seeds']} seeds{accuracy} ({rate})"


def verdict_lines(record: dict) -> list[str]:
    """The console verdict: the culprit, 3-5 lines of evidence, the fix."""
    culprit, ev = record["culprit"], record["evidence"]
    where = f"on {record['backend']}"
    lines = [f"culprit: {culprit} ({record['confidence']} confidence, {where}; symptom: {record['symptom']})"]
    probe = ev["probe"]
    head = probe.get("head") or {}
    if head:
        lines.append(f"  head: {head.get('kind')} ({', '.join(head.get('classes', []))}), levels {head.get('levels')}")
    if probe.get("nonfinite_sizes") or probe.get("lengths_vary") or probe.get("errors"):
        found = []
        if probe.get("nonfinite_sizes"):
            found.append(f"non-finite features at {', '.join(probe['nonfinite_sizes'])}")
        if probe.get("lengths_vary"):
            found.append(f"feature lengths {probe['lengths']}")
        if probe.get("errors"):
            found.append(f"fails at {', '.join(probe['errors'])}")
        lines.append("  probe: " + "; ".join(found))
    for arm in ev["arms"][:4]:
        lines.append("  " + _arm_line(arm))
    failure = ev.get("first_failure")
    if failure:
        loss = failure.get("loss")
        lines.append(
            f"  first failure: {failure['outcome']} at step {failure['step']}"
            + (f", loss {loss:.4g}" if isinstance(loss, float) else "")
        )
    if record.get("note"):
        lines.append(f"  note: {record['note']}")
    if record["fix"] is not None:
        lines.append(f"fix: {record['why']}: spp-search train --config {record.get('fix_path')} --out fixed.keras")
    elif culprit == "unknown":
        lines.append(f"no arm made it train (tried: {', '.join(record['tried']) or 'nothing'}); see diagnosis.md")
    return lines


def markdown(record: dict) -> str:
    ev = record["evidence"]
    culprit = record["culprit"]
    lines = [
        f"# Diagnosis: {culprit}",
        "",
        f"Model `{record['model']}` on `{record['data']}` ({record['backend']}), {record['seconds']} s.",
        f"Symptom of your setup: **{record['symptom']}**; confidence **{record['confidence']}**"
        + (f" (Fisher's exact p = {record['p_value']})" if record["p_value"] is not None else "")
        + ".",
        "",
    ]
    if culprit in CULPRITS:
        lines += [f"Typical of `{culprit}`: {CULPRITS[culprit].typical}. The fix: {record['why']}.", ""]
    lines += ["## Arms (one change each, over seeds)", ""]
    lines += [f"- {_arm_line(a)}" for a in ev["arms"]]
    lines += ["", "## Static probe", ""] + _bullets(ev["probe"]) + ["", "## Data", ""] + _bullets(ev["data"]) + [""]
    if ev.get("errors"):
        lines += ["## Errors of your setup", ""] + [f"- `{e}`" for e in ev["errors"]] + [""]
    if record["fix"] is not None:
        lines += [
            "## Fix",
            "",
            f"`spp-search train --config {record.get('fix_path')} --out fixed.keras`",
            "",
            "```yaml",
        ]
        lines += [yaml.safe_dump(record["fix"], sort_keys=False).rstrip(), "```", ""]
    return "\n".join(lines)


def _bullets(values: dict) -> list[str]:
    """One line per key, its value as compact JSON (cut at 300 characters)."""
    lines = []
    for key, value in values.items():
        text = json.dumps(_finite(value), separators=(", ", ": "), default=str)
        lines.append(f"- `{key}`: `{text if len(text) <= 300 else text[:297] + '...'}`")
    return lines


def write(record: dict, out: Path, config) -> None:
    """``diagnosis.json``, ``diagnosis.md`` and ``fix.yaml`` (when there is a fix) in ``out``,
    logged to the diagnosis study's MLflow parent run too."""
    if record["fix"] is not None:
        path = out / "fix.yaml"
        path.write_text(yaml.safe_dump(record["fix"], sort_keys=False))
        record["fix_path"] = str(path)
    (out / "diagnosis.json").write_text(json.dumps(_finite(record), indent=1))
    (out / "diagnosis.md").write_text(markdown(record))
    _log(record, out, config)


def _log(record: dict, out: Path, config) -> None:
    from spp_search.study.tracking import Tracker

    tracker = Tracker(config.study.tracking_uri, config.study.name)
    run = tracker.study_run()
    if run is None:
        return
    run_id = run.info.run_id
    tracker.client.set_tag(run_id, "culprit", record["culprit"])
    tracker.client.set_tag(run_id, "symptom", record["symptom"])
    for name in ("diagnosis.json", "diagnosis.md", "fix.yaml"):
        if (out / name).is_file():
            tracker.client.log_artifact(run_id, str(out / name))


def fix_config(config, setup: dict, overrides: dict) -> dict:
    """The fixed setup as a config ``spp-search train --config`` accepts (an empty space): the
    user's setup with the arm's one change; every other factor stays unset, so a builder keeps
    its own defaults as in the diagnosis."""
    return {
        "study": {"name": f"{config.study.name}-fixed", "epochs": config.study.epochs, "seed": 0},
        "data": {k: v for k, v in config.to_dict()["data"].items() if k in DATA_KEYS},
        "model": {k: v for k, v in dataclasses.asdict(config.model).items() if v},
        "defaults": _plain({**setup, **overrides}),
        "space": {},
    }


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
