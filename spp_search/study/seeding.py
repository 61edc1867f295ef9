"""Seeds of a study: the sampler's (one per driver), the pruner, and each trial's training seed.

A study is reproducible from its ``seed``: a single driver samples with it, trial ``n`` trains
with ``seed + n`` (its weights, its batch order, its data augmentation). Several drivers sharing
a storage each take a different sampler seed (``driver_seed``), or they would all propose the
same configurations.
"""

from __future__ import annotations

import time

import optuna

from spp_search.config.settings import StudyConfig
from spp_search.study.liveness import WORKER_ID

DRIVER_PREFIX = "driver:"


def trial_seed(config: StudyConfig, number: int) -> int:
    """The seed trial ``number`` trains with (and an exported best retrains with)."""
    return config.study.seed + number


def make_sampler(config: StudyConfig, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded with ``seed`` (a driver's own, see ``driver_seed``)."""
    seed = config.study.seed if seed is None else seed
    if config.study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(config: StudyConfig) -> optuna.pruners.BasePruner:
    """Median pruning after 5 trials, never at a trial's first validation (``Budget.warmup``,
    in the keys trials report under: steps trained, or epochs), or none (``study.pruner: none``)."""
    if config.study.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=config.study.budget.warmup)


def driver_seed(study: optuna.Study, base_seed: int, driver: str = WORKER_ID) -> int:
    """This driver's sampler seed: ``base_seed`` for the study's first driver, another for each
    later one, so drivers sharing a storage do not propose the same configurations (with one seed,
    RandomSampler's sequences and TPE's start-up trials were identical in every driver).

    Each driver registers under its own key in the study's user attributes (an upsert per key, no
    read-modify-write) and takes its rank among the registered drivers by registration time: two
    drivers starting together both see both keys, in the same order. A single driver, the first,
    keeps ``base_seed`` (reproducible); asking again returns the same seed.
    """
    key = DRIVER_PREFIX + driver
    if key not in study.user_attrs:
        study.set_user_attr(key, time.time())
    drivers = sorted((when, name) for name, when in study.user_attrs.items() if name.startswith(DRIVER_PREFIX))
    rank = [name for _, name in drivers].index(key)
    return base_seed if rank == 0 else (base_seed + 1_000_003 * rank) % (2**32)
