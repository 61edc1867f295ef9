"""Issue 25: the training budget in optimizer steps (``config/schedule.py``), epochs converted."""

from __future__ import annotations

import pytest

from spp_search.config.schedule import DEFAULT_STEPS, Budget
from spp_search.config.settings import build_config, load_config, shipped_experiment
from spp_search.infra.errors import ConfigError


def test_the_default_study_trains_36_steps_validated_every_12():
    budget = load_config(shipped_experiment()).study.budget
    assert budget == Budget(DEFAULT_STEPS, 3) and budget.in_steps
    assert budget.plan(steps_per_epoch=3) == budget.plan(steps_per_epoch=24) == (3, 12)
    assert [budget.round_key(r) for r in range(3)] == [12, 24, 36] and budget.warmup == 13
    assert budget.describe() == "36 optimizer steps per trial, validated every 12"
    assert budget.params() == {"budget_steps": 36, "eval_every_steps": 12}


def test_an_uneven_budget_is_rounded_up_to_whole_rounds_and_says_so():
    budget = Budget(10, 4)
    assert (budget.rounds, budget.steps_per_round, budget.total_steps) == (4, 3, 12)
    assert "12 optimizer steps" in budget.describe() and "10 rounded up" in budget.describe()
    assert Budget(4, 3).plan(7) == (2, 2)  # never more rounds than fill the budget


def test_epochs_are_passes_over_the_trial_s_own_training_set():
    budget = build_config({"study": {"epochs": 3}}).study.budget
    assert not budget.in_steps and budget.plan(steps_per_epoch=5) == (3, 5)
    assert [budget.round_key(r) for r in range(3)] == [0, 1, 2] and budget.warmup == 1  # as before steps
    assert budget.params() == {"epochs": 3} and budget.total_steps is None


def test_hyperband_resources_are_leading_rounds_of_the_budget():
    assert Budget(36, 3).first_rounds(1) == Budget(12, 1)
    assert Budget.of_epochs(3).first_rounds(1) == Budget.of_epochs(1)


def test_steps_and_epochs_in_one_file_is_an_error_naming_both():
    with pytest.raises(ConfigError, match=r"set steps or epochs, not both.*steps=50, epochs=3"):
        build_config({"study": {"steps": 50, "epochs": 3}})


def test_the_command_line_budget_replaces_the_file_s():
    """`--epochs 5` over the shipped file's `steps: 36` is an epoch budget, and the reverse."""
    assert load_config(shipped_experiment(), {"study.epochs": 5}).study.budget == Budget.of_epochs(5)
    assert build_config({"study": {"epochs": 3}}, {"study.steps": 20}).study.budget == Budget(20, 3)


def test_a_stored_config_reloads_with_its_budget():
    """The config a study stores (workers and resumes read it back) names only the budget in use."""
    for raw in ({"study": {"epochs": 4}}, {"study": {"steps": 60, "evaluations": 5}}):
        config = build_config(raw)
        stored = config.to_dict()["study"]
        assert ("epochs" in stored) != ("steps" in stored)
        assert build_config({"study": stored}).study.budget == config.study.budget


def test_the_pruner_never_prunes_a_trial_at_its_first_validation():
    from spp_search.study.seeding import make_pruner

    assert make_pruner(build_config({})).__dict__["_n_warmup_steps"] == 13
    assert make_pruner(build_config({"study": {"epochs": 3}})).__dict__["_n_warmup_steps"] == 1


def test_a_study_made_with_epochs_resumes_with_them(tmp_path):
    """A study from before step budgets stored `epochs: 3`. `python study.py` (the default step
    budget) resumes it with its own 3 epochs, pruner warm-up included, so its trials stay one
    training; another budget given on purpose is a difference, and the error names the option
    that resumes it."""
    from spp_search.study.lifecycle import open_study, resumed

    storage = {"storage": f"sqlite:///{tmp_path}/o.db"}
    open_study(build_config({"study": {**storage, "epochs": 3}}))
    default = build_config({"study": storage})
    study = open_study(default)
    assert resumed(study, default).study.budget == Budget.of_epochs(3)
    assert study.pruner.__dict__["_n_warmup_steps"] == 1
    with pytest.raises(ConfigError, match=r"study\.epochs \(3 -> unset\).*add --epochs 3 to resume it"):
        open_study(build_config({"study": storage}, {"study.steps": 20}))
    fresh = build_config({"study": {"storage": f"sqlite:///{tmp_path}/new.db"}})
    assert resumed(open_study(fresh), fresh) == fresh  # a new study: the config's budget
