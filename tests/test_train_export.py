"""Ablation through the CLI, export-best by accuracy and stability, train, and reload elsewhere."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml

from spp_search.cli import main
from tests.helpers import tiny_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ablated(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ablate")
    raw = tiny_config(tmp_path, name="abl")
    raw.pop("space")
    raw["ablation"] = {"repeats": 2, "arms": {"global": {"levels": [1]}, "spp": {"levels": [1, 2]}}}
    path = tmp_path / "abl.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["ablate", "--config", str(path)]) == 0
    return tmp_path, path


def test_ablation_runs_every_arm_with_each_seed(ablated):
    import optuna

    tmp_path, _ = ablated
    study = optuna.load_study(study_name="abl", storage=f"sqlite:///{tmp_path}/optuna.db")
    arms = [t.user_attrs["arm"] for t in study.trials]
    assert arms == ["global", "spp", "global", "spp"]
    assert all(t.user_attrs["outcome"] == "ok" for t in study.trials)


def test_report_has_the_arm_table(ablated):
    tmp_path, path = ablated
    assert main(["report", "--config", str(path), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "abl" / "report.md").read_text()
    assert "## Ablation arms" in text and "| global | 2 |" in text and "| spp | 2 |" in text


@pytest.mark.parametrize("by", ["accuracy", "stability"])
def test_export_train_load_predict_at_new_sizes(ablated, tmp_path, by):
    root, path = ablated
    best = tmp_path / "best.yaml"
    assert main(["export-best", "--config", str(path), "--out", str(best), "--by", by]) == 0
    exported = yaml.safe_load(best.read_text())
    assert exported["result"]["selected_by"] == by and exported["result"]["configuration_runs"]["runs"] == 2
    model = tmp_path / "model.keras"
    assert main(["train", "--config", str(best), "--out", str(model), "--epochs", "1", "--device", "cpu"]) == 0
    script = textwrap.dedent(f"""
        import numpy as np, keras, spp_search
        model = keras.saving.load_model({str(model)!r})
        assert model.input_shape == (None, None, None, 3), model.input_shape
        for h, w in ((13, 47), (90, 71)):
            p = model.predict(np.random.default_rng(0).integers(0, 255, (2, h, w, 3)).astype("float32"), verbose=0)
            assert p.shape == (2, 4) and np.allclose(p.sum(axis=1), 1, atol=1e-4)
        print("ok")
    """)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        env={"CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin"},
    )
    assert done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_train_refuses_a_config_that_still_searches(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path)))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "m.keras")]) == 2
    assert "fix every factor" in capsys.readouterr().err
