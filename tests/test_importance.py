"""The report's factor importances are the ones optuna-dashboard shows (one method, named)."""

from __future__ import annotations

import math

import optuna
import pytest


def _study(n: int) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_metric_names(["val_accuracy"])
    for _ in range(n):
        trial = study.ask()
        lr = trial.suggest_float("learning_rate", 1e-4, 1.0, log=True)
        trial.suggest_categorical("pooling", ["max", "avg"])
        study.tell(trial, 1.0 - abs(math.log10(lr) + 2.5) / 4)  # best near 3e-3; pooling irrelevant
    return study


@pytest.mark.parametrize("n", [12, 40])
def test_the_report_and_the_dashboard_rank_the_factors_alike(n):
    """On 6 trials the report gave levels 0.48 (fANOVA) where the dashboard gave learning_rate 0.97."""
    from optuna_dashboard._importance import get_param_importance_from_trials_cache
    from optuna_dashboard._inmemory_cache import InMemoryCache

    from spp_search.results.report import IMPORTANCE, param_importances

    study = _study(n)
    ours = param_importances(study)
    trials = study.get_trials(deepcopy=False)
    theirs = get_param_importance_from_trials_cache(InMemoryCache(), study._storage, study._study_id, 0, trials)
    assert IMPORTANCE == "PED-ANOVA"
    assert {row["name"]: row["importance"] for row in theirs} == pytest.approx(ours)
    assert max(ours, key=ours.get) == "learning_rate"
