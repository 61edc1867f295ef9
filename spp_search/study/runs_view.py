"""How a study reads in the MLflow UI: run names, run descriptions, the saved runs view, its URL.

MLflow's runs table opens with dozens of columns and the trials folded under the study's parent
run (a shared view cannot unfold it: MLflow drops ``runsExpanded`` from shared state). So each
experiment gets one shared view, the experiment tag ``mlflow.sharedViewState.spp-search``, which
the UI opens from ``?viewStateShareKey=spp-search`` (the URL every study prints): the trials grouped by
their outcome (every group unfolded, the study's own run under "Additional runs"), the columns
``outcome``, ``val_accuracy`` and the searched factors, and the chart view filtered to the step losses,
where a diverged trial's spike shows. Run names carry the outcome and the value
(``trial-007 ok 0.940``), so the table reads at a glance even without the view.
"""

from __future__ import annotations

import json
from urllib.parse import urlparse

from spp_search.config.factors import param_text

VIEW_KEY = "spp-search"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
NOTE = "mlflow.note.content"  # the run (or experiment) description in MLflow's UI
DEFAULT_UI = "http://127.0.0.1:5000"


def view_state(searched: tuple[str, ...]) -> dict:
    """The saved view: grouped by outcome, the columns that matter, loss charts (MLflow 3's
    shared-view state; its keys are the UI's own)."""
    columns = ["tags.`outcome`", "metrics.`val_accuracy`", *(f"params.`{name}`" for name in searched)]
    columns += ["tags.`error_type`"]
    return {
        "selectedColumns": columns,
        "groupBy": "tag.average.outcome",  # one unfolded group per outcome; mean val_accuracy per group
        "orderByKey": "attributes.start_time",
        "orderByAsc": True,
        "runsHiddenMode": "SHOW_ALL",  # the charts draw every trial, not the first 10
        "chartsSearchFilter": "batch_loss",  # the step losses, where a divergence spikes
        "useGroupedValuesInCharts": False,  # one line per trial, not per group
    }


def install(client, experiment_id: str, searched: tuple[str, ...]) -> None:
    """Write (or rewrite) the experiment's saved view and its description."""
    client.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps({"name": "spp-search", **view_state(searched)}))
    factors = ", ".join(searched) or "none"
    text = (
        "A spp-search study: one run per trial (named `trial-NNN outcome value`), under the study's run. "
        f"Open it with `?viewStateShareKey={VIEW_KEY}` (the URL the study prints): trials grouped by "
        f"outcome with val_accuracy and the searched factors ({factors}); its chart view shows the losses."
    )
    client.set_experiment_tag(experiment_id, NOTE, text)


def runs_url(tracking_uri: str, experiment_id: str, chart: bool = False) -> str:
    """The URL of the experiment's saved view: on the tracking server itself when the tracking
    URI is one, else on ``mlflow ui``'s default address."""
    parsed = urlparse(tracking_uri)
    base = f"{parsed.scheme}://{parsed.netloc}" if parsed.scheme in ("http", "https") else DEFAULT_UI
    mode = "&compareRunsMode=CHART" if chart else ""
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}{mode}"


def ui_command(tracking_uri: str) -> str | None:
    """The command that serves a local tracking store (None for a server already running)."""
    if urlparse(tracking_uri).scheme in ("http", "https", "databricks"):
        return None
    return f"mlflow ui --backend-store-uri {tracking_uri}"


def trial_name(number: int, outcome: str | None = None, value: float | None = None) -> str:
    """``trial-007`` while it runs; ``trial-007 ok 0.940`` / ``trial-012 diverged_explosion`` after."""
    name = f"trial-{number:03d}"
    if outcome is not None:
        name += f" {outcome}"
    if value is not None:
        name += f" {value:.3f}"
    return name


def describe(factors: dict, names: tuple[str, ...]) -> str:
    """``levels=1,2,4 pooling=max learning_rate=0.00316``: the searched factors, compact."""

    def text(value: object) -> str:
        return f"{value:.3g}" if isinstance(value, float) else param_text(value)

    return " ".join(f"{k}={text(factors[k])}" for k in names if k in factors)


def trial_note(outcome: str, value: float | None, factors: dict, searched: tuple[str, ...], reason: str = "") -> str:
    """The run's description: outcome, value, the searched factors and, for a failure, why."""
    head = f"**{outcome}**" + (f", val_accuracy {value:.4f}" if value is not None else "")
    lines = [head] + (["", describe(factors, searched)] if searched else []) + (["", reason] if reason else [])
    return "\n".join(lines)


def study_note(counts: dict[str, int], best: tuple[int, float, str] | None, total: int) -> str:
    """The study run's description: trials per outcome and the best trial."""
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    text = f"**{sum(counts.values())} of {total} trials**: {parts or 'none yet'}."
    if best is not None:
        text += f"\n\nBest: {trial_name(best[0])}, val_accuracy {best[1]:.4f} ({best[2]})."
    return text


def next_steps(uri: str, experiment_id: str | None, next_command: str | None = None) -> list[str]:
    """The lines a command ends with: how to open the study's runs in MLflow, and what to run next."""
    if experiment_id is None:
        return [f"next: {next_command}"] if next_command else []
    command = ui_command(uri)
    opener = f"run `{command}`, then open" if command else "open"
    lines = [f"MLflow: {opener} {runs_url(uri, experiment_id)}"]
    if next_command:
        lines.append(f"next: {next_command}")
    return lines
