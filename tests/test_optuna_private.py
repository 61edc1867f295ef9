"""Optuna's private API, used only through ``infra/optuna_private.py``: an upgrade that removes
one of its names fails here, naming it."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import optuna
import pytest

from spp_search.infra import optuna_private

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", optuna_private.NAMES)
def test_every_private_name_still_exists(name):
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable module prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
            break
        except ImportError:
            continue
    for attribute in parts[cut:]:
        if inspect.isclass(obj) and attribute.startswith("_") and not hasattr(obj, attribute):
            return _instance_attribute(obj, attribute, name)
        assert hasattr(obj, attribute), f"Optuna {optuna.__version__} has no {name}: fix infra/optuna_private.py"
        obj = getattr(obj, attribute)


def _instance_attribute(cls, attribute: str, name: str) -> None:
    """Instance attributes (``Study._storage``, ``Trial._trial_id``) exist on real objects."""
    study = optuna.create_study()
    obj = {"Study": study, "Trial": study.ask()}[cls.__name__]
    assert hasattr(obj, attribute), f"Optuna {optuna.__version__} has no {name}: fix infra/optuna_private.py"


def test_the_helpers_work_on_a_real_study():
    study = optuna.create_study()
    optuna_private.storage_of(study)  # noqa: B018
    study.enqueue_trial({})
    popped, fresh = study.ask(), study.ask()
    assert optuna_private.is_enqueued(study, popped) and not optuna_private.is_enqueued(study, fresh)
    assert optuna_private.fail_trial(study, popped).state is optuna.trial.TrialState.FAIL
    assert optuna_private.study_id(study) == 0 and optuna_private.trial_id(fresh) == 1


def test_no_other_module_touches_optunas_private_api():
    pattern = ("._storage", "._trial_id", "._study_id", "storages._")
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "spp_search").rglob("*.py")
        if p.name != "optuna_private.py" and any(s in p.read_text() for s in pattern)
    ]
    assert not offenders, offenders
