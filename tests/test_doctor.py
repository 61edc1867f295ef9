"""The doctor: its culprit table, its verdict rule as a table, its command's errors, and real
diagnoses of planted faults (slow)."""

from __future__ import annotations

import json

import optuna
import pytest

from spp_search.doctor.culprits import CULPRITS, VERDICTS, Findings
from spp_search.doctor.verdict import Arm, Seed, at_chance, decide, symptom
from spp_search.trial.outcomes import KINDS

CHANCE, N_VAL = 0.25, 40


def _arm(name, outcomes, value=0.9, culprit=None):
    return Arm(name, {}, culprit, [Seed(o, value if o == "ok" else None) for o in outcomes])


@pytest.mark.parametrize("name", sorted(CULPRITS))
def test_every_culprit_says_what_it_explains_and_how_to_test_it(name):
    culprit = CULPRITS[name]
    symptoms = set(KINDS) | {"at_chance", "ok"}
    assert culprit.symptoms and set(culprit.symptoms) <= symptoms, name
    assert culprit.fix.strip() and culprit.typical.strip(), name
    from spp_search.config.factors import check_factor, resolved

    findings = Findings("ok", resolved({}), probe={"learning_rate": 0.5, "head": {"levels": [1, 2]}})
    arms = culprit.arms(findings)
    assert arms and all(isinstance(a, dict) and a for a in arms), name
    for arm in arms:  # every change is a valid factor value
        for factor, value in arm.items():
            check_factor(factor, value)


def test_the_vocabulary_is_the_issues():
    assert set(VERDICTS) == {
        "layer_bins",
        "layer_static_shape",
        "head_fixed_size",
        "learning_rate",
        "precision",
        "channel_count",
        "channel_order",
        "memory",
        "unreadable_data",
        "none",
        "unknown",
    }


def test_at_chance_uses_the_exact_interval():
    assert at_chance(0.3, CHANCE, N_VAL) and not at_chance(0.6, CHANCE, N_VAL) and at_chance(None, CHANCE, N_VAL)


@pytest.mark.parametrize(
    ("baseline", "arms", "culprit", "confidence"),
    [
        (["ok", "ok", "ok"], [], "none", "high"),
        (["diverged_nan"] * 3, [("learning_rate", ["ok"] * 3)], "learning_rate", "high"),
        (
            ["diverged_nan"] * 3,
            [("precision", ["diverged_nan"] * 3), ("learning_rate", ["ok"] * 3)],
            "learning_rate",
            "high",
        ),
        (["diverged_nan"] * 3, [("learning_rate", ["ok", "ok", "diverged_nan"])], "unknown", "low"),
        (["shape_error"] * 2, [("layer_bins", ["ok"] * 2)], "layer_bins", "medium"),
        (["data_error"] * 3, [], "unknown", "low"),
    ],
)
def test_the_verdict_rule(baseline, arms, culprit, confidence):
    base = _arm("baseline", baseline)
    tried = [_arm(f"{name}:0", outcomes, culprit=name) for name, outcomes in arms]
    verdict = decide(base, tried, CHANCE, N_VAL)
    assert (verdict["culprit"], verdict["confidence"]) == (culprit, confidence)


def test_a_model_at_chance_is_a_symptom_and_an_accuracy_culprit_needs_separated_intervals():
    low = _arm("baseline", ["ok"] * 3, value=0.3)
    assert symptom(low, CHANCE, N_VAL) == "at_chance"
    fixed = Arm("channel_order:0", {}, "channel_order", [Seed("ok", v) for v in (0.9, 0.95, 0.92)])
    assert decide(low, [fixed], CHANCE, N_VAL)["culprit"] == "channel_order"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--model", "nocolon", "--data", "."], "`model` must name a .keras file or a builder function"),
        (["--model", "m:f", "--data", "/no/such/folder"], "`data` must be an existing folder"),
        (["--model", "m:f", "--data", ".", "--seeds", "0"], "`seeds` must be an integer >= 1"),
    ],
)
def test_bad_doctor_input_is_one_line_and_exit_2(argv, words, capsys, tmp_path):
    from spp_search.cli import main

    assert main(["doctor", *argv, "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.parametrize("case", ["adam_lr", "healthy_exact_spp"])
def test_the_doctor_names_the_planted_fault_and_its_fix_trains(case, tmp_path):
    """A planted fault of the zoo named with its fix (which `train` then trains), and a healthy
    control left alone; exit status 0 for both, the record on disk and in MLflow."""
    from mlflow import MlflowClient

    from benchmarks.doctor_zoo.cases import CASES
    from spp_search.cli import main

    chosen = next(c for c in CASES if c.name == case)
    data = chosen.folder(tmp_path / "data")
    argv = ["doctor", "--model", chosen.builder, "--data", str(data), "--out", str(tmp_path / "d"), "--seeds", "2"]
    argv += ["--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--study-name", f"mine-{case}"]
    argv += ["--storage", f"sqlite:///{tmp_path}/o.db"]
    for key, value in chosen.options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    assert main(argv) == 0
    record = json.loads((tmp_path / "d" / "diagnosis.json").read_text())
    assert record["culprit"] == chosen.expected_on("tensorflow")
    assert record["study"] == f"mine-{case}"  # the study options, as on every study command
    assert optuna.load_study(study_name=f"mine-{case}", storage=f"sqlite:///{tmp_path}/o.db").trials
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    parent = client.search_runs(
        [client.get_experiment_by_name(record["study"]).experiment_id], "tags.`spp_search.role` = 'study'"
    )[0]
    assert parent.data.tags["culprit"] == record["culprit"]
    if record["fix"] is not None:
        assert main(["train", "--config", record["fix_path"], "--out", str(tmp_path / "fixed.keras")]) == 0
        assert (tmp_path / "fixed.keras").is_file()
