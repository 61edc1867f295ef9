"""A tiny study end to end through the CLI: Optuna storage, MLflow runs, resume, export, errors."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from spp_search.cli import main
from spp_search.config.factors import FACTORS
from spp_search.config.settings import load_config
from tests.helpers import tiny_config

pytestmark = pytest.mark.slow
SEARCHED = {"levels", "pooling", "input_policy", "learning_rate"}


def _write(tmp_path, raw, name="c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def _runs(tmp_path, name="tiny"):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("spp_search.role") == "study"]
    children = [r for r in runs if r.data.tags.get("spp_search.role") == "trial"]
    return client, parents, children


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """One 3-trial study, then a resume to 4: shared by the checks below (training is the cost)."""
    tmp_path = tmp_path_factory.mktemp("study")
    config = _write(tmp_path, tiny_config(tmp_path))
    assert main(["--config", config, "--trials", "3"]) == 0
    first = len(optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/optuna.db").trials)
    assert main(["run", "--config", config, "--trials", "4"]) == 0
    return tmp_path, config, first


def test_optuna_storage_holds_the_total(study_dir):
    tmp_path, _, first = study_dir
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert first == 3 and len(study.trials) == 4


def test_trials_report_at_the_same_steps(study_dir):
    """Issue 25: a step budget (10 steps, 2 validations) reports at steps 5 and 10 in every
    trial that trained it, so the pruner compares trials that trained as long."""
    tmp_path, _, _ = study_dir
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/optuna.db")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all(sorted(t.intermediate_values) == [5, 10] for t in done)
    assert all(t.user_attrs["val_images"] == 12 and t.user_attrs["val_majority_share"] > 0 for t in done)
    for t in study.trials:
        assert t.state.is_finished() and t.user_attrs["outcome"] in ("ok", "pruned")
        assert set(t.user_attrs["factors"]) == set(FACTORS)
        assert len(t.intermediate_values) >= 1


def test_mlflow_has_one_parent_and_a_child_per_trial(study_dir):
    tmp_path, _, _ = study_dir
    client, parents, children = _runs(tmp_path)
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_finished"] == 4
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "space.yaml"} <= artifacts
    assert {"trials", "budget_steps", "eval_every_steps", "sampler", "searched"} <= set(parent.data.params)
    assert parent.data.params["budget_steps"] == "10" and parent.data.params["eval_every_steps"] == "5"
    assert not set(FACTORS) & set(parent.data.params)  # a trial's factors are on the trial's run only
    outcomes = [r.data.tags["outcome"] for r in children]
    assert {f"trials_{o}": float(outcomes.count(o)) for o in outcomes}.items() <= parent.data.metrics.items()
    assert "of 4 trials" in parent.data.tags["mlflow.note.content"]
    view = json.loads(client.get_experiment(parent.info.experiment_id).tags["mlflow.sharedViewState.spp-search"])
    assert {"tags.`outcome`", "metrics.`val_accuracy`", *(f"params.`{n}`" for n in SEARCHED)} <= set(
        view["selectedColumns"]
    )
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        number, outcome = int(run.data.tags["spp_search.trial_number"]), run.data.tags["outcome"]
        assert run.info.run_name.startswith(f"trial-{number:03d} {outcome} 0.")  # e.g. trial-002 ok 0.417
        assert run.data.tags["mlflow.note.content"].startswith(f"**{outcome}**, val_accuracy")
        assert SEARCHED <= set(run.data.params) and set(FACTORS) <= set(run.data.params)
        outcome = run.data.tags["outcome"]
        assert run.info.status == {"ok": "FINISHED", "pruned": "KILLED"}[outcome]
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == [5, 10][: len(history)] and history  # logged at the steps trained
        assert {"loss", "val_loss", "epoch_time_s", "batch_loss", "grad_norm_max"} <= set(run.data.metrics)


def test_export_best_writes_a_runnable_config_naming_every_factor(study_dir, tmp_path):
    root, config, _ = study_dir
    out = tmp_path / "best.yaml"
    assert main(["export-best", "--config", config, "--out", str(out)]) == 0
    best = yaml.safe_load(out.read_text())
    assert set(best["defaults"]) == set(FACTORS) and best["space"] == {}
    assert best["result"]["study"] == "tiny" and 0 <= best["result"]["val_accuracy"] <= 1
    assert list(best["result"]["val_accuracy_at"]) == [5, 10]  # validations by steps trained
    assert best["study"]["steps"] == 10 and "epochs" not in best["study"]  # `train` trains the study's budget
    assert "storage" not in best["study"]
    again = load_config(out)
    assert again.defaults["levels"] == tuple(best["defaults"]["levels"])
    json_out = tmp_path / "best.json"
    assert main(["export-best", "--config", config, "--out", str(json_out)]) == 0 and json_out.is_file()


def test_divergence_is_recorded_and_the_study_goes_on(tmp_path):
    raw = tiny_config(tmp_path, name="diverge", trials=2, pruner="none")
    raw["defaults"].update(learning_rate=50.0, optimizer="sgd")
    raw["space"] = {"levels": {"choices": [[1, 2]]}}
    assert main(["--config", _write(tmp_path, raw)]) == 0
    study = optuna.load_study(study_name="diverge", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    assert study.metric_names == ["val_accuracy"]  # optuna-dashboard named it "Objective 0"
    assert all(t.user_attrs["outcome"].startswith("diverged_") for t in study.trials)
    client, _, children = _runs(tmp_path, "diverge")
    assert [r.info.status for r in children] == ["FAILED", "FAILED"]
    assert all("failed_step" in r.data.tags for r in children)
    for run in children:  # the spike is in the run's chart: the failing step and the 10 before it
        failed = int(run.data.tags["failed_step"])
        steps = {m.step for m in client.get_metric_history(run.info.run_id, "batch_loss")}
        assert set(range(max(1, failed - 10), failed + 1)) <= steps, (failed, sorted(steps))
        outcome = run.data.tags["outcome"]
        assert run.info.run_name.endswith(f" {outcome}") and run.info.run_name.startswith("trial-00")
        assert run.data.tags["mlflow.note.content"].startswith(f"**{outcome}**")
        assert run.data.tags["error_type"] in run.data.tags["mlflow.note.content"]


def test_enqueued_configurations_run_first_and_count_toward_the_total(tmp_path):
    raw = tiny_config(tmp_path, name="seeded", trials=3)
    raw["enqueue"] = [{"levels": [1, 2], "pooling": "avg"}, {"input_policy": "variable_padded"}]
    assert main(["--config", _write(tmp_path, raw)]) == 0
    study = optuna.load_study(study_name="seeded", storage=f"sqlite:///{tmp_path}/optuna.db")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert len(trials) == 3 and all(t.state.is_finished() for t in trials)
    assert (trials[0].params["levels"], trials[0].params["pooling"]) == ("1,2", "avg")
    assert trials[1].params["input_policy"] == "variable_padded"
    assert trials[0].user_attrs["enqueued"] and "enqueued" not in trials[2].user_attrs
    assert main(["--config", _write(tmp_path, raw)]) == 0  # resume: nothing enqueued twice
    assert len(optuna.load_study(study_name="seeded", storage=f"sqlite:///{tmp_path}/optuna.db").trials) == 3


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--trials", "0"], "`trials` must be an integer in [1, 10000]"),
        (["--device", "gpu"], "`device` must name a device"),
        (["--data", "/no/such/dir"], "`data` must be an existing folder"),
        (["export-best", "--out", "best.txt"], "`out` must end in one of"),
        (["export-best", "--out", "b.yaml", "--study-name", "nope"], "`storage` must point at an existing"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, monkeypatch, capsys, args, fragment):
    monkeypatch.chdir(tmp_path)
    config = _write(tmp_path, tiny_config(tmp_path))
    code = main([*args, "--config", config])
    err = capsys.readouterr().err.strip()
    assert code == 2 and fragment in err and err.count("\n") == 0
    assert not (tmp_path / "best.txt").exists() and not (tmp_path / "optuna.db").exists()


def test_same_name_with_another_experiment_is_refused(study_dir, capsys):
    tmp_path, _, _ = study_dir
    raw = tiny_config(tmp_path)
    raw["defaults"]["pooling"] = "avg"
    raw["space"].pop("pooling")
    assert main(["--config", _write(tmp_path, raw, "other.yaml")]) == 2
    assert "new --study-name" in capsys.readouterr().err
