"""Config loading: defaults, the shipped experiments, overrides, and one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spp_search.config.factors import FACTORS
from spp_search.config.fingerprint import fingerprint
from spp_search.config.settings import build_config, load_config
from spp_search.infra.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_builtin_defaults_cover_every_factor():
    config = build_config({})
    assert set(config.defaults) == set(FACTORS)
    assert config.study.trials == 50 and config.space.names == ()


def test_default_experiment_loads_and_searches_the_issue_factors():
    config = load_config(ROOT / "experiments" / "default.yaml")
    assert {"levels", "pooling", "input_policy", "preprocessing", "learning_rate", "batch_size"} <= set(
        config.space.names
    )
    levels = next(p for p in config.space.params if p.name == "levels")
    assert (1, 2, 4, 8) in levels.choices and (1,) in levels.choices


def test_overrides_win_and_none_means_not_given(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"study": {"trials": 7, "seed": 3}}))
    config = load_config(path, {"study.trials": 9, "study.seed": None, "data.source": "synthetic"})
    assert (config.study.trials, config.study.seed) == (9, 3)


_SPACE = {"pooling": {"choices": ["max"]}, "learning_rate": {"low": 1e-3, "high": 1e-1, "log": True}}


def test_enqueued_configurations_become_optuna_params():
    raw = {
        "space": {**_SPACE, "levels": {"choices": [[1], [1, 2]]}},
        "enqueue": [{"levels": [1, 2]}, {"learning_rate": 0.01}],
    }
    config = build_config(raw)
    assert config.space.enqueued_params(list(config.enqueue)) == ({"levels": "1,2"}, {"learning_rate": 0.01})
    assert build_config(config.to_dict()).enqueue == config.enqueue  # stored in the study, read back


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"study": {"trails": 5}}, "study.trails"),
        ({"studies": {}}, "config section"),
        ({"study": {"trials": "many"}}, "type int"),
        ({"study": {"trials": 0}}, r"`trials` must be an integer in \[1, 10000\]"),
        ({"study": {"sampler": "grid"}}, "`sampler`"),
        ({"study": {"device": "tpu"}}, "`device`"),
        ({"study": {"backend": "torch"}}, "`backend` must be one of"),
        ({"defaults": {"mixed_precision": "float16"}}, "`mixed_precision` must be one of"),
        ({"defaults": {"jit_compile": "yes"}}, "`jit_compile` must be auto, true or false"),
        ({"data": {"val_fraction": 1.5}}, "`val_fraction`"),
        ({"data": {"synthetic": {"bands": 0}}}, "`bands`"),
        ({"data": {"synthetic": {"colour": 1}}}, "data.synthetic.colour"),
        ({"data": {"source": "/no/such/folder"}}, "`data` must be an existing folder"),
        ({"defaults": {"pooling": "min"}}, "`pooling` must be one of"),
        ({"defaults": {"levels": [0, 1]}}, "`levels` must hold only positive"),
        ({"defaults": {"lr": 0.1}}, "`factor` must be one of"),
        ({"defaults": {"batch_size": 0}}, "`batch_size`"),
        ({"space": {"levels": {"choices": [[1], [2, 2]]}}}, "distinct"),
        ({"space": {"levels": {"options": [[1]]}}}, "use only keys"),
        ({"space": {"learning_rate": {"low": 0.1}}}, "both `low` and `high`"),
        ({"space": {"learning_rate": {"low": 0.1, "high": 0.01}}}, "be below high"),
        (
            {"space": {"preprocessing": {"choices": ["resize"], "when": {"input_policy": ["fixed"]}}}},
            "searched before it",
        ),
        ({"space": {"pooling": {"choices": []}}}, "non-empty list"),
        ({"space": _SPACE, "enqueue": {"pooling": "max"}}, "`enqueue` must be a list"),
        ({"space": _SPACE, "enqueue": [{"levels": [1, 2]}]}, r"`enqueue\[0\].levels` must name a factor of `space`"),
        ({"space": _SPACE, "enqueue": [{"pooling": "avg"}]}, r"`enqueue\[0\].pooling` must be one of its choices"),
        ({"space": _SPACE, "enqueue": [{"learning_rate": 2.0}]}, "must lie in its range"),
        ({"space": _SPACE, "enqueue": [{}]}, "non-empty mapping"),
        ({"study": {"trials": 1}, "space": _SPACE, "enqueue": [{"pooling": "max"}] * 2}, "at most study.trials"),
        ({"study": {"engine": "keras-tuner"}, "space": _SPACE, "enqueue": [{"pooling": "max"}]}, "optuna engine"),
    ],
)
def test_bad_config_fails_with_one_clear_line(raw, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        build_config(raw)
    message = str(info.value)
    assert "\n" not in message and "but got" in message


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="existing file"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("study: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_default_experiment_lets_keras_compile_the_step():
    """``jit_compile: false`` would run every JAX trial eagerly, op by op (it did, once)."""
    assert load_config(ROOT / "experiments" / "default.yaml").defaults["jit_compile"] == "auto"


def test_old_boolean_mixed_precision_means_float16():
    assert build_config({"defaults": {"mixed_precision": True}}).defaults["mixed_precision"] == "mixed_float16"
    assert build_config({"defaults": {"mixed_precision": False}}).defaults["mixed_precision"] == "float32"


def test_fingerprint_ignores_size_and_places_but_not_the_experiment():
    base = build_config({})
    same = build_config({"study": {"trials": 5, "storage": "sqlite:///x.db"}})
    assert fingerprint(base) == fingerprint(same)
    assert fingerprint(base) == fingerprint(build_config({"study": {"backend": "jax", "device": "gpu"}}))
    assert fingerprint(base) != fingerprint(build_config({"defaults": {"pooling": "avg"}}))
