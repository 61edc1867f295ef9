"""Fault injection through the whole engine: each failure is isolated, classified and recorded.

Every test runs a failing trial then a healthy one in worker processes and checks: the outcome,
the Optuna state and constraint, the MLflow status and tags, and that the next trial ran.
"""

from __future__ import annotations

import pytest

from spp_search.config.schedule import Budget
from tests.helpers import run_enqueued

pytestmark = pytest.mark.slow


def _check(runs, study, outcome, state, status, infeasible):
    first, last = study.trials[0], study.trials[-1]
    assert first.user_attrs["outcome"] == outcome and first.state.name == state
    assert bool(first.constraints) == infeasible
    assert runs[0].info.status == status and runs[0].data.tags["outcome"] == outcome
    assert last.user_attrs["outcome"] == "ok" and runs[-1].info.status == "FINISHED"


def _failure(client, run) -> dict:
    """The run's failure.json artifact."""
    import json
    from pathlib import Path

    return json.loads(Path(client.download_artifacts(run.info.run_id, "failure.json")).read_text())


def test_allocation_past_the_host_budget_is_oom_host(tmp_path):
    code, study, runs, client = run_enqueued(
        tmp_path, "oom", [{"fault": "allocate"}, {"fault": "none"}], host_memory_budget="1500MiB"
    )
    assert code == 0
    _check(runs, study, "oom_host", "PRUNED", "FAILED", infeasible=True)
    assert "host memory budget" in study.trials[0].user_attrs["error_message"]
    assert runs[0].data.metrics["peak_rss_mb"] > 1400
    # it explains itself: the memory climb up to the budget (it had no tag and no artifact)
    assert (
        runs[0].data.tags["error_type"] == "HostMemoryBudget"
        and "budget 1500 MiB" in runs[0].data.tags["error_message"]
    )
    record = _failure(client, runs[0])
    trace = record["evidence"]["memory_trace"]["rss_mb"]
    assert record["evidence"]["budget_mb"] == 1500 and len(trace) >= 3 and trace[-1] > trace[0] + 500


@pytest.mark.parametrize("fault", ["sigkill", "sigfpe"])
def test_a_signal_is_a_crash_retried_then_recorded(tmp_path, fault):
    code, study, runs, client = run_enqueued(tmp_path, fault, [{"fault": fault}, {"fault": "none"}], max_retries=1)
    assert code == 0
    states = [(t.user_attrs["outcome"], t.state.name, t.user_attrs.get("retried", False)) for t in study.trials]
    # trial 0 crashes and is retried once (trial 2, attempt 2, counted); trial 1 is the healthy one
    assert states[0] == ("crash", "FAIL", True) and states[1][0] == "ok"
    assert states[2] == ("crash", "FAIL", False) and study.trials[2].user_attrs["attempt"] == 2
    assert "signal" in study.trials[0].user_attrs["error_message"]
    assert runs[0].info.status == "FAILED" and runs[0].data.tags["retried"] == "true"
    assert len(study.trials) == 3  # the total (2) counts the final attempt, not the retried one
    assert runs[0].data.tags["error_type"] == "WorkerExit"
    assert _failure(client, runs[0])["evidence"]["exit_code"] == {"sigkill": -9, "sigfpe": -8}[fault]


def test_a_hang_past_the_timeout_is_a_timeout(tmp_path):
    code, study, runs, client = run_enqueued(
        tmp_path, "hang", [{"fault": "hang"}, {"fault": "none"}], trial_timeout=25.0, max_retries=0
    )
    assert code == 0
    _check(runs, study, "timeout", "FAIL", "FAILED", infeasible=False)
    assert runs[0].data.tags["failed_epoch"] == "0" and runs[0].data.tags["error_type"] == "Timeout"
    evidence = _failure(client, runs[0])["evidence"]
    assert evidence["timeout_s"] == 25 and evidence["epochs_reported"] == 0 and evidence["elapsed_s"] >= 24


def test_a_python_exception_in_a_worker_keeps_the_worker(tmp_path):
    code, study, runs, client = run_enqueued(tmp_path, "raise", [{"fault": "raise"}, {"fault": "none"}], max_retries=0)
    assert code == 0
    _check(runs, study, "crash", "FAIL", "FAILED", infeasible=False)
    assert study.trials[0].user_attrs["error_type"] == "builtins.RuntimeError"
    assert runs[0].data.tags["error_message"] == "injected fault"
    names = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"traceback.txt", "failure.json"} <= names


def test_inline_isolation_runs_the_same_trials(tmp_path):
    code, study, runs, _ = run_enqueued(
        tmp_path, "inline", [{"fault": "raise"}, {"fault": "none"}], isolation="inline", max_retries=0
    )
    assert code == 0
    _check(runs, study, "crash", "FAIL", "FAILED", infeasible=False)


def test_natural_failures_are_classified_and_avoided(tmp_path):
    """A corrupt PNG under strict, a Flatten head on variable sizes, Keras' adaptive pooling on a
    1x1 map: deterministic failures, recorded as infeasible; the healthy trial still runs."""
    base = {
        "channel_policy": "pad_missing",
        "head": "spp",
        "input_policy": "fixed",
        "spp_impl": "floor_ceil",
        "image_size": 24,
    }
    trials = [
        {**base, "channel_policy": "strict"},
        {**base, "head": "flatten", "input_policy": "variable_padded"},
        {**base, "spp_impl": "keras_adaptive", "image_size": 4},
        base,
    ]
    code, study, runs, client = run_enqueued(tmp_path, "natural", trials, data={"corruption": {"unreadable": 0.05}})
    assert code == 0
    outcomes = [t.user_attrs["outcome"] for t in study.trials]
    assert outcomes == ["data_error", "shape_error", "shape_error", "ok"]
    for t, run in zip(study.trials[:3], runs[:3], strict=True):
        assert t.state.name == "PRUNED" and t.constraints == {"deterministic_failure": 1.0}
        assert run.info.status == "FAILED" and run.data.tags["error_type"]
        assert "traceback.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert ".png: unreadable" in study.trials[0].user_attrs["error_message"]
    assert "statically known" not in study.trials[2].user_attrs["error_message"]  # fixed size: ok


def test_a_worker_that_cannot_start_stops_the_study_with_its_reason():
    """It used to turn every trial into a retried crash with no traceback."""
    from spp_search.trial.isolation import Budgets, Placement, ProcessRunner, WorkerStartError
    from spp_search.trial.run import TrialSpec

    runner = ProcessRunner(Placement("tensorflow", "cpu", extra_env={"SPP_SEARCH_THREADS": "many"}), Budgets())
    try:
        with pytest.raises(WorkerStartError, match="ValueError.*many"):
            runner.run(TrialSpec(0, {}, {}, Budget.of_epochs(1), 0), reporter=None)
    finally:
        runner.close()


def test_a_worker_that_hangs_while_starting_is_stopped(monkeypatch):
    from spp_search.trial import isolation
    from spp_search.trial.isolation import Budgets, Placement, ProcessRunner, WorkerStartError
    from spp_search.trial.run import TrialSpec

    monkeypatch.setattr(isolation, "STARTUP_TIMEOUT_S", 0.5)  # a real start takes seconds
    runner = ProcessRunner(Placement("tensorflow", "cpu"), Budgets())
    try:
        with pytest.raises(WorkerStartError, match="did not start within"):
            runner.run(TrialSpec(0, {}, {}, Budget.of_epochs(1), 0), reporter=None)
    finally:
        runner.close()


def test_a_sigkill_while_the_cgroup_counts_an_oom_kill_is_oom_host(tmp_path, monkeypatch):
    """The kernel's OOM killer sends SIGKILL: with no host budget set that used to be a crash,
    retried twice. The cgroup's oom_kill count (faked here: a real one needs the machine's RAM)
    tells it apart."""
    from spp_search.trial import isolation

    counts = iter(range(100))
    monkeypatch.setattr(isolation, "oom_kill_count", lambda: next(counts))  # rises during each trial
    code, study, runs, _ = run_enqueued(tmp_path, "oomkill", [{"fault": "sigkill"}, {"fault": "none"}])
    assert code == 0
    _check(runs, study, "oom_host", "PRUNED", "FAILED", infeasible=True)
    assert "out-of-memory killer" in study.trials[0].user_attrs["error_message"]
    assert len(study.trials) == 2  # not retried


def test_each_trial_reports_its_own_memory_above_what_earlier_trials_left():
    """A reused worker keeps what earlier trials cached: peak_rss_mb includes it, trial_rss_mb
    (the peak above the worker's memory when the trial started) does not."""
    from spp_search.config.factors import default_factors
    from spp_search.config.settings import build_config
    from spp_search.trial.isolation import Budgets, Placement, ProcessRunner
    from spp_search.trial.run import TrialSpec

    data = build_config({"data": {"synthetic": {"num_images": 256, "min_size": 64, "max_size": 96}}}).data.for_trial()
    big = {**default_factors(), "image_size": 96, "batch_size": 128, "width": 16}
    small = {**default_factors(), "image_size": 16, "batch_size": 8, "width": 4, "dense_units": 8}

    class Quiet:
        def epoch_end(self, epoch, metrics):
            return False

    runner = ProcessRunner(Placement("tensorflow", "cpu"), Budgets())
    try:
        first = runner.run(TrialSpec(0, big, data, Budget.of_epochs(1), 0), Quiet())
        second = runner.run(TrialSpec(1, small, data, Budget.of_epochs(1), 0), Quiet())
    finally:
        runner.close()
    assert first.outcome.value == second.outcome.value == "ok" and runner.started_workers == 1
    assert second.stats["trial_rss_mb"] < second.stats["peak_rss_mb"] / 2  # most of it was left by others
    assert first.stats["trial_rss_mb"] > second.stats["trial_rss_mb"]


def test_under_a_host_budget_every_trial_starts_in_a_fresh_worker():
    from spp_search.config.factors import default_factors
    from spp_search.config.settings import build_config
    from spp_search.trial.isolation import Budgets, Placement, ProcessRunner
    from spp_search.trial.run import TrialSpec

    data = build_config({"data": {"synthetic": {"num_images": 48, "min_size": 16, "max_size": 32}}}).data.for_trial()
    tiny = {**default_factors(), "image_size": 16, "batch_size": 8, "width": 4, "dense_units": 8}

    class Quiet:
        def epoch_end(self, epoch, metrics):
            return False

    runner = ProcessRunner(Placement("tensorflow", "cpu"), Budgets(host_memory_bytes=8 * 2**30))
    try:
        results = [runner.run(TrialSpec(i, tiny, data, Budget.of_epochs(1), 0), Quiet()) for i in range(2)]
    finally:
        runner.close()
    assert [r.outcome.value for r in results] == ["ok", "ok"] and runner.started_workers == 2
