"""Driving a study from a config: what the ``run``, ``ablate`` and ``worker`` commands do.

Check the data once, choose the backend and device, start the trial runners, and hand them to
the engine (Optuna's trial loop, or KerasTuner); a new study gets its ablation arms or enqueued
configurations first. ``worker`` joins a study another driver started, with the config that
study stored.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console

from spp_search import backends
from spp_search.backends.devices import resolve_device
from spp_search.config.factors import FACTORS
from spp_search.config.settings import StudyConfig, build_config
from spp_search.config.space import SearchSpace
from spp_search.data import datacheck
from spp_search.data.loading import bands_of, classes_of
from spp_search.infra.errors import ConfigError, must
from spp_search.infra.storage import load_study
from spp_search.model.user import MODEL_FACTORS
from spp_search.study import budget, preflight
from spp_search.study.loop import run_study
from spp_search.trial.placement import make_runners

KT_PROJECTS = Path("kt_projects")  # where KerasTuner keeps its projects (one per study)


def prepare(config: StudyConfig):
    """What a new study gets before its tickets: the ablation's arms, or the enqueued configurations."""
    if config.arms:
        return lambda study: budget.enqueue_arms(
            study, config.arms, config.repeats, config.defaults, config.space.names
        )
    if config.enqueue:
        return lambda study: budget.enqueue_configs(study, config.space.enqueued_params(list(config.enqueue)))
    return None


def run(config: StudyConfig, join: bool = False) -> int:
    """Run (``join``: only work on) the study of ``config`` until its total is reached."""
    channel_policy = config.defaults["channel_policy"]
    searched = "channel_policy" in config.space.names
    d = config.data
    checked = datacheck.before_study(d, channel_policy, searched, Console(soft_wrap=True))
    backend = backends.require(backends.resolve(config.study.backend))
    config = dataclasses.replace(config, study=dataclasses.replace(config.study, backend=backend))
    device, gpus = resolve_device(config.study.device, backend)
    preflight.open_stores(config.study.storage, config.study.tracking_uri, config.study.name)  # then the stores
    runners = make_runners(config, device, gpus, backend)
    try:
        config = fit_user_model(config, runners[0], Console(soft_wrap=True))
        if config.study.engine == "keras-tuner":
            backends.select(backend)  # KerasTuner imports Keras (and its backend) in the driver: not before
            from spp_search.study.keras_tuner import run_keras_tuner

            run_keras_tuner(config, runners[:1], device, Console(), KT_PROJECTS, checked)
        else:
            run_study(config, runners, device, Console(), prepare(config), join=join, data_check=checked)
    finally:
        for runner in runners:
            runner.close()
    return 0


def joined_config(study_name: str, storage: str, tracking_uri: str | None, overrides: dict) -> StudyConfig:
    """The config a ``worker`` runs: the one the study stored, with this machine's storage URL,
    tracking URI (the study's, unless it holds a redacted secret) and placement ``overrides``."""
    stored = dict(load_study(study_name, storage).user_attrs.get("config") or {})
    if not stored:
        fix = "Start it with `python study.py run --storage ...` first."
        raise ConfigError(must("study-name", "name a study created by `study.py run`", study_name, fix))
    tracking = tracking_uri or stored["study"]["tracking_uri"]
    if "***" in tracking:
        fix = "Pass --tracking-uri with its credentials."
        raise ConfigError(must("tracking-uri", "be given: the study's holds a secret", tracking, fix))
    return build_config(stored, {"study.storage": storage, "study.tracking_uri": tracking, **overrides})


def fit_user_model(config: StudyConfig, runner, console) -> StudyConfig:
    """A study of the user's own model (``model`` section): check it in a worker before any trial
    (a one-line error, exit 2, for a model the study cannot train) and search only what it takes.

    The network factors a builder does not declare (a ``.keras`` file: all of them) are not
    searched; a compiled model keeps its optimizer (its learning rate too, unless the config sets
    or searches one); a model with a fixed input size trains at that size. The study says so.
    """
    if not config.model.given:
        return config
    data = config.data.for_trial()
    info = runner.call(
        "spp_search.model.user:describe",
        {
            "model": config.model_for_trial(),
            "factors": config.defaults,
            "bands": bands_of(data),
            "num_classes": classes_of(data),
            "factor_names": list(FACTORS),
        },
    )
    unused = [n for n in MODEL_FACTORS if n not in info["accepts"]] + (["optimizer"] if info["compiled"] else [])
    defaults = dict(config.defaults)
    if info["static_size"] is not None:
        defaults["image_size"] = info["static_size"][0]
        unused.append("image_size")
    lr = "its own" if info["compiled"] and not config.lr_given else f"{config.defaults['learning_rate']:g}"
    console.print(
        f"model: {info['source']} ({info['params']} parameters) takes {', '.join(info['accepts']) or 'no factors'}; "
        f"optimizer {info['optimizer'] or config.defaults['optimizer']}, learning rate {lr}",
        markup=False,
        highlight=False,
    )
    dropped = [n for n in unused if n in config.space.names]
    if dropped and not config.arms:
        console.print(f"model: not searched for it: {', '.join(dropped)}", markup=False, highlight=False)
        space = SearchSpace(tuple(p for p in config.space.params if p.name not in dropped))
        config = dataclasses.replace(config, space=space)
    return dataclasses.replace(config, defaults=defaults)
