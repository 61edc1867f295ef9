"""``train`` (and ``export-best --train``): retrain a fully fixed config, save the model, log it.

The config is an exported best (``best.yaml``), any config with an empty ``space``, or a study's
best trial. The training is an MLflow run in the study's experiment (``registry.py``: params,
datasets, per-epoch metrics, the model in MLflow's Keras flavour, optionally registered).
"""

from __future__ import annotations

from pathlib import Path

from spp_search import backends
from spp_search.backends.devices import resolve_device
from spp_search.config.schedule import Budget
from spp_search.config.settings import build_config, read_file
from spp_search.infra.errors import ConfigError, must
from spp_search.infra.files import check_writable
from spp_search.infra.process import native_stderr_quiet
from spp_search.infra.redaction import redact_cut
from spp_search.study.runs_view import next_steps


def check_model_out(out: Path) -> None:
    """The model file's name and folder, checked before anything is trained or logged."""
    if out.suffix != ".keras":
        raise ConfigError(must("out", "end in .keras", str(out), "E.g. --out model.keras."))
    if not out.parent.resolve().is_dir():
        raise ConfigError(must("out", "be in an existing folder", str(out), "Create the folder first."))
    check_writable(out.parent.resolve(), "out", str(out))


def from_file(path: Path, study_name: str | None, tracking: str | None) -> tuple[dict, str | None, str | None]:
    """A config file to retrain, with the experiment (study) and tracking URI its runs go to:
    the options given, else what an exported best records (its source study, its tracking URI)."""
    raw = read_file(path)
    source, study = raw.get("result") or {}, raw.get("study") or {}
    return raw, study_name or source.get("study") or study.get("name"), tracking or study.get("tracking_uri")


def retrain(
    raw: dict,
    out: Path,
    *,
    tracking: str | None,
    experiment: str | None,
    epochs: int | None = None,
    device: str | None = None,
    backend: str | None = None,
    register: str | None = None,
) -> int:
    """Train the config ``raw`` into ``out``, as a run of ``experiment`` at ``tracking``."""
    source = raw.get("result") or {}
    if epochs is not None and not 1 <= epochs <= 10_000:
        raise ConfigError(
            must("epochs", "be an integer in [1, 10000]", epochs, "Use e.g. --epochs 6, or leave it out.")
        )
    if tracking and "***" in tracking:
        tracking = None  # a redacted URL from a stored config: the default, unless given
    config = build_config(raw, {"study.device": device, "study.backend": backend, "study.tracking_uri": tracking})
    backend = backends.require(backends.resolve(config.study.backend))
    device, _ = resolve_device(config.study.device, backend)
    backends.select(backend)  # before Keras is imported below
    with native_stderr_quiet("train"):  # TensorFlow's C++ log lines (import, devices) to a file
        from spp_search.results import registry
        from spp_search.study.tracking import Tracker
        from spp_search.trial.training import train_config

    if config.space.params:  # checked by train_config too, but before a run is created here
        fix = "Export one with `python study.py export-best --out best.yaml`."
        raise ConfigError(must("config", "fix every factor (an empty `space`)", f"space={config.space.names}", fix))
    trial_budget = config.study.budget  # the study's: what the exported trial trained
    budget = Budget.of_epochs(epochs) if epochs is not None else trial_budget
    tracker = Tracker(config.study.tracking_uri, experiment or config.study.name)
    run_id = registry.start_training(tracker, config, source, backend, budget)
    try:
        with native_stderr_quiet("train"):  # TensorFlow's C++ log lines to a file, not the console
            metrics, model, example = train_config(
                config, out, device, budget, backend, reporter=registry.EpochLogger(tracker, run_id)
            )
            numbers = {"val_accuracy": metrics["val_accuracy"], "steps": metrics["steps"]}
            if metrics.get("val_loss") is not None:
                numbers["val_loss"] = metrics["val_loss"]
            logged = registry.log_model(tracker, run_id, model, config, example, register, source, numbers)
    except BaseException as exc:
        tracker.client.set_tag(run_id, "error_message", redact_cut(f"{type(exc).__name__}: {exc}", 500))
        tracker.end_run(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    if source.get("val_accuracy") is not None:
        tracker.client.log_metric(run_id, "source_val_accuracy", float(source["val_accuracy"]))
    tracker.end_run(run_id)
    print(
        f"wrote {out}: val_accuracy {metrics['val_accuracy']:.4f} after {metrics['steps']} optimizer steps"
        f" ({budget.describe()}), input {metrics['input_shape']}"
    )
    if source.get("val_accuracy") is not None:
        same = "the same budget" if budget == trial_budget else f"{trial_budget.describe()}: not the same training"
        print(f"the exported trial reached {source['val_accuracy']:.4f} in {same}")
    print(f"MLflow: run {run_id} in experiment {tracker.study_name!r}, model {logged['model_uri']}")
    if logged["version"] is not None:
        print(
            f"registered {register!r} version {logged['version']} (alias {registry.ALIAS}): "
            f"models:/{register}@{registry.ALIAS}"
        )
    for line in next_steps(
        tracker.tracking_uri,
        tracker.experiment_id,
        f"python -c \"import spp_search, keras; keras.saving.load_model('{out}')\"",
    ):
        print(line)
    return 0
