"""The study on JAX end to end: Optuna and KerasTuner engines, train and export, the GPU benchmark's
CPU mode, and the wheelhouse for air-gapped GPU hosts. The drivers import no backend; workers run
JAX (the pytest process itself runs TensorFlow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from mlflow import MlflowClient

from spp_search.cli import main
from tests.backends import BACKENDS, on
from tests.helpers import tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.skipif("jax" not in BACKENDS, reason="JAX is not installed")]
ROOT = Path(__file__).resolve().parent.parent


def _write(tmp_path, raw, name="c.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def _study(tmp_path, name="tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/optuna.db")


def _trial_runs(tmp_path, name="tiny"):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name(name)
    return client.search_runs([experiment.experiment_id], "tags.`spp_search.role` = 'trial'")


def test_optuna_study_on_jax_records_backend_and_compilation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # JAX workers keep compiled programs in ./.spp_cache/jax-compile
    raw = tiny_config(tmp_path, trials=3, workers=1, backend="jax")
    raw["space"]["input_policy"]["choices"] = ["fixed", "variable_bucketed"]
    assert main(["--config", _write(tmp_path, raw)]) == 0
    study = _study(tmp_path)
    assert len(study.trials) == 3 and all(t.user_attrs["outcome"] in ("ok", "pruned") for t in study.trials)
    runs = _trial_runs(tmp_path)
    assert {r.data.params["backend"] for r in runs} == {"jax"}
    for r in runs:
        metrics = r.data.metrics
        assert 1 <= metrics["traced_shapes"] <= 9 and metrics["compile_s"] > 0 and metrics["grad_norm_max"] > 0
    assert any((tmp_path / ".spp_cache" / "jax-compile").iterdir())


def test_backend_option_overrides_the_config_and_keras_backend(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    raw = tiny_config(tmp_path, trials=1, workers=1)
    assert main(["--config", _write(tmp_path, raw), "--backend", "jax"]) == 0
    assert [r.data.params["backend"] for r in _trial_runs(tmp_path)] == ["jax"]


def test_keras_tuner_engine_on_jax_in_a_fresh_driver(tmp_path):
    """KerasTuner imports Keras in the driver: a fresh process on the study's backend."""
    raw = tiny_config(tmp_path, trials=2, engine="keras-tuner", tuner="random", workers=1, backend="jax")
    config = _write(tmp_path, raw)
    done = subprocess.run(
        [sys.executable, str(ROOT / "study.py"), "--config", config],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "-1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    study = _study(tmp_path)
    assert len(study.trials) == 2 and {t.user_attrs["engine"] for t in study.trials} == {"keras-tuner"}
    assert {r.data.params["backend"] for r in _trial_runs(tmp_path)} == {"jax"}


def predict_two_sizes(path: str) -> list[np.ndarray]:
    """Load an exported model (``import spp_search`` first) and predict on two image sizes."""
    import keras

    import spp_search  # noqa: F401

    model = keras.saving.load_model(path)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (2, h, w, 3)).astype("float32") for h, w in ((13, 47), (90, 71))]
    return [model.predict(x, verbose=0) for x in images]


def test_train_on_jax_and_load_under_every_backend(tmp_path):
    raw = tiny_config(tmp_path, trials=1)
    raw["space"] = {}
    raw["defaults"].update(levels=[1, 2], input_policy="variable_bucketed")
    config = _write(tmp_path, raw, "fixed.yaml")
    model = tmp_path / "model.keras"
    done = subprocess.run(
        [sys.executable, str(ROOT / "study.py"), "train", "--config", config, "--out", str(model), "--backend", "jax"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "JAX_PLATFORMS": "cpu"},
    )
    assert done.returncode == 0 and "val_accuracy" in done.stdout, done.stderr[-3000:]
    predictions = {backend: on(backend, predict_two_sizes, str(model)) for backend in BACKENDS}
    for got in predictions.values():
        assert [p.shape for p in got] == [(2, 4), (2, 4)] and all(np.allclose(p.sum(axis=1), 1, atol=1e-4) for p in got)
    for a, b in zip(predictions["jax"], predictions["tensorflow"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_gpu_benchmark_runs_on_a_cpu_in_quick_mode(tmp_path):
    """``python -m benchmarks.gpu --device cpu --quick``: every section, so the GPU run cannot rot."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--device", "cpu", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "cpu-quick-jax.json").read_text())
    assert result["environment"]["backend"] == "jax" and result["quick"]
    assert result["spp_op"]["all_exact"] and result["spp_op"]["one_hot_product_exact"]["layer_precision_max_error"] == 0
    assert result["train_step"]["ratio_fixed"] > 0 and result["precision"]["mixed_bfloat16"]["outcome"] == "ok"
    assert result["oom_boundary"]["same_boundary_both_times"] and len(result["oom_boundary"]["sequences"]) == 2
    assert result["study"]["finished"] and result["study"]["trials_done"] == 1
    assert "Keras on jax" in (tmp_path / "summary.md").read_text()


def test_wheelhouse_for_a_gpu_host_has_no_tensorflow_and_fits(tmp_path):
    """Resolved for CPython 3.12 from PyPI (as the CI machine can reach it)."""
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "wheelhouse.sh"), str(tmp_path / "wh")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    wheels = [p.name.lower() for p in (tmp_path / "wh").glob("*.whl")]
    assert any(w.startswith("spp_search-") for w in wheels) and any(w.startswith("keras-") for w in wheels)
    assert not any(w.startswith(("tensorflow", "jax", "numpy", "torch")) for w in wheels)
    assert sum(p.stat().st_size for p in (tmp_path / "wh").glob("*.whl")) < 60 * 2**20
