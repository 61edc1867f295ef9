"""The declarative space: Optuna suggestions, conditions, round trips, enqueue params."""

from __future__ import annotations

import optuna
import yaml

from spp_search.config.factors import default_factors
from spp_search.config.settings import build_config
from spp_search.config.space import SearchSpace

SPACE = {
    "levels": {"choices": [[1], [1, 2, 4], [1, 2, 3, 6]]},
    "input_policy": {"choices": ["fixed", "variable_padded"]},
    "preprocessing": {"choices": ["resize", "letterbox"], "when": {"input_policy": ["fixed"]}},
    "learning_rate": {"low": 1e-4, "high": 0.3, "log": True},
    "batch_size": {"low": 8, "high": 64, "step": 8},
}


def _study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))


def test_suggest_gives_valid_factor_values_and_respects_conditions():
    space, study = SearchSpace.from_dict(SPACE), _study()
    seen_padded = False
    for _ in range(40):
        trial = study.ask()
        factors = space.suggest(trial, default_factors())
        assert factors["levels"] in [(1,), (1, 2, 4), (1, 2, 3, 6)]
        assert 1e-4 <= factors["learning_rate"] <= 0.3
        assert factors["batch_size"] % 8 == 0 and isinstance(factors["batch_size"], int)
        if factors["input_policy"] == "variable_padded":
            seen_padded = True
            assert "preprocessing" not in trial.params  # inactive: not sampled, default kept
            assert factors["preprocessing"] == default_factors()["preprocessing"]
        study.tell(trial, 0.5)
    assert seen_padded
    assert study.trials[0].params["levels"] in ("1", "1,2,4", "1,2,3,6")  # labels, not lists


def test_to_dict_round_trips_through_yaml():
    space = SearchSpace.from_dict(SPACE)
    again = SearchSpace.from_dict(yaml.safe_load(yaml.safe_dump(space.to_dict(), sort_keys=False)))
    assert again == space


def test_params_for_reproduces_factors_when_enqueued():
    space, study = SearchSpace.from_dict(SPACE), _study()
    wanted = {
        **default_factors(),
        "levels": (1, 2, 3, 6),
        "input_policy": "fixed",
        "preprocessing": "letterbox",
        "learning_rate": 0.01,
        "batch_size": 24,
    }
    study.enqueue_trial(space.params_for(wanted))
    assert space.suggest(study.ask(), default_factors()) == wanted


def test_config_space_is_checked_by_factor():
    config = build_config({"space": SPACE})
    assert config.space.names == tuple(SPACE)
