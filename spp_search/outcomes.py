"""The outcome taxonomy: what became of a trial, decided by one pure function.

``classify(Evidence) -> Outcome`` sees only plain data (exception type name and message, exit code,
flags and numbers), so it runs in the driver without TensorFlow and is tested as a table.

Precedence, first match wins: timeout > host memory (budget, or the kernel's OOM killer) >
exception (by type, then message; a shape word only counts outside spp-search's own code)
> abnormal exit (signal or nonzero status with no result) > non-finite loss > loss explosion
> pruned > ok.

Divergence rules (also documented in the README):

* ``diverged_nan``: a training-batch loss (or gradient norm) that is NaN or infinite.
* ``diverged_explosion``: a training-batch loss above ``EXPLOSION_FACTOR`` times the first
  batch's loss. Training stops at that step, like a NaN.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

from spp_search.backends import OOM_PATTERNS

EXPLOSION_FACTOR = 10.0


class Outcome(StrEnum):
    """What became of one trial; the value is the MLflow ``outcome`` tag."""

    OK = "ok"
    PRUNED = "pruned"
    DIVERGED_NAN = "diverged_nan"
    DIVERGED_EXPLOSION = "diverged_explosion"
    OOM_GPU = "oom_gpu"
    OOM_HOST = "oom_host"
    SHAPE_ERROR = "shape_error"
    DATA_ERROR = "data_error"
    TIMEOUT = "timeout"
    CRASH = "crash"
    CONFIG_ERROR = "config_error"

    @property
    def failed(self) -> bool:
        """True for every outcome but ``ok`` and ``pruned``."""
        return self not in (Outcome.OK, Outcome.PRUNED)

    @property
    def diverged(self) -> bool:
        return self in (Outcome.DIVERGED_NAN, Outcome.DIVERGED_EXPLOSION)

    @property
    def deterministic(self) -> bool:
        """Failures that recur for the same configuration: the sampler should avoid them."""
        return self in (Outcome.OOM_GPU, Outcome.OOM_HOST, Outcome.SHAPE_ERROR, Outcome.DATA_ERROR)

    @property
    def transient(self) -> bool:
        """Failures worth retrying: the same configuration may succeed next time."""
        return self in (Outcome.CRASH, Outcome.TIMEOUT)

    @property
    def mlflow_status(self) -> str:
        """FINISHED for ok, KILLED for pruned, FAILED for every failure."""
        if self is Outcome.OK:
            return "FINISHED"
        return "KILLED" if self is Outcome.PRUNED else "FAILED"


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

_BY_TYPE = {
    "ConfigError": Outcome.CONFIG_ERROR,
    "MemoryError": Outcome.OOM_HOST,
    "DataError": Outcome.DATA_ERROR,
    "UnidentifiedImageError": Outcome.DATA_ERROR,
    "ShapeError": Outcome.SHAPE_ERROR,
    "TimeoutError": Outcome.TIMEOUT,
}


def _from_exception(error_type: str, message: str, device: str, raised_in: str = "") -> Outcome:
    name = error_type.rsplit(".", 1)[-1]
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
