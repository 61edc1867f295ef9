"""What a user sees in the MLflow UI, read by headless Chromium from the URL a study prints:
without clicking into a run, each trial's outcome, val_accuracy and searched factors, and a
diverged trial's loss spike in the chart view."""

from __future__ import annotations

import re

import optuna
import pytest
import requests
import yaml

from benchmarks.mlflow_ui import browser, free_port, page_text, serve
from spp_search.cli import main
from tests.helpers import tiny_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(browser() is None, reason="needs chromium (apt-get install chromium; .ci/run installs it)"),
]


def test_the_printed_url_shows_outcomes_values_factors_and_the_spike(tmp_path, capsys, monkeypatch):
    raw = tiny_config(tmp_path, name="ui", trials=3, pruner="none")
    raw["space"] = {"levels": {"choices": [[1], [1, 2]]}, "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="ui", storage=storage, direction="maximize")
    study.enqueue_trial({"learning_rate": 50.0, "optimizer": "sgd"})  # diverges
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(tmp_path / "c.yaml")]) == 0
    printed = re.search(r"(http://127\.0\.0\.1:5000/\S+viewStateShareKey=spp-search)", capsys.readouterr().out)
    assert printed, "the study printed no URL of its runs"
    port = free_port()
    server = serve(tmp_path, port)
    try:
        url = printed.group(1).replace(":5000", f":{port}")
        table = page_text(url, wanted="Group: ")
        runs = optuna.load_study(study_name="ui", storage=storage).trials
        for trial in runs:
            outcome = trial.user_attrs["outcome"]
            value = f" {trial.value:.3f}" if outcome in ("ok", "pruned") else ""  # a failure has none
            assert f"trial-{trial.number:03d} {outcome}{value}" in table  # the run's name: outcome and value
            assert f"Group: {outcome}" in table  # grouped by outcome, unfolded
        header = table[table.find("Run Name") :][:600]
        for column in ("val_accuracy", "levels", "learning_rate", "outcome"):
            assert column in header, (column, header)
        charts = page_text(url + "&compareRunsMode=CHART", wanted="batch_loss")
        assert "batch_loss" in charts
        diverged = next(t for t in runs if t.user_attrs["outcome"].startswith("diverged_"))
        api = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/metrics/get-history"
        history = requests.get(
            api, params={"run_id": diverged.user_attrs["mlflow_run_id"], "metric_key": "batch_loss"}, timeout=30
        ).json()["metrics"]
        losses = [m["value"] for m in sorted(history, key=lambda m: m["step"])]
        assert len(losses) >= 2 and (max(losses[1:]) > 10 * losses[0] or "NaN" in map(str, losses))
    finally:
        server.terminate()
        server.wait(30)
