"""One trial end to end, without Optuna or MLflow: ok, pruned, diverged, crash."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spp_search.config.factors import default_factors
from spp_search.config.schedule import Budget
from spp_search.config.settings import build_config
from spp_search.trial.outcomes import Outcome
from spp_search.trial.run import TrialSpec, run_trial
from spp_search.trial.stability import Watch
from tests.backends import BACKENDS, on

DATA = build_config({"data": {"synthetic": {"num_images": 48, "min_size": 16, "max_size": 32}}}).data.for_trial()


class Recorder:
    def __init__(self, prune_after: int | None = None) -> None:
        self.epochs, self.prune_after = [], prune_after

    def epoch_end(self, epoch, metrics):
        self.epochs.append((epoch, metrics))
        return self.prune_after is not None and epoch >= self.prune_after


TWO_EPOCHS = Budget.of_epochs(2)


def _spec(budget: Budget = TWO_EPOCHS, **factors) -> TrialSpec:
    f = {**default_factors(), "image_size": 24, "width": 4, "dense_units": 8, "batch_size": 8, **factors}
    import keras

    return TrialSpec(
        number=0, factors=f, data=DATA, budget=budget, seed=1, log_every=2, backend=keras.backend.backend()
    )


def step_budget_trial(steps: int, evaluations: int, **factors) -> tuple:
    """A trial with a step budget; its result and the (key, steps trained) of each report."""
    reporter = Recorder()
    result = run_trial(_spec(Budget(steps, evaluations), **factors), reporter)
    return result, [(key, m["steps_trained"]) for key, m in reporter.epochs]


def trial_on_this_backend(**factors) -> tuple:
    """Run a trial here (any backend); its result and the epochs its reporter saw."""
    import keras

    reporter = Recorder()
    result = run_trial(_spec(**factors), reporter)
    return result, reporter.epochs, keras.mixed_precision.global_policy().name


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("policy", ["fixed", "multi_size", "variable_bucketed", "variable_padded"])
def test_ok_trial_reports_every_epoch(backend, policy):
    result, epochs, _ = on(backend, trial_on_this_backend, input_policy=policy)
    assert result.outcome is Outcome.OK, result.traceback
    assert [e for e, _ in epochs] == [0, 1]
    metrics = epochs[0][1]
    assert set(metrics) == {
        *("loss", "accuracy", "val_loss", "val_accuracy", "epoch_time_s", "train_epoch_time_s", "steps_trained")
    }
    assert 0 < metrics["train_epoch_time_s"] < metrics["epoch_time_s"]  # validation comes after training
    assert result.value == epochs[-1][1]["val_accuracy"]
    assert result.stats["steps"] == 10 and 1 <= result.stats["traced_shapes"] <= 9
    assert result.stats["compile_s"] > 0 and result.stats["compile_s"] < result.stats["train_time_s"]
    assert math.isfinite(result.stats["grad_norm_max"]) and result.stats["grad_norm_max"] > 0
    assert result.stats["images_per_s"] > 0 and result.stats["max_loss_ratio"] >= 1
    assert result.steps[0][0] == 1 and result.error_type is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("policy", ["multi_size", "variable_bucketed"])
def test_a_step_budget_trains_the_same_steps_at_any_batch_size(backend, policy):
    """Issue 25: 36 training images give 9 steps per pass at batch 4 and 3 at batch 12; a budget of
    12 steps validated 3 times trains 12 steps and reports at steps 4, 8, 12 at both, across passes
    (a round need not end where a pass does)."""
    for batch_size in (4, 12):
        result, reports = on(backend, step_budget_trial, 12, 3, input_policy=policy, batch_size=batch_size)
        assert result.outcome is Outcome.OK, result.traceback
        assert result.stats["steps"] == 12 and reports == [(4, 4.0), (8, 8.0), (12, 12.0)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_and_reports_finite_norms(backend, policy):
    result, _, during = on(backend, trial_on_this_backend, mixed_precision=policy)
    assert result.outcome is Outcome.OK, result.traceback
    assert math.isfinite(result.stats["grad_norm_max"]) and during == policy
    result, _, after = on(backend, trial_on_this_backend)  # the next trial is back to float32
    assert result.outcome is Outcome.OK and after == "float32"


def test_gradient_norm_is_the_global_norm_of_the_step():
    """The optimizer wrapper's norm equals sqrt(sum of squared gradients) of the step it applied."""
    import keras

    from spp_search.backends import runtime
    from spp_search.model.network import make_optimizer

    optimizer = make_optimizer("sgd", 0.1)
    weights = [keras.Variable(np.ones((2, 2), "float32")), keras.Variable(np.ones(3, "float32"))]
    grads = [keras.ops.convert_to_tensor(np.full((2, 2), 3.0, "float32")), keras.ops.ones(3) * 4.0]
    optimizer.apply(grads, weights)
    assert runtime().read(optimizer.grad_norm) == pytest.approx(math.sqrt(4 * 9 + 3 * 16))


def test_pruned_trial_stops_after_the_reporters_verdict():
    reporter = Recorder(prune_after=0)
    result = run_trial(_spec(), reporter)
    assert result.outcome is Outcome.PRUNED and len(reporter.epochs) == 1
    assert result.value == reporter.epochs[0][1]["val_accuracy"]  # the last value it reached


def test_huge_learning_rate_diverges_and_stops_at_that_step():
    reporter = Recorder()
    result = run_trial(_spec(learning_rate=50.0, optimizer="sgd"), reporter)
    assert result.outcome.diverged, (result.outcome, result.steps)
    assert result.failed_step is not None and result.stats["steps"] == result.failed_step
    assert result.value is None
    steps = result.evidence["steps"]  # the trace that led there, for the run's failure.json
    assert steps[-1]["step"] == result.failed_step and len(steps) == min(result.failed_step, 64)


def test_a_trial_for_another_backend_than_the_process_runs_is_a_config_error():
    import dataclasses

    import keras

    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    result = run_trial(dataclasses.replace(_spec(), backend=other), Recorder())
    assert result.outcome is Outcome.CONFIG_ERROR and "--isolation process" in result.error_message


def test_an_exception_ends_the_trial_with_its_type_and_traceback():
    result = run_trial(_spec(fault="raise"), Recorder())
    assert result.outcome is Outcome.CRASH
    assert result.error_type == "builtins.RuntimeError" and "injected fault" in result.error_message
    assert "Traceback" in result.traceback


def test_a_factor_value_no_config_checked_is_a_config_error():
    """Factors are resolved (checked, defaults filled) once, when the trial starts."""
    result = run_trial(_spec(input_policy="no_such_policy"), Recorder())
    assert result.outcome is Outcome.CONFIG_ERROR and "no_such_policy" in result.error_message


@pytest.mark.parametrize(
    ("losses", "stop_at", "field"),
    [
        ([1.0, 2.0, float("nan")], 3, "nonfinite_step"),
        ([1.0, 5.0, 10.5], 3, "exploded_step"),
        ([1.0, 9.9, 0.5], None, None),
    ],
)
def test_watch_stops_at_the_first_bad_step(losses, stop_at, field):
    watch = Watch(log_every=1)
    stops = [watch.on_step(loss, 1.0, 0.01) for loss in losses]
    assert (stops.index(True) + 1 if True in stops else None) == stop_at
    if field:
        assert getattr(watch, field) == stop_at
