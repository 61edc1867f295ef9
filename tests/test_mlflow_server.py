"""A real MLflow server (``mlflow server``, SQLite backend, served artifacts) through a study with
one trial of each failure that can be made to happen, read back through its REST API the way the
UI reads it; then ``train --register`` and a pyfunc prediction at two sizes in a fresh process."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import requests
import yaml

from spp_search.cli import main
from tests.helpers import run_enqueued

pytestmark = pytest.mark.slow

BASE = {
    "channel_policy": "pad_missing",
    "head": "spp",
    "input_policy": "fixed",
    "fault": "none",
    "learning_rate": 0.01,
    "optimizer": "adam",
}
TRIALS = {  # outcome -> the trial's factors (the first is the healthy one)
    "ok": BASE,
    "diverged": {**BASE, "learning_rate": 50.0, "optimizer": "sgd"},
    "oom_host": {**BASE, "fault": "allocate"},
    "timeout": {**BASE, "fault": "hang"},
    "crash": {**BASE, "fault": "raise"},
    "data_error": {**BASE, "channel_policy": "strict"},
    "shape_error": {**BASE, "head": "flatten", "input_policy": "variable_padded"},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "art")]
    command += ["--workers", "1"]
    process = subprocess.Popen(command, stdout=(root / "log").open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"{url}/health", timeout=2).ok:
                break
        time.sleep(0.5)
    else:
        process.kill()
        raise AssertionError((root / "log").read_text()[-2000:])
    yield url
    process.terminate()
    process.wait(30)


def _api(url: str, path: str, **params) -> dict:
    answer = requests.get(f"{url}/api/2.0/mlflow/{path}", params=params, timeout=30)
    assert answer.ok, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def study(server, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("served")
    code, study, _, _ = run_enqueued(
        tmp_path,
        "served",
        list(TRIALS.values()),
        data={"corruption": {"unreadable": 0.05}},
        tracking_uri=server,
        host_memory_budget="1500MiB",
        trial_timeout=12.0,
        max_retries=0,
        workers=1,
    )
    assert code == 0
    return tmp_path, study


def test_the_ui_sees_every_trial_explained(server, study):
    _, optuna_study = study
    outcomes = [t.user_attrs["outcome"].replace("_nan", "").replace("_explosion", "") for t in optuna_study.trials]
    assert outcomes == list(TRIALS)
    experiment = _api(server, "experiments/get-by-name", experiment_name="served")["experiment"]
    tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    found = requests.post(
        f"{server}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [experiment["experiment_id"]], "filter": "tags.`spp_search.role` = 'trial'"},
        timeout=30,
    ).json()["runs"]
    assert len(found) == len(TRIALS)
    for summary in found:
        run = _api(server, "runs/get", run_id=summary["info"]["run_id"])["run"]
        run_tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
        outcome = run_tags["outcome"]
        contexts = {i["tags"][0]["value"] for i in run["inputs"]["dataset_inputs"]}
        assert contexts == {"training", "validation"}, outcome
        metrics = {m["key"] for m in run["data"].get("metrics", [])}
        assert "system/cpu_utilization_percentage" in metrics and "system/system_memory_usage_megabytes" in metrics
        assert not any("\x1b" in v for v in run_tags.values()), outcome
        if outcome == "ok":
            continue
        assert run_tags["error_type"] and run_tags["error_message"], outcome
        files = {f["path"] for f in _api(server, "artifacts/list", run_id=run["info"]["run_id"]).get("files", [])}
        assert "failure.json" in files, (outcome, files)
        if outcome in ("crash", "data_error", "shape_error"):
            assert "traceback.txt" in files, outcome


def test_train_registers_a_model_that_predicts_at_two_sizes_in_a_fresh_process(server, study, tmp_path):
    root, _ = study
    best, model = tmp_path / "best.yaml", tmp_path / "m.keras"
    config = root / "served.yaml"
    assert main(["export-best", "--config", str(config), "--out", str(best)]) == 0
    args = ["train", "--config", str(best), "--out", str(model), "--tracking-uri", server, "--register", "spp-served"]
    assert main(args) == 0
    versions = _api(server, "registered-models/get", name="spp-served")["registered_model"]["latest_versions"]
    version = _api(server, "model-versions/get", name="spp-served", version=versions[0]["version"])["model_version"]
    tags = {t["key"]: t["value"] for t in version["tags"]}
    assert tags["source_study"] == "served" and tags["source_trial"] == "0"
    assert tags["config_artifact"] == f"runs:/{version['run_id']}/config.yaml" and "config" not in tags  # not a tag
    assert "trial 0 of study 'served'" in version["description"] and "val_accuracy" in version["description"]
    model = _api(server, "registered-models/get", name="spp-served")["registered_model"]
    assert {a["alias"]: a["version"] for a in model.get("aliases", [])}.get("champion") == version["version"]
    run = _api(server, "runs/get", run_id=version["run_id"])["run"]
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    # retrained on the same backend, on CPU: the trial's validation accuracy, exactly, and its losses
    assert metrics["val_accuracy"] == metrics["source_val_accuracy"]
    trial_run = _api(server, "runs/get", run_id=yaml.safe_load(best.read_text())["result"]["mlflow_run_id"])["run"]
    trial_metrics = {m["key"]: m["value"] for m in trial_run["data"]["metrics"]}
    assert metrics["val_loss"] == pytest.approx(trial_metrics["val_loss"], abs=1e-6)
    script = textwrap.dedent(f"""
        import numpy as np, mlflow, spp_search
        mlflow.set_tracking_uri({server!r})
        model = mlflow.pyfunc.load_model("models:/spp-served/{version["version"]}")
        for h, w in ((13, 47), (90, 71)):
            p = model.predict(np.random.default_rng(0).integers(0, 255, (2, h, w, 3)).astype("float32"))
            assert p.shape == (2, 4) and np.allclose(p.sum(axis=1), 1, atol=1e-4), p
        print("predicted")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.stdout.strip().endswith("predicted"), done.stderr[-3000:]
