"""MLflow tracking: one parent run per study, one child run per trial, explicit terminal states.

Written on ``MlflowClient`` (no global active run): the engine passes run ids around, so several
trials or workers never fight over "the current run". Training code never imports this module.
Every string that may hold a storage URL passes through ``redact`` first.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterable

import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from spp_search.config.factors import param_text
from spp_search.data import datasets
from spp_search.infra.environment import image_tags
from spp_search.infra.redaction import redact, redact_cut
from spp_search.infra.retry import with_retries
from spp_search.study import runs_view
from spp_search.trial import failures
from spp_search.trial.run import TrialResult

ROLE, STUDY, TRIAL = "spp_search.role", "spp_search.study", "spp_search.trial_number"
PARENT = "mlflow.parentRunId"
# MLflow 3's UI opens an experiment by its kind: without it, an experiment of a fresh store opens
# on the GenAI overview ("Traces: 0"); model development opens on the runs table
KIND, MODEL_DEVELOPMENT = "mlflow.experimentKind", "custom_model_development"
BATCH = 900  # MLflow accepts up to 1000 metrics per log_batch call
# System metrics (CPU, host memory, disk, network; GPU memory and utilisation through NVML when a
# GPU is there) of each trial run, sampled every SYSTEM_METRICS_S seconds in the driver: often
# enough to show a memory climb over seconds. MLflow's MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL
# overrides it; SPP_SEARCH_SYSTEM_METRICS=0 turns them off.
SYSTEM_METRICS_S = 0.5


def _now_ms() -> int:
    return int(time.time() * 1000)


class Tracker:
    """Writes a study's runs to one MLflow experiment (named after the study)."""

    def __init__(self, tracking_uri: str, study_name: str) -> None:
        self.tracking_uri = tracking_uri
        self.monitors: dict[str, object] = {}  # run id -> its system-metrics monitor
        self.client = _Retrying(MlflowClient(tracking_uri), redact(tracking_uri))
        self.study_name = study_name
        self.experiment_id = self._experiment(study_name)
        self.parent_id: str | None = None
        self.inputs: list = []  # the study's datasets (datasets.py), logged on every trial run
        self.searched: tuple[str, ...] = ()  # the study's searched factors: columns, run descriptions
        self.numbers: dict[str, int] = {}  # trial run id -> trial number (its name)
        self.factors: dict[str, dict] = {}  # trial run id -> its factors (its description)

    def _experiment(self, name: str) -> str:
        """The study's experiment id, created if missing (another process may create it first)."""
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.tags.get(KIND) != MODEL_DEVELOPMENT:
                self.client.set_experiment_tag(experiment.experiment_id, KIND, MODEL_DEVELOPMENT)
            return experiment.experiment_id
        try:
            return self.client.create_experiment(name, tags={KIND: MODEL_DEVELOPMENT})
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                raise
            return self.client.get_experiment_by_name(name).experiment_id

    def _runs(self, filter_string: str) -> list:
        return self.client.search_runs([self.experiment_id], filter_string, max_results=50000)

    def study_run(self):
        """The study's parent run, or None. The study name is matched here, not in the search's
        filter: a name with a quote (``o'brien``) would end the filter's string and change it."""
        found = [r for r in self._runs(f"tags.`{ROLE}` = 'study'") if r.data.tags.get(STUDY) == self.study_name]
        return found[0] if found else None

    def open_study(self, config: dict, params: dict[str, object], searched: tuple[str, ...] = ()) -> str:
        """Find or create the study's parent run and mark it RUNNING; log config and space.
        ``params``: the study's settings (not a trial's factors); ``searched``: the columns of the
        experiment's saved view (``runs_view``)."""
        self.searched = tuple(searched)
        runs_view.install(self.client, self.experiment_id, self.searched)
        if "data" in config:
            self.open_inputs(config["data"])
        found = self.study_run()
        if found:
            self.parent_id = found.info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
            return self.parent_id
        run = self.client.create_run(
            self.experiment_id, run_name=self.study_name, tags={ROLE: "study", STUDY: self.study_name, **image_tags()}
        )
        self.parent_id = run.info.run_id
        self.client.log_batch(self.parent_id, params=[Param(k, redact(param_text(v))) for k, v in params.items()])
        if self.inputs:  # the runs table shows the study's data on its parent row too
            self.client.log_inputs(self.parent_id, datasets=self.inputs)
        for name, value in (("config.yaml", _redacted(config)), ("space.yaml", config.get("space", {}))):
            # our own dump: MLflow's log_dict sorts keys, and a space's order carries its conditions
            self.client.log_text(self.parent_id, yaml.safe_dump(value, sort_keys=False), name)
        return self.parent_id

    def log_data_check(self, check: dict | None) -> None:
        """The folder check (``datacheck``) as ``data_check.json`` on the parent run: which files
        were left out and why, for whoever reads the study later."""
        if check is not None:
            self.client.log_dict(self.parent_id, check, "data_check.json")

    def close_orphans(self, live: set[str]) -> int:
        """Mark trial runs left RUNNING by a killed process as KILLED; return how many.

        ``live``: run ids of trials still running in the Optuna storage (maybe on another
        worker): those are left alone.
        """
        orphans = self._runs(f"tags.`{PARENT}` = '{self.parent_id}' and attributes.status = 'RUNNING'")
        closed = 0
        for run in orphans:
            if run.info.run_id not in live:
                self.kill_trial(run.info.run_id, "interrupted")
                closed += 1
        return closed

    def open_inputs(self, data: dict) -> None:
        """The datasets every run of this study logs (``datasets.py``), from its data config."""
        self.inputs = datasets.dataset_inputs(data)

    def start_trial(self, number: int, factors: dict, extra: dict[str, object]) -> str:
        """A child run with every factor (and ``extra``) as params."""
        tags = {PARENT: self.parent_id, ROLE: "trial", STUDY: self.study_name, TRIAL: str(number), **image_tags()}
        tags[runs_view.NOTE] = "**running**"
        run_id = self.start_run(runs_view.trial_name(number), factors, extra, tags)
        self.numbers[run_id], self.factors[run_id] = number, factors
        return run_id

    def start_run(self, name: str, factors: dict, extra: dict[str, object], tags: dict[str, str]) -> str:
        """A run with params, the study's datasets and system metrics sampled while it lasts."""
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        params = {**factors, **extra}
        self.client.log_batch(run.info.run_id, params=[Param(k, redact(param_text(v))) for k, v in params.items()])
        if self.inputs:
            self.client.log_inputs(run.info.run_id, datasets=self.inputs)
        self._monitor(run.info.run_id)
        return run.info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """End a run that is not a trial (a training run): stop its system metrics, set ``status``."""
        self._stop_monitor(run_id)
        self.client.set_terminated(run_id, status=status)

    def _monitor(self, run_id: str) -> None:
        """Start sampling system metrics into the run (``SYSTEM_METRICS_S``)."""
        if os.environ.get("SPP_SEARCH_SYSTEM_METRICS", "1") == "0":
            return
        monitor = _SystemMetrics(run_id, sampling_interval=SYSTEM_METRICS_S, tracking_uri=self.tracking_uri)
        monitor.start()
        self.monitors[run_id] = monitor

    def _stop_monitor(self, run_id: str) -> None:
        monitor = self.monitors.pop(run_id, None)
        if monitor is not None:
            monitor.finish()

    def log_epoch(self, run_id: str, epoch: int, metrics: dict[str, float]) -> None:
        """One call per epoch (log_batch), so the MLflow UI shows a live curve."""
        now = _now_ms()
        self._log_metrics(run_id, [Metric(k, float(v), now, epoch) for k, v in metrics.items()])

    def end_trial(self, run_id: str, result: TrialResult, tags: dict[str, str]) -> None:
        """Log step losses, stability stats, outcome tags, traceback; set the terminal status."""
        now = _now_ms()
        metrics = [Metric("batch_loss", float(loss), now, step) for step, loss in result.steps]
        metrics += [Metric(k, float(v), now, 0) for k, v in result.stats.items() if v is not None]
        if result.value is not None:
            metrics.append(Metric("objective", float(result.value), now, 0))
        self._log_metrics(run_id, metrics)
        all_tags = {"outcome": result.outcome.value, **tags}
        reason = ""
        if result.outcome.failed:  # every failure says why (failures.py), exception or not
            error_type, message = failures.reason(result)
            all_tags.update(error_type=error_type, error_message=message)
            reason = f"{error_type}: {message}"
        value = result.value if result.value is not None else _last(result.epochs, "val_accuracy")
        factors = self.factors.pop(run_id, {})
        all_tags[runs_view.NOTE] = runs_view.trial_note(result.outcome.value, value, factors, self.searched, reason)
        for key, where in (("failed_epoch", result.failed_epoch), ("failed_step", result.failed_step)):
            if where is not None:
                all_tags[key] = str(where)
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in all_tags.items()])
        for name, text in failures.artifacts(result).items():
            self.client.log_text(run_id, text, name)
        self._stop_monitor(run_id)
        self.client.set_terminated(run_id, status=result.outcome.mlflow_status)
        # after the terminal status: a stop (SIGTERM) mid-way leaves at worst an unrenamed run
        self._rename(run_id, result.outcome.value, value if not result.outcome.failed else None)

    def _rename(self, run_id: str, outcome: str, value: float | None) -> None:
        """``trial-007 ok 0.940``: the outcome in the name, where the runs table shows it first."""
        number = self.numbers.pop(run_id, None)
        if number is None:  # a run this tracker did not start (an orphan of a killed driver)
            number = int(self.client.get_run(run_id).data.tags.get(TRIAL, -1))
        if number >= 0:
            self.client.update_run(run_id, name=runs_view.trial_name(number, outcome, value))

    def delete_run(self, run_id: str) -> None:
        """Delete a run that belongs to no trial (MLflow keeps it as deleted, out of every table)."""
        self._stop_monitor(run_id)
        self.client.set_terminated(run_id, status="KILLED")
        self.client.delete_run(run_id)

    def kill_trial(self, run_id: str, outcome: str, message: str | None = None, status: str = "KILLED") -> None:
        """Close a trial run that did not finish: KILLED (interrupted, worker lost) or FAILED."""
        self.factors.pop(run_id, None)
        self._stop_monitor(run_id)
        self.client.set_terminated(run_id, status=status)  # first: on a failing store, the write that matters
        tags = [RunTag("outcome", outcome)] + ([RunTag("error_message", redact_cut(message, 500))] if message else [])
        note = f"**{outcome}**" + (f"\n\n{redact_cut(message, 500)}" if message else "")
        self.client.log_batch(run_id, tags=[*tags, RunTag(runs_view.NOTE, note)])
        self._rename(run_id, outcome, None)  # after the terminal status, as in end_trial

    def ensure_terminal(self, run_id: str | None, outcome: str, message: str) -> None:
        """Best effort, while a study stops on a fault: close ``run_id`` if it is still RUNNING.
        A store that cannot be written at all (a full disk) leaves it to the rerun's
        ``close_orphans``."""
        if run_id is None:
            return
        try:
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.kill_trial(run_id, outcome, message)
        except Exception:  # noqa: BLE001 - the fault that stops the study is reported, not this one
            pass

    def close_study(self, summary: dict[str, float], status: str = "FINISHED", note: str | None = None) -> None:
        """Log the study's totals (and its description, ``note``); end the parent run with
        ``status``, unless the study is still ``RUNNING`` (another driver works on): then it
        stays open for the last driver to close."""
        if status != "RUNNING":  # first: on a failing store, the write that matters
            self.client.set_terminated(self.parent_id, status=status)
        now = _now_ms()
        metrics = [Metric(k, float(v), now, 0) for k, v in summary.items() if v is not None]
        self._log_metrics(self.parent_id, metrics)
        if note is not None:
            self.client.set_tag(self.parent_id, runs_view.NOTE, note)

    def _log_metrics(self, run_id: str, metrics: Iterable[Metric]) -> None:
        metrics = [m for m in metrics if not math.isnan(m.value) or m.key == "batch_loss"]
        for i in range(0, len(metrics), BATCH):
            self.client.log_batch(run_id, metrics=metrics[i : i + BATCH])


class _SystemMetrics:
    """MLflow's ``SystemMetricsMonitor`` that also records a last sample when it stops.

    MLflow's monitor publishes a sample only after a full interval, and drops the one in
    progress at ``finish``: a trial that fails within the interval (a fast out-of-memory kill)
    would have no system metrics at all. Here ``finish`` samples once more and flushes, so every
    trial run has the state at its end.
    """

    def __init__(self, run_id: str, sampling_interval: float, tracking_uri: str) -> None:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self.monitor = SystemMetricsMonitor(run_id, sampling_interval=sampling_interval, tracking_uri=tracking_uri)

    def start(self) -> None:
        self.monitor.start()

    def finish(self) -> None:
        monitor = self.monitor
        monitor.finish()  # stops the thread, flushes what it queued
        with contextlib.suppress(Exception):  # a last sample is a bonus: never fail a trial for it
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()


class _Retrying:
    """An MlflowClient whose calls retry a briefly unreachable tracking store with backoff."""

    def __init__(self, client: MlflowClient, where: str) -> None:
        self._client, self._where = client, where

    def __getattr__(self, name: str):
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def call(*args, **kwargs):
            return with_retries(lambda: method(*args, **kwargs), f"tracking-uri {self._where}", transient=_transient)

        return call


def _transient(exc: Exception) -> bool:
    """An MLflow error that reports connection trouble (worth retrying), not a bad request."""
    from mlflow.exceptions import MlflowException

    text = str(exc).lower()
    words = ("connection", "timed out", "unavailable", "database is locked", "503")
    return isinstance(exc, MlflowException) and any(w in text for w in words)


def _last(epochs: list[dict], key: str) -> float | None:
    """The last epoch's ``key`` (a pruned trial's validation accuracy when it stopped)."""
    values = [e[key] for e in epochs if e.get(key) is not None and not math.isnan(e[key])]
    return float(values[-1]) if values else None


def _redacted(value: object) -> object:
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return redact(value) if isinstance(value, str) else value
