"""KerasTuner as a second engine: same space, outcomes, MLflow runs, export; conditional space."""

from __future__ import annotations

import keras_tuner as kt
import optuna
import pytest
import yaml
from mlflow import MlflowClient

from spp_search.cli import main
from spp_search.config.factors import default_factors
from spp_search.config.settings import build_config
from spp_search.config.space import SearchSpace
from spp_search.study.keras_tuner import make_oracle
from tests.helpers import tiny_config

SPACE = {
    "input_policy": {"choices": ["fixed", "variable_padded"]},
    "preprocessing": {"choices": ["resize", "letterbox"], "when": {"input_policy": ["fixed"]}},
    "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
    "batch_size": {"low": 8, "high": 16, "step": 8},
}


def test_one_space_drives_keras_tuner_with_conditions():
    space, hp = SearchSpace.from_dict(SPACE), kt.HyperParameters()
    space.keras_tuner(hp)
    assert {h.name for h in hp.space} == set(SPACE)
    hp.values["input_policy"] = "variable_padded"
    factors, params = space.from_keras_tuner(hp, default_factors())
    assert "preprocessing" not in params and factors["preprocessing"] == "resize"
    hp.values["input_policy"] = "fixed"
    hp.values["preprocessing"] = "letterbox"
    factors, params = space.from_keras_tuner(hp, default_factors())
    assert factors["preprocessing"] == "letterbox" and params["input_policy"] == "fixed"
    assert isinstance(factors["batch_size"], int)


@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband"])
def test_every_tuner_stops_at_the_study_budget(tmp_path, tuner):
    """Hyperband included: one of its iterations is 6 trials at 3 epochs, the budget is 20."""
    raw = tiny_config(tmp_path, trials=20, epochs=3, engine="keras-tuner", tuner=tuner)
    config = build_config(raw)
    hp = kt.HyperParameters()
    config.space.keras_tuner(hp)
    oracle = make_oracle(config, hp)
    oracle._set_project_dir(str(tmp_path), "kt")
    created = 0
    while (trial := oracle.create_trial("tuner0")).status != kt.engine.trial.TrialStatus.STOPPED:
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        trial.status = kt.engine.trial.TrialStatus.COMPLETED
        oracle.end_trial(trial)
        created += 1
    assert created == 20


@pytest.mark.slow
def test_three_trial_keras_tuner_study_with_an_injected_failure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = tiny_config(tmp_path, name="kt", trials=3, engine="keras-tuner", tuner="random", seed=3)
    raw["defaults"]["input_policy"] = "variable_padded"
    raw["space"] = {"head": {"choices": ["spp", "flatten"]}, "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}}
    path = tmp_path / "kt.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["--config", str(path)]) == 0
    study = optuna.load_study(study_name="kt", storage=raw["study"]["storage"])
    assert {t.user_attrs["outcome"] for t in study.trials} == {"ok", "shape_error"}
    by_head = {(t.params["head"], t.user_attrs["outcome"]) for t in study.trials}
    assert ("flatten", "shape_error") in by_head and ("spp", "ok") in by_head  # the injected failure
    assert len(study.trials) == 3 and all(t.user_attrs["engine"] == "keras-tuner" for t in study.trials)
    client = MlflowClient(raw["study"]["tracking_uri"])
    runs = client.search_runs([client.get_experiment_by_name("kt").experiment_id])
    trials = [r for r in runs if r.data.tags.get("spp_search.role") == "trial"]
    assert len(trials) == 3 and sum(r.data.tags.get("spp_search.role") == "study" for r in runs) == 1
    for run in trials:
        status = {"ok": "FINISHED", "shape_error": "FAILED"}[run.data.tags["outcome"]]
        assert run.info.status == status and run.data.params["engine"] == "keras-tuner"
    assert (tmp_path / "kt_projects" / "kt" / "oracle.json").is_file()
    assert main(["export-best", "--config", str(path), "--out", str(tmp_path / "best.yaml")]) == 0
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert best["defaults"]["head"] == "spp" and best["result"]["study"] == "kt"
    assert main(["--config", str(path)]) == 0  # resume: nothing left to run
    assert len(optuna.load_study(study_name="kt", storage=raw["study"]["storage"]).trials) == 3


def _result(outcome: str, **kw):
    from spp_search.trial.outcomes import Outcome
    from spp_search.trial.run import TrialResult

    return TrialResult(outcome=Outcome(outcome), **kw)


@pytest.mark.parametrize(
    ("outcome", "state", "constraints"),
    [
        ("ok", "COMPLETE", {}),
        ("diverged_nan", "PRUNED", {}),
        ("shape_error", "PRUNED", {"deterministic_failure": 1.0}),
        ("oom_gpu", "PRUNED", {"deterministic_failure": 1.0}),
        ("crash", "FAIL", {}),
    ],
)
def test_keras_tuner_trials_are_recorded_as_the_optuna_engine_records_them(outcome, state, constraints):
    """KerasTuner's mirror used to record deterministic failures as FAIL (Optuna's engine: PRUNED
    and infeasible), so report and importances saw other states per engine."""
    from spp_search.study.keras_tuner import mirrored_trial
    from spp_search.study.recording import recorded_state

    config = build_config({"space": SPACE})
    result = _result(outcome, value=0.9 if outcome == "ok" else None, failed_epoch=1 if outcome != "ok" else None)
    params = {"input_policy": "variable_padded", "learning_rate": 0.005, "batch_size": 8}
    frozen = mirrored_trial(config, params, result, {12: 0.5}, {"engine": "keras-tuner"})
    assert frozen.state.name == state and frozen.constraints == constraints
    assert (frozen.state, frozen.constraints) == recorded_state(result)
    assert frozen.user_attrs["outcome"] == outcome
    if outcome == "diverged_nan":
        # 0.0 at the validation of the round it diverged in (the default budget: every 12 steps)
        assert frozen.intermediate_values == {12: 0.5, 24: 0.0}


def test_the_retried_tag_counts_attempts_from_one():
    """Both engines decide a retry by one rule (recording.wants_retry)."""
    from spp_search.study.recording import wants_retry

    crash = _result("crash")
    assert [wants_retry(crash, attempt, max_retries=2) for attempt in (1, 2, 3)] == [True, True, False]
    assert not wants_retry(_result("shape_error"), 1, max_retries=2)


def test_a_parent_run_of_a_study_others_still_run_stays_open(tmp_path):
    """close_study(status=RUNNING) used to end the parent run with status RUNNING (an end time on a
    run that is not over); now it is left open for the last driver."""
    from spp_search.study.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path}/m.db", "open")
    parent = tracker.open_study({}, {})
    tracker.close_study({"trials_finished": 3}, "RUNNING")
    run = tracker.client.get_run(parent)
    assert run.info.status == "RUNNING" and run.info.end_time is None
    tracker.close_study({"trials_finished": 5}, "FINISHED")
    assert tracker.client.get_run(parent).info.status == "FINISHED"


@pytest.mark.slow
def test_keras_tuner_closes_orphan_runs_left_by_a_killed_run(tmp_path, monkeypatch):
    from spp_search.study.tracking import Tracker

    monkeypatch.chdir(tmp_path)
    raw = tiny_config(tmp_path, name="ktorphan", trials=1, engine="keras-tuner", tuner="random")
    path = tmp_path / "kt.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    tracker = Tracker(raw["study"]["tracking_uri"], "ktorphan")
    tracker.open_study({}, {})
    orphan = tracker.start_trial(99, {"levels": [1]}, {})  # a trial run left RUNNING by a SIGKILLed driver
    assert main(["--config", str(path)]) == 0
    run = MlflowClient(raw["study"]["tracking_uri"]).get_run(orphan)
    assert run.info.status == "KILLED" and run.data.tags["outcome"] == "interrupted"
