"""Train one trial and watch its stability. No Optuna, no MLflow: plain data in, plain data out.

``run_trial(spec, reporter)`` builds the data and model for ``spec.factors``, trains with compiled
``fit`` on the Keras backend this process runs on, and returns a :class:`TrialResult` whatever
happens: exceptions are caught, classified by ``outcomes.classify`` and returned, so the caller
(inline or in a worker process) decides what to do.

After each validation round (``config/schedule.py``: a step budget is validated at the same
steps in every trial) the ``reporter`` gets its metrics and answers whether to stop (pruning):
the engine owns the Optuna trial, the trial code only asks.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from spp_search.config.factors import resolved
from spp_search.config.schedule import Budget
from spp_search.data.loading import trial_data
from spp_search.infra.errors import ConfigError
from spp_search.infra.redaction import redact, redact_cut, strip_ansi
from spp_search.trial.outcomes import EXPLOSION_FACTOR, Evidence, Outcome, classify
from spp_search.trial.stability import Watch, callback, stats


@dataclass(frozen=True)
class TrialSpec:
    """Everything one trial needs, picklable so a worker process can receive it."""

    number: int
    factors: dict
    data: dict
    budget: Budget  # optimizer steps (or epochs) and how often to validate
    seed: int
    device: str = "cpu"
    log_every: int = 5
    backend: str = "tensorflow"
    model: dict | None = None  # the user's model (``ModelSettings.for_trial``); None: spp-search's own


@dataclass
class TrialResult:
    """What a trial produced: outcome, objective, per-epoch and per-step metrics, failure detail."""

    outcome: Outcome
    value: float | None = None
    epochs: list[dict[str, float]] = field(default_factory=list)
    steps: list[tuple[int, float]] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)
    error_type: str | None = None
    error_message: str = ""
    traceback: str | None = None
    failed_epoch: int | None = None
    failed_step: int | None = None
    evidence: dict = field(default_factory=dict)  # what shows the failure (``failures.py``)


class Reporter(Protocol):
    """Receives each validation round's metrics under its key (``Budget.report_key``: the
    steps trained, or the epoch's index); returns True when the trial should stop (pruned)."""

    def epoch_end(self, epoch: int, metrics: dict[str, float]) -> bool: ...


def inject_fault(fault: str) -> None:
    """The ``fault`` factor: fail on purpose at training step ``stability.FAULT_STEP``, to check isolation.

    ``allocate`` grows memory 256 MiB at a time (touched, so resident) up to 4 GiB, then raises
    ``MemoryError``; a host budget stops it first. ``hang`` sleeps for a day. ``sigkill``,
    ``sigsegv`` and ``sigfpe`` signal this process. ``raise`` raises ``RuntimeError``.
    """
    if fault == "allocate":
        hoard = []
        for _ in range(16):
            hoard.append(np.ones(2**25, dtype=np.float64))
            time.sleep(0.02)
        raise MemoryError(f"injected fault: allocated {len(hoard) * 256} MiB")
    if fault == "hang":
        time.sleep(86400)
    if fault in ("sigkill", "sigsegv", "sigfpe"):
        os.kill(os.getpid(), getattr(signal, fault.upper()))
    if fault == "raise":
        raise RuntimeError("injected fault")


@dataclass
class Trained:
    """What ``_train`` leaves behind: per-epoch history, the model, its data, fit time."""

    history: list = field(default_factory=list)
    model: object = None
    train: object = None
    seconds: float = 0.0
    gpu_peak_token: object = None
    val_counts: object = None  # validation images per class: what chance is for this trial


def split_stats(val_counts) -> dict[str, float]:
    """The validation split's size and the share of its largest class (the accuracy of always
    predicting that class: chance for the report, ``results/report.py``)."""
    if val_counts is None or not len(val_counts) or val_counts.sum() == 0:
        return {}
    return {"val_images": float(val_counts.sum()), "val_majority_share": float(val_counts.max() / val_counts.sum())}


def _train(spec: TrialSpec, reporter: Reporter, watch: Watch, trained: Trained) -> None:
    from spp_search.backends import runtime, select

    select(spec.backend)  # this process's Keras runs on it, or the trial is a config error
    import keras

    from spp_search.data.preprocessing import build_pipelines
    from spp_search.model.network import BatchLoss

    rt = runtime()
    keras.backend.clear_session(free_memory=True)
    keras.utils.set_random_seed(spec.seed)
    keras.mixed_precision.set_global_policy(spec.factors["mixed_precision"])
    trained.gpu_peak_token = rt.reset_peak_gpu_memory()
    train, val = trial_data(spec.data, spec.factors)
    trained.train, trained.val_counts = train, np.bincount(np.asarray(val.labels, dtype=int))
    f = spec.factors
    pipes = build_pipelines(train, val, f, seed=spec.seed)
    model, optimizer, logits = trial_model(spec, train.images[0].shape[-1], len(train.class_names), pipes.input_size)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits),
        metrics=[BatchLoss(from_logits=logits)],
        # validation batches are padded with zero weights: weighted metrics are exact, Keras'
        # val_loss is not (it weights each batch's mean by the padded size), so val_loss is "ce"
        weighted_metrics=["accuracy", keras.metrics.SparseCategoricalCrossentropy(name="ce", from_logits=logits)],
        jit_compile=f["jit_compile"],
    )
    trained.model = model
    rounds, per_round = spec.budget.plan(len(pipes.train))
    cb = callback(watch, reporter, f["fault"], pipes.train.shape_at, inject_fault, spec.budget.report_key)
    trained.history = cb.history
    train_inputs, val_inputs, steps, val_steps = rt.inputs(pipes, per_round)
    start = time.perf_counter()
    try:
        model.fit(
            train_inputs,
            epochs=rounds,  # a Keras "epoch" is one validation round here
            steps_per_epoch=steps,
            validation_data=val_inputs,
            validation_steps=val_steps,
            callbacks=[cb],
            shuffle=False,  # the pipeline shuffles
            verbose=0,
        )
    finally:
        pipes.train.close()
    trained.seconds = time.perf_counter() - start


def trial_model(spec: TrialSpec, bands: int, num_classes: int, policy_size):
    """The trial's model, its optimizer (recording the gradient norm) and whether it outputs logits:
    spp-search's network from the factors, or the user's model (``spec.model``, ``model/user.py``)."""
    f = spec.factors
    if spec.model is not None:
        from spp_search.model import user

        return user.for_trial(spec.model, f, bands, num_classes)
    from spp_search.model.network import build_trial_model, make_optimizer, model_input_size

    model = build_trial_model(f, bands, num_classes, model_input_size(f, policy_size))
    return model, make_optimizer(f["optimizer"], float(f["learning_rate"])), False


def raised_in(error: BaseException) -> str:
    """Top-level package of the innermost frame that raised ``error`` ("spp_search", "keras",
    "tensorflow", "jax", ...), so that ``classify`` can tell our bugs from framework errors."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    parts = Path(frames[-1].filename).parts
    for package in ("spp_search", "keras", "tensorflow", "jax", "jaxlib", "numpy", "optree"):
        if package in parts:
            return package
    return "other"


def run_trial(spec: TrialSpec, reporter: Reporter) -> TrialResult:
    """Train ``spec`` and return its result; never raises for a trial-level failure."""
    return train_and_keep(spec, reporter)[0]


def _peak_gpu(trained: Trained, device: str) -> int | None:
    if device != "gpu":
        return None
    from spp_search.backends import runtime

    return runtime().peak_gpu_memory(trained.gpu_peak_token)


def train_and_keep(spec: TrialSpec, reporter: Reporter) -> tuple[TrialResult, Trained]:
    """``run_trial`` that also returns the trained model and its train set (for ``train``)."""
    try:
        spec = dataclasses.replace(spec, factors=resolved(spec.factors))
    except ConfigError as exc:  # a factor value no config check saw (a trial enqueued by hand)
        return TrialResult(Outcome.CONFIG_ERROR, error_type="ConfigError", error_message=str(exc)), Trained()
    watch = Watch(spec.log_every, check_grads=spec.factors["mixed_precision"] != "mixed_float16")
    trained, error = Trained(), None
    try:
        _train(spec, reporter, watch, trained)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a classified outcome
        error = exc
    evidence = Evidence(
        error_type=f"{type(error).__module__}.{type(error).__qualname__}" if error else None,
        error_message=redact_cut(str(error), 2000) if error else "",
        pruned=watch.pruned,
        nonfinite_step=watch.nonfinite_step,
        initial_loss=watch.initial_loss,
        max_loss=watch.max_loss,
        device=spec.device,
        raised_in=raised_in(error) if error else "",
    )
    outcome = classify(evidence)
    failed, history = outcome.failed, trained.history
    result = TrialResult(
        outcome=outcome,
        value=history[-1]["val_accuracy"] if history and not failed else None,
        epochs=history,
        steps=watch.losses,
        stats={
            **stats(watch, int(spec.factors["batch_size"]), trained.seconds, _peak_gpu(trained, spec.device)),
            **split_stats(trained.val_counts),
        },
        error_type=evidence.error_type,
        error_message=evidence.error_message,
        traceback=redact(strip_ansi("".join(traceback.format_exception(error)))) if error else None,
        failed_epoch=watch.epoch if failed else None,
        failed_step=(watch.nonfinite_step or watch.exploded_step or watch.step) if failed else None,
        evidence=_evidence(outcome, watch),
    )
    return result, trained


def _evidence(outcome: Outcome, watch: Watch) -> dict:
    """What the worker saw of a failure: the steps before a divergence (loss and gradient norm,
    with the rule that stopped it), or the GPU memory in use at each epoch's end before an
    out-of-memory error. The driver adds its own memory and time traces (``isolation.py``)."""
    evidence = outcome.kind.evidence
    if "steps" in evidence:
        return {
            "rule": "non-finite loss or gradient norm"
            if outcome is Outcome.DIVERGED_NAN
            else f"loss above {EXPLOSION_FACTOR:g}x the first batch's",
            "initial_loss": watch.initial_loss,
            "max_loss": watch.max_loss,
            "explosion_factor": EXPLOSION_FACTOR,
            "steps": [{"step": s, "loss": loss, "grad_norm": g} for s, loss, g in watch.recent],
        }
    if "gpu_memory" in evidence:
        return {
            "gpu_in_use_mb_by_epoch": [b / 2**20 for b in watch.gpu_in_use],
            "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    return {}
