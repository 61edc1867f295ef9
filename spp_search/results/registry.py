"""The retrained model the way MLflow users expect it: a run, the Keras flavour, the registry.

``train`` (and ``export-best --train``) opens a training run in the study's experiment (params,
the datasets, per-epoch metrics as it trains), then logs the model with MLflow's Keras flavour:
a signature whose height and width are -1 when the model takes any size (our size-agnostic SPP
heads) and an input example. ``--register NAME`` registers it as a model version with a
description, metrics, tags (study, trial, config artifact) and the alias ``champion``.

Loading it: ``import spp_search`` (registers the SPP layers with Keras), then
``mlflow.pyfunc.load_model(uri)`` or ``mlflow.keras.load_model(uri)``; the pyfunc takes a float32
array ``(batch, height, width, bands)`` of raw pixel values.
"""

from __future__ import annotations

import contextlib
import os
from types import SimpleNamespace

import numpy as np
import yaml

from spp_search.infra.redaction import redact
from spp_search.study.tracking import ROLE, STUDY, Tracker

TRAINING = "training"
ALIAS = "champion"  # the registered version a deployment loads: models:/NAME@champion


class EpochLogger:
    """The training's reporter: prints each validation and logs it to the training run (never prunes)."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker, self.run_id = tracker, run_id

    def epoch_end(self, epoch: int, metrics: dict[str, float]) -> bool:
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "steps_trained")
        print(f"after {int(metrics.get('steps_trained', 0))} steps: {shown}")
        self.tracker.log_epoch(self.run_id, epoch, metrics)
        return False


def start_training(tracker: Tracker, config, source: dict, backend: str, budget) -> str:
    """A training run in the study's experiment with every factor, the seed and where the
    configuration came from (study and trial of an exported best) as params and tags."""
    tracker.open_inputs(config.to_dict()["data"])
    tags = {ROLE: TRAINING, STUDY: tracker.study_name}
    if source.get("trial") is not None:
        tags.update({"source_study": str(source.get("study")), "source_trial": str(source["trial"])})
    extra = {"seed": config.study.seed, **budget.params(), "backend": backend}
    return tracker.start_run(f"train-{config.study.name}", dict(config.defaults), extra, tags)


def signature(model, bands: int):
    """Input ``(-1, H, W, bands)`` float32 (-1 for the sizes a size-agnostic model leaves open),
    output ``(-1, classes)`` probabilities."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    _, height, width, _ = model.input_shape
    shape = (-1, height or -1, width or -1, bands)
    classes = model.output_shape[-1]
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float32"), shape)]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, classes))]),
    )


def log_model(
    tracker: Tracker,
    run_id: str,
    model,
    config,
    example: np.ndarray,
    register: str | None,
    source: dict,
    metrics: dict | None = None,
) -> dict:
    """Log ``model`` (Keras flavour) into the run, with ``metrics`` on the logged model; with
    ``register``, a model version with a description (study, trial, outcome), tags, the alias
    ``champion`` and the config as the run's ``config.yaml`` artifact (not a tag). Returns the
    model URI and the version (or None)."""
    import keras
    import mlflow
    from mlflow.models import Model

    tracker.client.log_text(run_id, yaml.safe_dump(_public(config.to_dict()), sort_keys=False), "config.yaml")
    interactive = keras.utils.is_interactive_logging_enabled()
    keras.utils.disable_interactive_logging()  # MLflow predicts on the example: no progress bar
    with _tracking_uri(tracker.tracking_uri), mlflow.start_run(run_id=run_id):
        info = Model.log(  # what mlflow.keras.log_model does, with the folder fix below
            artifact_path=None,
            name="model",
            flavor=_KERAS_FLAVOR,
            model=model,
            signature=signature(model, example.shape[-1]),
            input_example=example,
            # given, not inferred: inferring loads the model in a process without our layers
            pip_requirements=requirements(),
        )
        numbers = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))}
        if numbers:  # shown on the logged model's and the model version's pages
            mlflow.log_metrics(numbers, model_id=info.model_id)
        version = mlflow.register_model(info.model_uri, register).version if register else None
    if interactive:
        keras.utils.enable_interactive_logging()
    if register:
        _describe_version(tracker, register, version, run_id, source, numbers)
    return {"model_uri": info.model_uri, "version": version}


def _describe_version(tracker: Tracker, name: str, version: str, run_id: str, source: dict, numbers: dict) -> None:
    """A registered version that says what it is: description, tags, the ``champion`` alias."""
    client = tracker.client
    origin = f"trial {source['trial']} of study {source['study']!r}" if source.get("study") else "a config file"
    described = f"Retrained from {origin} (outcome ok"
    if source.get("val_accuracy") is not None:
        described += f", val_accuracy {float(source['val_accuracy']):.4f} in the study"
    described += f"); this training: val_accuracy {numbers.get('val_accuracy', float('nan')):.4f}"
    described += f" over {int(numbers.get('steps', 0))} optimizer steps. Config: runs:/{run_id}/config.yaml."
    client.update_model_version(name, version, description=described)
    tags = {
        "study": tracker.study_name,
        "source_study": str(source.get("study", "")),
        "source_trial": str(source.get("trial", "")),
        "config_artifact": f"runs:/{run_id}/config.yaml",
        "run_id": run_id,
        **{k: f"{v:.4f}" for k, v in numbers.items() if k in ("val_accuracy", "val_loss")},
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, ALIAS, version)


@contextlib.contextmanager
def _tracking_uri(uri: str):
    """MLflow's fluent API (``Model.log`` needs it) pointed at ``uri`` for the duration only:
    ``mlflow.set_tracking_uri`` also writes MLFLOW_TRACKING_URI into the environment, which every
    later command in the process, and its child processes, would then take as theirs."""
    import mlflow

    before_env, before = os.environ.get("MLFLOW_TRACKING_URI"), mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
        if before_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before_env


def requirements() -> list[str]:
    """What the logged model needs: Keras and the backend it was trained on (and spp-search,
    whose layers it uses: install it from its source or wheel)."""
    from importlib.metadata import version

    import keras

    backend = keras.backend.backend()
    package = {"tensorflow": "tensorflow", "jax": "jax"}.get(backend, backend)
    return [f"keras=={version('keras')}", f"{package}=={version(package)}"]


def _save_keras(path: str, **kwargs) -> None:
    """``mlflow.keras.save_model`` into a folder it can write: with an input example it writes
    the example before it creates the folder (mlflow/mlflow#16183, open in MLflow 3.17)."""
    import mlflow.keras

    os.makedirs(path, exist_ok=True)
    mlflow.keras.save_model(path=path, **kwargs)


# MLflow's Keras flavour (the model loads with mlflow.keras and mlflow.pyfunc as usual)
_KERAS_FLAVOR = SimpleNamespace(__name__="mlflow.keras", save_model=_save_keras)


def _public(config: dict) -> dict:
    """The config without its storage and tracking URLs (they may hold secrets)."""
    study = {k: v for k, v in config["study"].items() if k not in ("storage", "tracking_uri")}
    return {**config, "study": {**study, "name": redact(study["name"])}}
