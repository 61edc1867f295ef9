"""Scale-out and resilience with real processes: 4 workers on PostgreSQL, SIGKILLs, resume."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import time

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from spp_search.infra.storage import make_storage
from spp_search.study.budget import NO_BUDGET, counted, superseded
from tests.helpers import fresh_database, spawn_study, tiny_config

pytestmark = pytest.mark.slow


@functools.cache
def _storage(url: str):
    """One storage (one connection pool) per URL: polling must not open a pool per call."""
    return make_storage(url)


def _wait_counted(storage: str, name: str, at_least: int, timeout: float) -> optuna.Study:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            study = optuna.load_study(study_name=name, storage=_storage(storage))
            if counted(study) >= at_least:
                return study
        except KeyError:
            pass
        time.sleep(1)
    raise AssertionError(f"fewer than {at_least} trials after {timeout} s")


def _wait_running_on(storage: str, name: str, pid: int, timeout: float) -> None:
    """Until a trial of driver ``pid`` is running (its ``worker`` attribute ends in the pid)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        study = optuna.load_study(study_name=name, storage=_storage(storage))
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if any(t.user_attrs.get("worker", "").endswith(f":{pid}") for t in running):
            return
        time.sleep(0.5)
    raise AssertionError(f"driver {pid} ran no trial within {timeout} s")


def _mlflow_runs(tracking: str, name: str) -> list:
    client = MlflowClient(tracking)
    return client.search_runs([client.get_experiment_by_name(name).experiment_id], max_results=1000)


def test_four_workers_on_postgresql_reach_exactly_40_with_one_killed(tmp_path):
    with fresh_database("postgresql") as storage:
        raw = tiny_config(tmp_path, name="load", trials=40, epochs=1, workers=1, storage=storage, max_retries=2)
        config = tmp_path / "load.yaml"
        config.write_text(yaml.safe_dump(raw, sort_keys=False))
        tracking = raw["study"]["tracking_uri"]
        start = time.time()
        procs = [spawn_study("--config", str(config), log=tmp_path / "run.log")]
        _wait_counted(storage, "load", 1, 240)
        procs += [
            spawn_study(
                "worker",
                "--study-name",
                "load",
                "--storage",
                storage,
                "--tracking-uri",
                tracking,
                "--workers",
                "1",
                log=tmp_path / f"w{i}.log",
            )
            for i in range(3)
        ]
        _wait_counted(storage, "load", 10, 400)
        victim = procs[2]
        _wait_running_on(storage, "load", victim.pid, 300)
        os.killpg(victim.pid, signal.SIGKILL)  # mid-trial, the machine is gone: driver and its worker
        codes = [p.wait(timeout=900) for p in procs if p is not victim]
        wall = time.time() - start
        study = optuna.load_study(study_name="load", storage=_storage(storage))
        trials = study.get_trials(deepcopy=False)
        gone = superseded(trials)
        kept = [t for t in trials if t.number not in gone and t.user_attrs.get("outcome") != NO_BUDGET]
        lost = [t for t in trials if t.state.name == "FAIL" and "outcome" not in t.user_attrs]
        configs = [json.dumps(t.params, sort_keys=True) for t in kept]
        duplicates = len(configs) - len(set(configs))  # drivers used to share one sampler seed
        print(
            f"\nload test: {len(kept)} counted of {len(trials)} trials, {len(lost)} lost with the killed "
            f"worker and re-queued, {len(gone)} superseded, {duplicates} duplicate configurations, "
            f"{wall:.0f} s wall"
        )
        assert duplicates == 0  # learning_rate is continuous: only a shared seed repeats a configuration
        assert codes == [0, 0, 0], [p.args for p in procs]
        assert counted(study) == 40 and len(kept) == 40
        assert all(t.state.is_finished() for t in kept)
        assert len({t.number for t in trials}) == len(trials)
        assert lost and all(t.number in gone for t in lost)  # the killed trial was re-queued
        runs = _mlflow_runs(tracking, "load")
        assert not [r for r in runs if r.info.status == "RUNNING"]
        assert sum(r.data.tags.get("spp_search.role") == "study" for r in runs) == 1


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_driver_killed_mid_study_resumes_with_every_run_terminal(tmp_path, kind):
    """On a journal storage the killed driver's trial used to stay RUNNING forever (no heartbeat):
    the rerun never reached the total. Leases now free it after the 30 s grace."""
    raw = tiny_config(tmp_path, name="resume", trials=6, epochs=1, workers=1)
    if kind == "journal":
        raw["study"]["storage"] = f"journal://{tmp_path}/journal.log"
    config = tmp_path / "resume.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    storage, tracking = raw["study"]["storage"], raw["study"]["tracking_uri"]
    first = spawn_study("--config", str(config), log=tmp_path / "first.log")
    _wait_counted(storage, "resume", 2, 240)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    again = spawn_study("--config", str(config), log=tmp_path / "again.log")
    try:
        assert again.wait(timeout=300) == 0, (tmp_path / "again.log").read_text()[-3000:]
    except subprocess.TimeoutExpired:
        os.killpg(again.pid, signal.SIGKILL)
        raise AssertionError("the rerun was still waiting after 300 s") from None
    study = optuna.load_study(study_name="resume", storage=make_storage(storage))
    assert counted(study) == 6
    runs = _mlflow_runs(tracking, "resume")
    assert runs and all(r.info.status in ("FINISHED", "KILLED", "FAILED") for r in runs)


def test_sigterm_stops_cleanly_and_exits_nonzero(tmp_path):
    raw = tiny_config(tmp_path, name="term", trials=20, epochs=2, workers=1)
    config = tmp_path / "term.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = spawn_study("--config", str(config), log=tmp_path / "term.log")
    _wait_counted(raw["study"]["storage"], "term", 1, 240)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    runs = _mlflow_runs(raw["study"]["tracking_uri"], "term")
    assert all(r.info.status != "RUNNING" for r in runs)
    study = optuna.load_study(study_name="term", storage=make_storage(raw["study"]["storage"]))
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
