"""The outcome taxonomy: one table says what each outcome means and how it is handled everywhere.

``KINDS`` has one entry per outcome. Each entry says how the outcome reaches Optuna (``record``:
``complete``, ``pruned``, ``infeasible`` or ``fail``; ``study/recording.py`` and the KerasTuner
engine read it), whether the configuration is retried or the study stops, the MLflow status of
its run, the ``error_type`` and one-line reason of a failure that raised no exception, which
evidence its ``failure.json`` carries (``steps``: the losses and gradient norms before it;
``gpu_memory``: GPU memory per epoch; ``memory``: the worker's memory trace and budgets;
``timing``: the time limit and the last progress), the exception types classified as it, whether
its worker is replaced afterwards, its colour in plots and its meaning (the docs' table). Adding
an outcome is one entry plus its tests; ``Outcome`` is built from the table.

``classify(Evidence) -> Outcome`` sees only plain data (exception type name and message, exit
code, flags and numbers), so it runs in the driver without a backend and is tested as a table.
Precedence, first match wins: timeout > host memory (budget, or the kernel's OOM killer) >
exception (a host fault first, ``infra.faults``; then by type, then message; a shape word only
counts outside spp-search's own code) >
abnormal exit (signal or nonzero status with no result) > non-finite loss > loss explosion >
pruned > ok.

Divergence rules: ``diverged_nan``: a training-batch loss (or gradient norm) that is NaN or
infinite; ``diverged_explosion``: a training-batch loss above ``EXPLOSION_FACTOR`` times the first
batch's loss. Training stops at that step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from spp_search.backends import OOM_PATTERNS
from spp_search.infra.faults import host_fault_in
from spp_search.infra.redaction import redact_cut

EXPLOSION_FACTOR = 10.0
MESSAGE_LIMIT = 500  # characters of error_message kept in tags and Optuna attributes
RECORDS = ("complete", "pruned", "infeasible", "fail")
EVIDENCE = ("steps", "gpu_memory", "memory", "timing")
STATUSES = ("FINISHED", "KILLED", "FAILED")


def _where(result) -> str:
    parts = [f"{k} {v}" for k, v in (("step", result.failed_step), ("epoch", result.failed_epoch)) if v is not None]
    return f" at {', '.join(parts)}" if parts else ""


def _with_memory(message: str, ev: dict) -> str:
    """``message`` with the peak and the budget, when the driver measured them."""
    numbers = [
        f"{label} {ev[key]:.0f} MiB"
        for key, label in (("peak_mb", "peak"), ("budget_mb", "budget"))
        if ev.get(key) is not None
    ]
    return f"{message} ({', '.join(numbers)})" if numbers else message


def _cut(text: str) -> str:
    return redact_cut(text, MESSAGE_LIMIT)


def _nan(result) -> tuple[str, str]:
    return "Divergence", f"non-finite training loss or gradient norm{_where(result)}"


def _explosion(result) -> tuple[str, str]:
    ev = result.evidence or {}
    loss, first = ev.get("max_loss"), ev.get("initial_loss")
    numbers = f" ({loss:.4g} vs {first:.4g})" if loss is not None and first is not None else ""
    return "Divergence", f"training loss above {EXPLOSION_FACTOR:g}x the first batch's{numbers}{_where(result)}"


def _timeout(result) -> tuple[str, str]:
    return "Timeout", _cut(result.error_message or f"trial ran past its time limit{_where(result)}")


def _host_memory(result) -> tuple[str, str]:
    message = result.error_message or "host memory exhausted"
    kind = "OomKilled" if "out-of-memory killer" in message else "HostMemoryBudget"
    return kind, _cut(_with_memory(message, result.evidence or {}))


def _gpu_memory(result) -> tuple[str, str]:
    return "GpuMemory", _cut(_with_memory(result.error_message or "GPU memory exhausted", result.evidence or {}))


def _worker_exit(result) -> tuple[str, str]:
    return "WorkerExit", _cut(result.error_message or f"{result.outcome.value}{_where(result)}")


@dataclass(frozen=True)
class Kind:
    """How one outcome is recorded, retried, tracked, explained and shown."""

    record: str  # how Optuna sees it (with failure feedback on): one of RECORDS
    colour: str  # in the report's plots
    meaning: str  # one line, for the docs
    failed: bool = True  # every outcome but ok and pruned
    retry: bool = False  # the same configuration may succeed next time: run again up to max_retries
    fatal: bool = False  # the study stops (a bad configuration)
    status: str = "FAILED"  # the MLflow status of its run: one of STATUSES
    explain: Callable | None = _worker_exit  # (error_type, message) of a failure that raised no exception
    evidence: tuple[str, ...] = ()  # what its failure.json shows: names from EVIDENCE
    raised_as: tuple[str, ...] = ()  # exception type names classified as this outcome
    replace_worker: bool = False  # the worker process is replaced after it (its state is unknown)
    host: bool = False  # not the configuration's doing (``infra.faults``): re-queued at no cost, the study stops


KINDS: dict[str, Kind] = {
    "ok": Kind(
        "complete", "#2ca02c", "trained every epoch; the value is the final validation accuracy",
        failed=False, status="FINISHED", explain=None,
    ),
    "pruned": Kind(
        "pruned", "#bcbd22", "stopped early by the pruner (behind the median of earlier trials)",
        failed=False, status="KILLED", explain=None,
    ),
    "diverged_nan": Kind(
        "pruned", "#d62728", "a training loss or gradient norm became NaN or infinite",
        explain=_nan, evidence=("steps",),
    ),
    "diverged_explosion": Kind(
        "pruned", "#ff9896", f"a training loss rose above {EXPLOSION_FACTOR:g}x the first batch's",
        explain=_explosion, evidence=("steps",),
    ),
    "oom_gpu": Kind(
        "infeasible", "#9467bd", "the GPU ran out of memory (or past --gpu-memory-budget)",
        explain=_gpu_memory, evidence=("gpu_memory", "memory"), replace_worker=True,
    ),
    "oom_host": Kind(
        "infeasible", "#c5b0d5", "past --host-memory-budget, killed by the kernel's OOM killer, or out of memory",
        explain=_host_memory, evidence=("gpu_memory", "memory"), raised_as=("MemoryError",), replace_worker=True,
    ),
    "shape_error": Kind(
        "infeasible", "#1f77b4", "the model could not take the shape of its data",
        raised_as=("ShapeError",),
    ),
    "data_error": Kind(
        "infeasible", "#ff7f0e", "the data broke the channel policy (unreadable file, wrong band count)",
        raised_as=("DataError", "UnidentifiedImageError"),
    ),
    "timeout": Kind(
        "fail", "#8c564b", "ran past --trial-timeout",
        retry=True, explain=_timeout, evidence=("timing",), raised_as=("TimeoutError",), replace_worker=True,
    ),
    "crash": Kind(
        "fail", "#7f7f7f", "anything else: an unexpected exception, a signal, a dead worker",
        retry=True, evidence=("memory",), replace_worker=True,
    ),
    "host_error": Kind(
        "fail", "#e377c2", "the host failed it (disk full, a read-only file system): re-queued, the study stops",
        host=True, status="KILLED",
    ),
    "config_error": Kind(
        "fail", "#17becf", "the configuration cannot run at all: the study stops",
        fatal=True, raised_as=("ConfigError",),
    ),
}  # fmt: skip


class _Outcome(StrEnum):
    """What became of one trial; the value is the MLflow ``outcome`` tag; ``kind`` its table entry."""

    @property
    def kind(self) -> Kind:
        return KINDS[self.value]

    @property
    def failed(self) -> bool:
        return self.kind.failed

    @property
    def diverged(self) -> bool:
        """A failure recorded as pruned at the epoch it happened (NaN or exploding loss)."""
        return self.kind.failed and self.kind.record == "pruned"

    @property
    def mlflow_status(self) -> str:
        return self.kind.status


Outcome = _Outcome("Outcome", {name.upper(): name for name in KINDS})


@dataclass(frozen=True)
class Evidence:
    """Everything ``classify`` may look at, as plain values."""

    error_type: str | None = None
    error_message: str = ""
    exit_code: int | None = None
    got_result: bool = True
    timed_out: bool = False
    over_host_budget: bool = False
    pruned: bool = False
    nonfinite_step: int | None = None
    initial_loss: float | None = None
    max_loss: float | None = None
    device: str = "cpu"
    raised_in: str = ""  # top-level package of the frame that raised: "spp_search", "keras", ...
    oom_killed: bool = False  # the kernel's out-of-memory killer ended the worker (cgroup count)


_OOM = re.compile("|".join(p for patterns in OOM_PATTERNS.values() for p in patterns), re.I)
_SHAPE = re.compile(
    r"shape|dimension|rank|spatial|Incompatible|ConcatOp|Matrix size|reshape|expected axis|Stride must",
    re.I,
)
_NONFINITE = re.compile(r"\b(NaN|Inf)\b|non-finite", re.I)
_BY_TYPE = {name: Outcome(outcome) for outcome, kind in KINDS.items() for name in kind.raised_as}


def _from_exception(error_type: str, message: str, device: str, raised_in: str = "") -> Outcome:
    name = error_type.rsplit(".", 1)[-1]
    if host_fault_in(name, message):
        return Outcome.HOST_ERROR
    if name in _BY_TYPE:
        return _BY_TYPE[name]
    if name == "ResourceExhaustedError" or _OOM.search(message):
        return Outcome.OOM_GPU if device == "gpu" else Outcome.OOM_HOST
    if (
        name in ("InvalidArgumentError", "ValueError")
        and _NONFINITE.search(message)
        and ("check_numerics" in message.lower() or "had nan" in message.lower())
    ):
        return Outcome.DIVERGED_NAN
    # a shape word in an error raised by spp-search's own code is a bug, not a finding about SPP
    # (deliberate shape findings of our layers raise ShapeError)
    if name in ("InvalidArgumentError", "ValueError", "TypeError") and _SHAPE.search(message):
        return Outcome.CRASH if raised_in == "spp_search" else Outcome.SHAPE_ERROR
    return Outcome.CRASH


def exploded(initial_loss: float | None, loss: float | None) -> bool:
    """The explosion rule: a finite loss above ``EXPLOSION_FACTOR`` x the first batch's loss."""
    if initial_loss is None or loss is None or not math.isfinite(loss) or initial_loss <= 0:
        return False
    return loss > EXPLOSION_FACTOR * initial_loss


def classify(evidence: Evidence) -> Outcome:
    """Map what happened in a trial to exactly one :class:`Outcome` (see module docstring)."""
    if evidence.timed_out:
        return Outcome.TIMEOUT
    if evidence.over_host_budget or evidence.oom_killed:
        return Outcome.OOM_HOST
    if evidence.error_type:
        return _from_exception(evidence.error_type, evidence.error_message, evidence.device, evidence.raised_in)
    if not evidence.got_result or evidence.exit_code not in (None, 0):
        return Outcome.CRASH
    if evidence.nonfinite_step is not None:
        return Outcome.DIVERGED_NAN
    if exploded(evidence.initial_loss, evidence.max_loss):
        return Outcome.DIVERGED_EXPLOSION
    return Outcome.PRUNED if evidence.pruned else Outcome.OK
