"""What a user sees in MLflow (tracking.py, datasets.py): the experiment's kind, every trial run's
datasets and system metrics, and a failed run's reason and evidence. Plain TrialResults: no
training here; tests/test_mlflow_server.py drives a real study through a real MLflow server."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from spp_search.config.settings import build_config
from spp_search.data import datasets
from spp_search.study.tracking import KIND, MODEL_DEVELOPMENT, Tracker
from spp_search.trial.outcomes import Outcome
from spp_search.trial.run import TrialResult


def _tracker(tmp_path, data: dict | None = None) -> tuple[Tracker, MlflowClient]:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, "seen")
    config = build_config({"study": {"name": "seen"}, "data": data or {}}).to_dict()
    tracker.open_study(config, {})
    return tracker, MlflowClient(uri)


def test_the_experiment_opens_as_model_development(tmp_path):
    """Without the tag MLflow 3 opened a fresh experiment on its GenAI overview ("Traces: 0")."""
    _, client = _tracker(tmp_path)
    assert client.get_experiment_by_name("seen").tags[KIND] == MODEL_DEVELOPMENT


def test_an_experiment_created_before_gets_the_tag(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(uri).create_experiment("seen")
    Tracker(uri, "seen")
    assert MlflowClient(uri).get_experiment_by_name("seen").tags[KIND] == MODEL_DEVELOPMENT


def test_every_trial_run_logs_its_training_and_validation_data(tmp_path):
    tracker, client = _tracker(tmp_path)
    run_id = tracker.start_trial(0, {"levels": [1]}, {})
    tracker.end_trial(run_id, TrialResult(Outcome.OK, value=0.5), {})
    inputs = client.get_run(run_id).inputs.dataset_inputs
    contexts = {i.tags[0].value: i.dataset for i in inputs}
    assert set(contexts) == {"training", "validation"}
    assert contexts["training"].name == "synthetic-train" and contexts["training"].source_type == "code"
    assert json.loads(contexts["training"].source)["generator"] == "spp_search.data.make_synthetic"
    assert contexts["training"].digest != contexts["validation"].digest
    # the Dataset filter of the runs table finds it
    found = client.search_runs([tracker.experiment_id], "dataset.name = 'synthetic-train'")
    assert {r.info.run_id for r in found} == {run_id, tracker.parent_id}  # the study's parent run too


def _folder(root, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / label / f"{i}.png")


def test_a_folders_digest_follows_its_content_not_its_size(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _folder(one, 0)
    _folder(two, 1)
    data = build_config({"data": {"source": str(one)}}).data.for_trial()
    first = datasets.describe(data)
    assert first["source"]["files"] == 4 and first["source"]["uri"] == str(one.resolve())
    other = datasets.describe({**data, "source": str(two)})
    assert other["source"]["files"] == 4 and other["digest"] != first["digest"]  # same size, other images
    assert datasets.describe(data)["digest"] == first["digest"]
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(one / "a" / "0.png")  # edited
    assert datasets.describe(data)["digest"] != first["digest"]


@pytest.mark.parametrize("failing", [False, True])
def test_every_trial_run_records_system_metrics(tmp_path, failing):
    """Sampled in the driver while the trial runs, with a last sample at its end (a trial that
    fails within the first interval still has them)."""
    tracker, client = _tracker(tmp_path)
    run_id = tracker.start_trial(0, {}, {})
    result = TrialResult(Outcome.OOM_HOST, error_message="boom") if failing else TrialResult(Outcome.OK, value=1.0)
    tracker.end_trial(run_id, result, {})
    metrics = client.get_run(run_id).data.metrics
    assert metrics["system/system_memory_usage_megabytes"] > 0 and "system/cpu_utilization_percentage" in metrics
    assert not tracker.monitors  # stopped with the run


def test_a_failed_run_has_its_reason_and_evidence(tmp_path):
    tracker, client = _tracker(tmp_path)
    run_id = tracker.start_trial(0, {}, {})
    result = TrialResult(Outcome.DIVERGED_NAN, failed_epoch=0, failed_step=4, evidence={"steps": [{"step": 4}]})
    tracker.end_trial(run_id, result, {})
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["error_type"] == "Divergence"
    assert "non-finite" in run.data.tags["error_message"]
    assert [a.path for a in client.list_artifacts(run_id)] == ["failure.json"]


def test_logging_a_model_leaves_the_processs_tracking_uri_alone(tmp_path, monkeypatch):
    """registry.log_model used mlflow.set_tracking_uri, which also sets MLFLOW_TRACKING_URI in the
    environment: every later command in the process (and its children) took that server as the
    tracking URI (after `train --tracking-uri http://...`, the next run stopped on an unreachable
    server)."""
    import os

    import keras
    import mlflow

    from spp_search.results import registry

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = mlflow.get_tracking_uri()
    tracker, client = _tracker(tmp_path)
    run_id = tracker.start_run("train", {}, {}, {})
    inputs = keras.Input((None, None, 3))
    model = keras.Model(
        inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    )
    config = build_config({"study": {"name": "seen"}})
    example = np.zeros((1, 9, 7, 3), np.float32)
    source = {"study": "seen", "trial": 3}
    logged = registry.log_model(tracker, run_id, model, config, example, "reg", source, {"val_accuracy": 0.75})
    tracker.end_run(run_id)
    assert "MLFLOW_TRACKING_URI" not in os.environ and mlflow.get_tracking_uri() == before
    assert logged["version"] == "1" or logged["version"] == 1
    version = client.get_model_version("reg", "1")
    assert version.tags["source_trial"] == "3" and version.run_id == run_id
    assert version.tags["val_accuracy"] == "0.7500" and "champion" in client.get_registered_model("reg").aliases
    assert "trial 3 of study 'seen'" in version.description and "0.7500" in version.description
    assert client.get_run(run_id).info.status == "FINISHED"


def test_runs_record_the_base_image_a_container_was_built_on(tmp_path, monkeypatch):
    """The images set SPP_SEARCH_BASE_IMAGE (name@digest, given at build): the study's run and
    every trial's name the base a result came from; outside a container nothing is tagged."""
    monkeypatch.setenv("SPP_SEARCH_BASE_IMAGE", "python:3.11-slim@sha256:56cc")
    tracker, client = _tracker(tmp_path)
    run_id = tracker.start_trial(0, {"levels": [1]}, {})
    for run in (run_id, tracker.parent_id):
        assert client.get_run(run).data.tags["base_image"] == "python:3.11-slim@sha256:56cc"
    monkeypatch.delenv("SPP_SEARCH_BASE_IMAGE")
    plain, plain_client = _tracker(tmp_path / "plain")
    assert "base_image" not in plain_client.get_run(plain.parent_id).data.tags
