"""Stability metrics of one trial, on every backend: per-step loss and gradient norm, speed, memory.

``Watch`` is plain Python (tested without a backend): it sees each step's batch loss, gradient
norm and time, and says when training must stop (a non-finite or exploding loss). The Keras
callback (``callback``) feeds it: the batch loss comes from the ``batch_loss`` metric and the
gradient norm from the optimizer's ``grad_norm`` variable (``models.py``), read through the
backend's runtime so that JAX's in-flight training state is seen.

Compilation: JAX compiles one program per input shape, and TensorFlow traces per shape too.
The first step of each new shape pays it, so ``compile_s`` is the excess of those steps over the
median step, plus the excess of the first validation pass over the later ones.
"""

from __future__ import annotations

import math
import resource
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from spp_search.trial.outcomes import exploded

FAULT_STEP = 2  # the ``fault`` factor fails a trial at this training step
RECENT_STEPS = 64  # steps kept in full (loss and gradient norm) for a divergence's evidence
BEFORE_FAILURE = 10  # steps before a divergence whose loss is logged at full resolution


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
    new_shape_steps: list[int] = field(default_factory=list)  # 0-based steps that met a new shape
    shapes: set = field(default_factory=set)  # input shapes of the training steps run
    validation_times: list[float] = field(default_factory=list)
    gpu_in_use: list[int] = field(default_factory=list)
    # the last RECENT_STEPS steps as (step, loss, gradient norm): what led to a divergence
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_STEPS))

    def on_step(self, loss: float, grad_norm: float, seconds: float, new_shape: bool = False) -> bool:
        """Record one training step; return True if training must stop (diverged).

        Under ``mixed_float16`` a non-finite gradient is a skipped step of the loss scaler, not a
        divergence: only the loss is checked then (``check_grads`` False).
        """
        if new_shape:
            self.new_shape_steps.append(self.step)
        self.step += 1
        self.step_times.append(seconds)
        self.grad_norms.append(grad_norm)
        self.recent.append((self.step, loss, grad_norm))
        if self.step % self.log_every == 0 or self.step == 1 or not math.isfinite(loss):
            self.losses.append((self.step, loss))
        if not (math.isfinite(loss) and (math.isfinite(grad_norm) or not self.check_grads)):
            self.nonfinite_step = self.step
            return self._keep_last_steps()
        if self.initial_loss is None:
            self.initial_loss = loss
        self.max_loss = max(self.max_loss or loss, loss)
        if exploded(self.initial_loss, loss):
            self.exploded_step = self.step
            return self._keep_last_steps()
        return False

    def _keep_last_steps(self) -> bool:
        """A divergence: the failing step and the ``BEFORE_FAILURE`` steps before it join the
        logged losses (otherwise sampled every ``log_every``), so a chart shows the climb."""
        logged = {step for step, _ in self.losses}
        recent = list(self.recent)[-(BEFORE_FAILURE + 1) :]
        self.losses = sorted([*self.losses, *((s, v) for s, v, _ in recent if s not in logged)])
        return True

    @property
    def stopped(self) -> bool:
        return self.nonfinite_step is not None or self.exploded_step is not None

    def compile_seconds(self) -> float:
        """Time the first step of each new shape (and the first validation) took over the usual."""
        first = set(self.new_shape_steps)
        usual = [t for i, t in enumerate(self.step_times) if i not in first]
        median = float(np.median(usual)) if usual else 0.0
        train = sum(max(0.0, self.step_times[i] - median) for i in first if i < len(self.step_times))
        val = self.validation_times
        later = float(np.median(val[1:])) if len(val) > 1 else None
        return train + (max(0.0, val[0] - later) if later is not None else 0.0)


def stats(watch: Watch, batch_size: int, train_time: float, peak_gpu: int | None) -> dict[str, float]:
    """The trial's stability and speed numbers (logged to MLflow as metrics)."""
    norms = np.array([g for g in watch.grad_norms if math.isfinite(g)] or [math.nan])
    first = set(watch.new_shape_steps)
    steady = [t for i, t in enumerate(watch.step_times) if i not in first] or watch.step_times or [math.nan]
    median = float(np.median(steady))
    out = {
        "train_time_s": train_time,
        "steps": float(watch.step),
        "step_time_median_s": median,
        "images_per_s": batch_size / median if watch.step > 1 else math.nan,
        "grad_norm_max": float(norms.max()),
        "grad_norm_p95": float(np.percentile(norms, 95)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "traced_shapes": float(len(watch.shapes)),
        "compile_s": watch.compile_seconds(),
    }
    if peak_gpu is not None:
        out["peak_gpu_mb"] = max(peak_gpu, *watch.gpu_in_use, 0) / 2**20
    if watch.initial_loss:
        out["max_loss_ratio"] = (watch.max_loss or watch.initial_loss) / watch.initial_loss
    if watch.nonfinite_step is not None:
        out["first_nonfinite_step"] = float(watch.nonfinite_step)
    return out


def callback(watch: Watch, reporter, fault, shape_at, on_fault, report_key):
    """A Keras callback that feeds ``watch`` every step and ``reporter`` every round (a Keras epoch).

    ``shape_at(step)`` is the shape of the training batch of 0-based step ``step`` (the pipeline's
    plan), so a step that met a new shape is known; ``on_fault(fault)`` runs at step
    ``FAULT_STEP`` (failure injection); ``report_key(round, steps trained)`` is the key a round's
    metrics are reported under (``Budget.report_key``).
    """
    import keras

    from spp_search.backends import runtime
    from spp_search.model.network import grad_norm_variable

    rt = runtime()

    class StabilityCallback(keras.callbacks.Callback):
        """Stops training on divergence (``watch``) or when the reporter prunes."""

        def on_train_begin(self, logs=None):
            self.norm = None  # TensorFlow builds the optimizer (and its variables) at its first step

        def on_epoch_begin(self, epoch, logs=None):
            watch.epoch, self.epoch_start = epoch, time.perf_counter()

        def on_train_batch_begin(self, batch, logs=None):
            self.step_start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if watch.step + 1 == FAULT_STEP and fault != "none":
                on_fault(fault)
            loss = float(logs["batch_loss"])  # waits for the step (JAX dispatches asynchronously)
            if self.norm is None:
                self.norm = grad_norm_variable(self.model)
            norm = rt.read(self.norm, self.model)
            self.train_end = time.perf_counter()
            shape = shape_at(watch.step)
            new = shape not in watch.shapes
            watch.shapes.add(shape)
            if watch.on_step(loss, norm, self.train_end - self.step_start, new):
                self.model.stop_training = True

        def on_test_begin(self, logs=None):
            self.test_start = time.perf_counter()

        def on_test_end(self, logs=None):
            watch.validation_times.append(time.perf_counter() - self.test_start)

        def on_epoch_end(self, epoch, logs=None):
            watch.gpu_in_use.append(rt.gpu_memory_in_use())
            if watch.stopped:
                return
            metrics = {k: float(logs[k]) for k in ("loss", "accuracy", "val_accuracy")}
            metrics["val_loss"] = float(logs["val_ce"])  # exact over padded validation batches
            metrics["epoch_time_s"] = time.perf_counter() - self.epoch_start
            # the training part alone (input pipeline + steps), without validation
            metrics["train_epoch_time_s"] = self.train_end - self.epoch_start
            metrics["steps_trained"] = float(watch.step)
            self.history.append(metrics)
            if reporter.epoch_end(report_key(epoch, watch.step), metrics):
                watch.pruned = True
                self.model.stop_training = True

    cb = StabilityCallback()
    cb.history = []
    return cb
