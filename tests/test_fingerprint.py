"""Resuming a study: the same experiment resumes after an upgrade; a real change is refused,
naming what changed (``config/fingerprint.py``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import optuna
import pytest

from spp_search.config import factors
from spp_search.config.factors import FACTORS, Factor, one_of
from spp_search.config.fingerprint import differences, fingerprint
from spp_search.config.settings import build_config, load_config, shipped_experiment
from spp_search.infra.errors import ConfigError
from spp_search.study.lifecycle import open_study

optuna.logging.set_verbosity(optuna.logging.WARNING)
OLD_MAIN = Path(__file__).parent / "data" / "study_attrs_556c00b.json"


def _raw(tmp_path) -> dict:
    return {
        "study": {"name": "s", "storage": f"sqlite:///{tmp_path}/o.db"},
        "defaults": {"width": 8},
        "space": {"levels": {"choices": [[1], [1, 2]]}},
    }


def test_a_new_factor_at_its_default_keeps_every_fingerprint_and_the_study_resumes(tmp_path, monkeypatch):
    before = build_config(_raw(tmp_path))
    open_study(before)
    monkeypatch.setitem(FACTORS, "new_knob", Factor("off", "a factor added by an upgrade", one_of(("off", "on"))))
    after = build_config(_raw(tmp_path))
    assert after.defaults["new_knob"] == "off"
    assert fingerprint(after) == fingerprint(before)
    open_study(after)  # resumes


def test_a_new_factor_set_away_from_its_default_is_a_change(tmp_path, monkeypatch):
    open_study(build_config(_raw(tmp_path)))
    monkeypatch.setitem(FACTORS, "new_knob", Factor("off", "a factor added by an upgrade", one_of(("off", "on"))))
    raw = _raw(tmp_path)
    raw["defaults"]["new_knob"] = "on"
    with pytest.raises(ConfigError, match=r"defaults\.new_knob \(unset -> \"on\"\)"):
        open_study(build_config(raw))


def test_a_changed_searched_choice_is_refused_naming_it(tmp_path):
    open_study(build_config(_raw(tmp_path)))
    raw = _raw(tmp_path)
    raw["space"]["levels"]["choices"].append([1, 2, 4])
    with pytest.raises(ConfigError, match=r"It differs in space\.levels") as info:
        open_study(build_config(raw))
    assert str(info.value).count("\n") == 0 and "Use a new --study-name" in str(info.value)


def test_a_changed_built_in_default_is_refused_naming_it(tmp_path, monkeypatch):
    """A study that relied on a default must not resume when an upgrade changes that default."""
    open_study(build_config(_raw(tmp_path)))
    changed = dataclasses.replace(FACTORS["learning_rate"], default=1e-3)
    monkeypatch.setitem(factors.FACTORS, "learning_rate", changed)
    with pytest.raises(ConfigError, match=r"defaults\.learning_rate \(0\.003 -> 0\.001\)"):
        open_study(build_config(_raw(tmp_path)))


def test_places_and_sizes_are_not_part_of_the_experiment(tmp_path):
    base = build_config(_raw(tmp_path))
    moved = build_config({**_raw(tmp_path), "study": {**_raw(tmp_path)["study"], "trials": 7, "backend": "jax"}})
    assert differences(base.to_dict(), moved) == [] and fingerprint(base) == fingerprint(moved)


def test_a_study_created_by_the_old_main_resumes(tmp_path):
    """The user attributes a study created before the rooms stored (default experiment, 556c00b)."""
    stored = json.loads(OLD_MAIN.read_text())
    config = load_config(shipped_experiment(), {"study.storage": f"sqlite:///{tmp_path}/o.db"})
    study = optuna.create_study(study_name=config.study.name, storage=config.study.storage, direction="maximize")
    study.set_user_attr("fingerprint", stored["fingerprint"])
    study.set_user_attr("config", stored["config"])
    open_study(config)  # resumes
    other = load_config(shipped_experiment(), {"study.storage": config.study.storage, "study.seed": 1})
    with pytest.raises(ConfigError, match=r"study\.seed \(0 -> 1\)"):
        open_study(other)
