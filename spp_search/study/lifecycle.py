"""A study's start and end, shared by both engines: open (or resume) it, open its MLflow parent
run, and close both with the study's totals and best trial."""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from collections import Counter
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState
from rich.console import Console

from spp_search.config.fingerprint import differences, fingerprint
from spp_search.config.schedule import Budget
from spp_search.config.settings import StudyConfig, StudySettings
from spp_search.infra.errors import ConfigError, must
from spp_search.infra.redaction import redact
from spp_search.infra.storage import make_storage
from spp_search.study import budget, runs_view
from spp_search.study.liveness import Liveness
from spp_search.study.progress import summary_table
from spp_search.study.runs_view import describe
from spp_search.study.seeding import make_pruner, make_sampler
from spp_search.study.tracking import Tracker
from spp_search.trial.outcomes import Outcome


def open_study(config: StudyConfig, liveness: Liveness | None = None) -> optuna.Study:
    """Create the study, or load it if it exists and was made from the same experiment
    (``config.fingerprint``); a one-line ``ConfigError`` naming what differs otherwise.

    ``liveness`` gets the storage (its heartbeats) and is the storage's stale-trial callback.
    """
    storage = make_storage(config.study.storage, liveness.on_stale if liveness else None)
    if liveness is not None:
        liveness.storage = storage
    study = optuna.create_study(
        study_name=config.study.name,
        storage=storage,
        direction="maximize",
        sampler=make_sampler(config),
        pruner=make_pruner(config),
        load_if_exists=True,
    )
    if "fingerprint" not in study.user_attrs:
        study.set_user_attr("fingerprint", fingerprint(config))
        study.set_user_attr("config", json.loads(redact(json.dumps(config.to_dict(), default=list))))
        return study
    kept = resumed(study, config)  # the study's own epochs, when it was made with them
    changed = differences(study.user_attrs.get("config") or {}, kept)
    if changed:
        fix = f"It differs in {', '.join(changed)}. Use a new --study-name, or rerun with the original config."
        epochs = _stored_epochs(study)
        if epochs and not config.study.epochs:  # made with an epoch budget (every study before steps)
            fix += f" It trains {epochs} epochs per trial: add --epochs {epochs} to resume it."
        rule = "name a study made from the same config (data, defaults, space, seed)"
        raise ConfigError(must("study-name", rule, config.study.name, fix))
    study.pruner = make_pruner(kept)  # its warm-up in the keys the study reports under
    return study


def _stored_epochs(study: optuna.Study) -> int | None:
    return ((study.user_attrs.get("config") or {}).get("study") or {}).get("epochs")


def resumed(study: optuna.Study, config: StudyConfig) -> StudyConfig:
    """``config`` with the study's own epoch budget when the study was made with one (every study
    made before budgets in steps) and ``config`` asks for the default step budget: resuming such
    a study with ``python study.py`` keeps training it as it was trained. Any other budget is
    ``config``'s (and a different one is a difference that ``open_study`` refuses)."""
    epochs, s = _stored_epochs(study), config.study
    if not epochs or s.epochs or s.budget != Budget():
        return config
    return dataclasses.replace(config, study=dataclasses.replace(s, epochs=int(epochs)))


def start_tracking(
    study: optuna.Study, config: StudyConfig, device: str, data_check: dict | None, extra: dict | None = None
) -> Tracker:
    """The study's MLflow experiment and parent run (params: the study's settings, the device,
    the data and ``extra``; each trial's factors are on its own run), with the folder's data check;
    the report's claims read what the data held (band counts, classes) from the study's attributes."""
    study.set_metric_names(["val_accuracy"])  # the objective's name in Optuna and optuna-dashboard
    tracker = Tracker(config.study.tracking_uri, config.study.name)
    tracker.open_study(config.to_dict(), study_params(config, device, extra), config.space.names)
    tracker.log_data_check(data_check)
    if data_check is not None:
        study.set_user_attr("data_bands", data_check["bands"])
        study.set_user_attr("data_classes", len(data_check["classes"]))
    return tracker


STUDY_PARAMS = ("trials", "engine", "sampler", "pruner", "seed", "workers", "isolation", "max_retries")


def study_params(config: StudyConfig, device: str, extra: dict | None = None) -> dict[str, object]:
    """The parent run's params: how the study runs and what it searches (its trials hold the factors)."""
    s = config.study
    params: dict[str, object] = {name: getattr(s, name) for name in STUDY_PARAMS}
    params.update(device=device, backend=s.backend, searched=",".join(config.space.names) or "none")
    params.update(s.budget.params())
    params["data"] = redact(str(config.data.source))
    params["host_memory_budget"], params["gpu_memory_budget"] = s.host_memory_budget, s.gpu_memory_budget
    return {**params, **(extra or {})}


@dataclass
class StudySummary:
    outcomes: Counter
    best: tuple[int, float, str] | None
    trials_run: int


def best_of(study: optuna.Study, names: tuple[str, ...]) -> tuple[int, float, str] | None:
    """(number, value, description) of the best ``ok`` trial, or None."""
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("outcome") == Outcome.OK.value
    ]
    if not done:
        return None
    best = max(done, key=lambda t: t.value)
    return best.number, best.value, describe(best.user_attrs["factors"], names)


def close_study(
    study, tracker, console: Console, names: tuple[str, ...], status: str, start: float, storage: str = ""
) -> StudySummary:
    """End the parent MLflow run with the study's totals and print the outcome table and best
    trial (both engines, whatever stopped them)."""
    finished = budget.counted_trials(study)
    outcomes = Counter(budget.outcome_of(t) for t in finished)
    best = best_of(study, names)
    totals = {"trials_finished": len(finished), "best_val_accuracy": best[1] if best else None}
    totals.update({f"trials_{outcome}": count for outcome, count in outcomes.items()})
    note = runs_view.study_note(dict(outcomes), best, int(study.user_attrs.get("total_trials", len(finished))))
    tracker.close_study(totals, status, note)
    console.print(summary_table(outcomes, time.perf_counter() - start))
    if best:
        console.print(f"best: trial {best[0]}, val_accuracy {best[1]:.4f}: {best[2]}")
    for line in end_lines(tracker, storage, status):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return StudySummary(outcomes, best, len(finished))


def end_lines(tracker, storage: str, status: str) -> list[str]:
    """Where the study's records are and what to run next (``run``, ``ablate``, ``worker``)."""
    name = tracker.study_name
    options = f"--study-name {shlex.quote(name)}"
    if storage and storage != StudySettings.storage:
        options += f" --storage {shlex.quote(redact(storage))}"
    if tracker.tracking_uri != StudySettings.tracking_uri:
        options += f" --tracking-uri {shlex.quote(redact(tracker.tracking_uri))}"
    done = "finished" if status == "FINISHED" else f"stopped ({status.lower()}; rerun the command to resume)"
    lines = [
        f"study {name!r} {done}: trials in {redact(storage) or 'its storage'}, runs in {redact(tracker.tracking_uri)}"
    ]
    lines += runs_view.next_steps(
        tracker.tracking_uri,
        tracker.experiment_id,
        f"python study.py report {options}   (then: export-best {options} --out best.yaml)",
    )
    return lines


def live_run_ids(study: optuna.Study) -> set[str]:
    """MLflow runs of trials still RUNNING in the storage (another worker may own them)."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return {t.user_attrs["mlflow_run_id"] for t in running if "mlflow_run_id" in t.user_attrs}
