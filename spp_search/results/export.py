"""Export the best trial as a complete, runnable config (YAML or JSON by the file's extension).

The file has the sections of an experiment config, every factor under ``defaults`` and an empty
``space``, so ``--config best.yaml`` reproduces the configuration; ``result`` records what it
achieved and where it came from. Storage and tracking URLs are left out (they may hold secrets).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import optuna
import yaml

from spp_search.config.choices import SELECTIONS
from spp_search.infra.errors import ConfigError, must
from spp_search.infra.files import check_writable
from spp_search.infra.storage import load_study
from spp_search.study.budget import counted_trials, outcome_of
from spp_search.trial.outcomes import Outcome

SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that count: finished, not superseded by a re-run (see ``engines.budget``)."""
    return counted_trials(study)


def _ok(trials) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials if t.user_attrs.get("outcome") == Outcome.OK.value and t.value is not None]


def best_trial(study: optuna.Study, by: str = "accuracy") -> tuple[optuna.trial.FrozenTrial, dict]:
    """The best successful trial and how its configuration fared.

    ``accuracy``: the highest validation accuracy. ``stability``: among configurations (identical
    factors; repeated in ablations), the lowest failure rate across its runs, then the most runs,
    then the highest mean accuracy; its best successful run is returned.
    """
    if by not in SELECTIONS:
        raise ConfigError(must("by", f"be one of {list(SELECTIONS)}", by, "Pick one of them."))
    trials = _finished(study)
    if not _ok(trials):
        raise ConfigError(
            must(
                "study-name",
                "name a study with at least one successful trial",
                study.study_name,
                "Run more trials first.",
            )
        )
    groups: dict[str, list] = {}
    for t in trials:
        groups.setdefault(json.dumps(t.user_attrs.get("factors"), sort_keys=True), []).append(t)

    def record(runs: list) -> dict:
        ok = _ok(runs)
        failures = sum(outcome_of(t) not in ("ok", "pruned") for t in runs)
        return {
            "runs": len(runs),
            "failures": failures,
            "mean_val_accuracy": sum(t.value for t in ok) / len(ok) if ok else None,
        }

    if by == "accuracy":
        best = max(_ok(trials), key=lambda t: (t.value, -t.number))
        return best, record(groups[json.dumps(best.user_attrs.get("factors"), sort_keys=True)])
    candidates = [(record(runs), runs) for runs in groups.values() if _ok(runs)]
    stats, runs = min(
        candidates, key=lambda c: (c[0]["failures"] / c[0]["runs"], -c[0]["runs"], -c[0]["mean_val_accuracy"])
    )
    return max(_ok(runs), key=lambda t: t.value), stats


def best_config(study: optuna.Study, by: str = "accuracy") -> dict:
    """The best trial's complete config: study, data, every factor, and its result."""
    trial, runs = best_trial(study, by)
    stored = study.user_attrs["config"]
    settings = {k: v for k, v in stored["study"].items() if k not in ("storage", "tracking_uri")}
    settings.update(name=f"{study.study_name}-best", trials=1, seed=stored["study"]["seed"] + trial.number)
    result = {
        "study": study.study_name,
        "trial": trial.number,
        "selected_by": by,
        "val_accuracy": trial.value,
        # each validation's accuracy by its key: the steps trained (an epoch's index for an epoch budget)
        "val_accuracy_at": {int(k): trial.intermediate_values[k] for k in sorted(trial.intermediate_values)},
        "configuration_runs": runs,
        "mlflow_run_id": trial.user_attrs.get("mlflow_run_id"),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return {
        "study": settings,
        "data": stored["data"],
        "defaults": trial.user_attrs["factors"],
        "space": {},
        "result": result,
    }


def check_out(out: Path) -> str:
    """The output format for ``out`` (``yaml`` or ``json``); checked before any work is done."""
    kind = SUFFIXES.get(out.suffix.lower())
    if kind is None:
        raise ConfigError(must("out", f"end in one of {sorted(SUFFIXES)}", str(out), "E.g. --out best.yaml."))
    if not out.parent.resolve().is_dir():
        raise ConfigError(must("out", "be in an existing folder", str(out), "Create the folder first."))
    check_writable(out.parent.resolve(), "out", str(out))
    return kind


def write_config(config: dict, out: Path) -> None:
    """Write atomically (temp file + rename): an error never leaves a half-written file."""
    kind = check_out(out)
    text = json.dumps(config, indent=2) if kind == "json" else yaml.safe_dump(config, sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=out.parent.resolve(), prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise


def best_of_study(config, by: str = "accuracy") -> dict:
    """The best trial's complete config of the study ``config`` names (``best_config``)."""
    return best_config(load_study(config.study.name, config.study.storage), by)


def export_best(config, out: Path, by: str = "accuracy") -> dict:
    """``export-best``: write the best trial's complete config to ``out`` and say so; returns it."""
    check_out(out)
    best = best_of_study(config, by)
    write_config(best, out)
    result = best["result"]
    print(f"wrote {out}: trial {result['trial']} of {result['study']}, val_accuracy {result['val_accuracy']:.4f}")
    return best
