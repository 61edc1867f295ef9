"""Ablation configs: arms, one-factor-at-a-time, factorial; derived space; errors."""

from __future__ import annotations

import optuna
import pytest

from spp_search.config.ablation import arms, space_for
from spp_search.config.factors import default_factors
from spp_search.config.settings import build_config
from spp_search.infra.errors import ConfigError
from spp_search.study.budget import enqueue_arms


def test_named_arms_vary_and_factorial_expand():
    configs, repeats = arms(
        {
            "repeats": 2,
            "arms": {"no_spp": {"levels": [1]}},
            "vary": {"pooling": ["avg"]},
            "factorial": {"spp_impl": ["floor_ceil", "round_bins"], "image_size": [16, 64]},
        }
    )
    names = [a.name for a in configs]
    assert repeats == 2 and names[:3] == ["no_spp", "baseline", "pooling=avg"]
    assert len(configs) == 3 + 4 and "spp_impl=round_bins image_size=16" in names
    assert configs[0].overrides == {"levels": (1,)}


def test_derived_space_and_enqueue_reproduce_each_arm():
    configs, repeats = arms(
        {
            "repeats": 2,
            "arms": {"a": {"levels": [1]}, "b": {"levels": [1, 2, 4], "input_policy": "multi_size"}},
        }
    )
    defaults = default_factors()
    space = space_for(configs, defaults)
    assert space == {
        "levels": {"choices": [[1], [1, 2, 4]]},
        "input_policy": {"choices": ["fixed", "multi_size"]},
    }
    config = build_config(
        {
            "ablation": {
                "repeats": 2,
                "arms": {"a": {"levels": [1]}, "b": {"levels": [1, 2, 4], "input_policy": "multi_size"}},
            }
        }
    )
    assert config.study.trials == 4 and config.study.pruner == "none"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    assert config.arms == tuple(configs) and config.repeats == repeats  # parsed once, kept on the config
    assert enqueue_arms(study, config.arms, config.repeats, defaults, config.space.names) == 4
    seen = []
    for _ in range(4):
        trial = study.ask()
        seen.append((trial.user_attrs["arm"], config.space.suggest(trial, defaults)["input_policy"]))
        study.tell(trial, 0.0)
    assert seen == [("a", "fixed"), ("b", "multi_size")] * 2


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"ablation": {}}, "define arms, vary or factorial"),
        ({"ablation": {"repeats": 0, "arms": {"a": {}}}}, "`ablation.repeats`"),
        ({"ablation": {"arms": {"a": {"levels": [0]}}}}, "`levels` must hold only positive"),
        ({"ablation": {"vary": {"pooling": "avg"}}}, "non-empty list"),
        ({"ablation": {"seeds": 3}}, "`ablation.seeds`"),
        (
            {"ablation": {"arms": {"a": {}}}, "space": {"pooling": {"choices": ["max"]}}},
            "be absent in an ablation",
        ),
    ],
)
def test_bad_ablations(raw, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_config(raw)
