"""Each driver of a study samples with its own seed: drivers sharing one storage must not propose
the same configurations (they all used `study.seed`), and a single driver stays reproducible."""

from __future__ import annotations

import optuna

from spp_search.config.settings import build_config
from spp_search.study.lifecycle import open_study
from spp_search.study.seeding import driver_seed


def _config(tmp_path, sampler="random"):
    return build_config({"study": {"storage": f"sqlite:///{tmp_path}/o.db", "seed": 7, "sampler": sampler}})


def test_a_single_driver_keeps_the_study_seed(tmp_path):
    study = open_study(_config(tmp_path))
    assert driver_seed(study, 7, "host:1") == 7


def test_drivers_of_one_study_get_distinct_seeds_and_distinct_proposals(tmp_path):
    config = _config(tmp_path)
    drivers = [open_study(config) for _ in range(3)]
    seeds = [driver_seed(study, 7, f"host:{i}") for i, study in enumerate(drivers)]
    assert seeds[0] == 7 and len(set(seeds)) == 3
    proposals = []
    for study, seed in zip(drivers, seeds, strict=True):
        study.sampler = optuna.samplers.RandomSampler(seed=seed)
        trial = study.ask()
        proposals.append(trial.suggest_float("x", 0, 1))
    assert len(set(proposals)) == 3  # with one seed for all, the three proposals were equal


def test_a_driver_keeps_its_seed_when_it_asks_again(tmp_path):
    study = open_study(_config(tmp_path))
    first = driver_seed(study, 7, "host:1")
    driver_seed(study, 7, "host:2")
    assert driver_seed(study, 7, "host:1") == first  # registration is idempotent per driver
