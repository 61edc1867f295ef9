"""Train one trial and watch its stability. No Optuna, no MLflow: plain data in, plain data out.

``run_trial(spec, reporter)`` builds the data and model for ``spec.factors``, trains with compiled
``fit``, and returns a :class:`TrialResult` whatever happens: exceptions are caught, classified by
``outcomes.classify`` and returned, so the caller (inline or in a worker process) decides what to do.

Between epochs the ``reporter`` gets the epoch's metrics and answers whether to stop (pruning):
the engine owns the Optuna trial, the trial code only asks.
"""

from __future__ import annotations

import math
import os
import resource
import signal
import time
import traceback
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from spp_search.outcomes import Evidence, Outcome, classify, exploded


@dataclass(frozen=True)
class TrialSpec:
    """Everything one trial needs, picklable so a worker process can receive it."""

    number: int
    factors: dict
    data: dict
    epochs: int
    seed: int
    device: str = "cpu"
    log_every: int = 5


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


class Reporter(Protocol):
    """Receives each epoch's metrics; returns True when the trial should stop (pruned)."""

    def epoch_end(self, epoch: int, metrics: dict[str, float]) -> bool: ...


@lru_cache(maxsize=4)
def _load(source: str, synthetic: tuple, corruption: tuple, val_fraction: float, seed: int, cache: str):
    from spp_search import data
    from spp_search.corruption import CorruptionSpec, corrupt, through_files

    spec = data.SyntheticSpec(**dict(synthetic))
    images = data.make_synthetic(spec) if source == "synthetic" else data.load_folder(Path(source))
    damage = CorruptionSpec(**dict(corruption))
    if damage.active:
        images = corrupt(images, damage, spec.max_size)
        if damage.needs_files:
            images = through_files(images, damage, Path(cache))
    return data.split(images, val_fraction, seed)


def load_trial_data(data_cfg: dict):
    """Train/val :class:`~spp_search.data.ImageSet` (corrupted as configured); cached per process."""
    items = lambda key: tuple(sorted(data_cfg.get(key, {}).items()))  # noqa: E731
    return _load(
        data_cfg["source"],
        items("synthetic"),
        items("corruption"),
        data_cfg["val_fraction"],
        data_cfg["split_seed"],
        data_cfg.get("cache_dir", ".spp_cache"),
    )


def trial_data(data_cfg: dict, factors: dict):
    """The trial's train/val sets after its channel policy and order (``channels.conform``)."""
    from spp_search.channels import conform

    bands = data_cfg["synthetic"]["bands"] if data_cfg["source"] == "synthetic" else data_cfg["bands"]
    policy, order = factors.get("channel_policy", "strict"), factors.get("channel_order", "as_is")
    return tuple(conform(part, bands, policy, order) for part in load_trial_data(data_cfg))


@dataclass
class Watch:
    """Per-step stability state, filled by the training callback."""

    log_every: int
    check_grads: bool = True
    step: int = 0
    epoch: int = 0
    initial_loss: float | None = None
    max_loss: float | None = None
    nonfinite_step: int | None = None
    exploded_step: int | None = None
    pruned: bool = False
    losses: list[tuple[int, float]] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)

    def on_step(self, loss: float, grad_norm: float, seconds: float) -> bool:
        """Record one training step; return True if training must stop (diverged).

        Under mixed precision a non-finite gradient is a skipped step of the loss scaler, not a
        divergence: only the loss is checked then (``check_grads`` False).
        """
        self.step += 1
        self.step_times.append(seconds)
        self.grad_norms.append(grad_norm)
        if self.step % self.log_every == 0 or self.step == 1 or not math.isfinite(loss):
            self.losses.append((self.step, loss))
        if not (math.isfinite(loss) and (math.isfinite(grad_norm) or not self.check_grads)):
            self.nonfinite_step = self.step
            return True
        if self.initial_loss is None:
            self.initial_loss = loss
        self.max_loss = max(self.max_loss or loss, loss)
        if exploded(self.initial_loss, loss):
            self.exploded_step = self.step
            return True
        return False

    @property
    def stopped(self) -> bool:
        return self.nonfinite_step is not None or self.exploded_step is not None


FAULT_STEP = 2


def inject_fault(fault: str) -> None:
    """The ``fault`` factor: fail on purpose at training step ``FAULT_STEP``, to check isolation.

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


def _callback(watch: Watch, reporter: Reporter, fault: str):
    import keras

    class StabilityCallback(keras.callbacks.Callback):
        """Feeds ``watch`` every step and ``reporter`` every epoch; stops on divergence/pruning."""

        def on_epoch_begin(self, epoch, logs=None):
            watch.epoch = epoch
            self.epoch_start = time.perf_counter()

        def on_train_batch_begin(self, batch, logs=None):
            self.step_start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if watch.step + 1 == FAULT_STEP and fault != "none":
                inject_fault(fault)
            loss, norm = float(logs["batch_loss"]), float(logs["grad_norm"])
            self.train_end = time.perf_counter()
            if watch.on_step(loss, norm, self.train_end - self.step_start):
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            if watch.stopped:
                return
            metrics = {k: float(logs[k]) for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
            metrics["epoch_time_s"] = time.perf_counter() - self.epoch_start
            # the training part alone (input pipeline + steps), without validation
            metrics["train_epoch_time_s"] = self.train_end - self.epoch_start
            self.history.append(metrics)
            if reporter.epoch_end(epoch, metrics):
                watch.pruned = True
                self.model.stop_training = True

    callback = StabilityCallback()
    callback.history = []
    return callback


def _stats(watch: Watch, model, batch_size: int, train_time: float, device: str) -> dict[str, float]:
    norms = np.array([g for g in watch.grad_norms if math.isfinite(g)] or [math.nan])
    steps = np.array(watch.step_times[1:] or watch.step_times or [math.nan])
    stats = {
        "train_time_s": train_time,
        "steps": float(watch.step),
        "step_time_median_s": float(np.median(steps)),
        "images_per_s": batch_size / float(np.median(steps)) if watch.step > 1 else math.nan,
        "grad_norm_max": float(norms.max()),
        "grad_norm_p95": float(np.percentile(norms, 95)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "traces": float(len(getattr(model, "traced_shapes", ()))),
        "traced_shapes": float(len(set(getattr(model, "traced_shapes", ())))),
    }
    if device == "gpu":
        import tensorflow as tf

        stats["peak_gpu_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    if watch.initial_loss:
        stats["max_loss_ratio"] = (watch.max_loss or watch.initial_loss) / watch.initial_loss
    if watch.nonfinite_step is not None:
        stats["first_nonfinite_step"] = float(watch.nonfinite_step)
    return stats


@dataclass
class Trained:
    """What ``_train`` leaves behind: per-epoch history, the model, its train set, fit time."""

    history: list = field(default_factory=list)
    model: object = None
    train: object = None
    seconds: float = 0.0


def _train(spec: TrialSpec, reporter: Reporter, watch: Watch, trained: Trained) -> None:
    import keras

    from spp_search.models import build_trial_model, make_optimizer
    from spp_search.preprocessing import build_pipelines

    keras.backend.clear_session(free_memory=True)
    keras.utils.set_random_seed(spec.seed)
    keras.mixed_precision.set_global_policy("mixed_float16" if spec.factors.get("mixed_precision") else "float32")
    if spec.device == "gpu":
        import tensorflow as tf

        tf.config.experimental.reset_memory_stats("GPU:0")
    train, val = trial_data(spec.data, spec.factors)
    trained.train = train
    f = spec.factors
    pipes = build_pipelines(train, val, f, seed=spec.seed)
    model = build_trial_model(f, train.images[0].shape[-1], len(train.class_names), pipes.input_size)
    model.compile(
        optimizer=make_optimizer(f.get("optimizer", "adam"), float(f["learning_rate"])),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=bool(f.get("jit_compile", False)),
    )
    trained.model = model
    callback = _callback(watch, reporter, f.get("fault", "none"))
    trained.history = callback.history
    start = time.perf_counter()
    # A bucketed validation set has unknown cardinality; running out of it is how it ends.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    model.fit(
        pipes.train,
        epochs=spec.epochs,
        steps_per_epoch=pipes.steps_per_epoch,
        validation_data=pipes.val,
        callbacks=[callback],
        shuffle=False,  # the pipeline shuffles
        verbose=0,
    )
    trained.seconds = time.perf_counter() - start


def run_trial(spec: TrialSpec, reporter: Reporter) -> TrialResult:
    """Train ``spec`` and return its result; never raises for a trial-level failure."""
    return train_and_keep(spec, reporter)[0]


def train_and_keep(spec: TrialSpec, reporter: Reporter) -> tuple[TrialResult, Trained]:
    """``run_trial`` that also returns the trained model and its train set (for ``train``)."""
    watch = Watch(spec.log_every, check_grads=not spec.factors.get("mixed_precision", False))
    trained, error = Trained(), None
    try:
        _train(spec, reporter, watch, trained)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a classified outcome
        error = exc
    evidence = Evidence(
        error_type=f"{type(error).__module__}.{type(error).__qualname__}" if error else None,
        error_message=str(error)[:2000] if error else "",
        pruned=watch.pruned,
        nonfinite_step=watch.nonfinite_step,
        initial_loss=watch.initial_loss,
        max_loss=watch.max_loss,
        device=spec.device,
    )
    outcome = classify(evidence)
    failed, history = outcome.failed, trained.history
    result = TrialResult(
        outcome=outcome,
        value=history[-1]["val_accuracy"] if history and not failed else None,
        epochs=history,
        steps=watch.losses,
        stats=_stats(watch, trained.model, int(spec.factors["batch_size"]), trained.seconds, spec.device),
        error_type=evidence.error_type,
        error_message=evidence.error_message,
        traceback="".join(traceback.format_exception(error)) if error else None,
        failed_epoch=watch.epoch if failed else None,
        failed_step=(watch.nonfinite_step or watch.exploded_step or watch.step) if failed else None,
    )
    return result, trained
