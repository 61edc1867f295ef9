"""Why a failed trial failed: a one-line reason and the evidence behind it, for every outcome.

A trial that raised carries its exception's type, message and traceback. The other failures have
no exception: a divergence is seen by the stability watch, an out-of-memory or time-out kill and a
dead worker by the driver. For those, ``reason`` names what happened (``Divergence``,
``HostMemoryBudget``, ``Timeout``, ``WorkerExit``, ...) and says it with the numbers, and
``evidence`` (filled where it was seen: ``trial.py`` in the worker, ``isolation.py`` in the
driver) holds the trace that shows it: the losses and gradient norms before a divergence, the
memory climb and the budget before an out-of-memory kill, the last progress before a time-out.

So every failed MLflow run carries ``error_type`` and ``error_message`` tags, and ``artifacts``
gives it ``failure.json`` (always) and ``traceback.txt`` (exceptions). Plain data only: this runs
in the driver without a backend.
"""

from __future__ import annotations

import json
import math

from spp_search.outcomes import EXPLOSION_FACTOR, Outcome
from spp_search.redaction import redact, redact_cut, strip_ansi

MESSAGE_LIMIT = 500  # characters of error_message kept in tags and Optuna attributes
CONSOLE_LIMIT = 160  # characters of the reason on the console's line for a failed trial


def reason(result) -> tuple[str, str]:
    """``(error_type, error_message)`` of a failed trial (an exception's own, else built here)."""
    if result.error_type:
        return result.error_type, redact_cut(result.error_message or result.error_type, MESSAGE_LIMIT)
    ev, outcome = result.evidence or {}, result.outcome
    where = _where(result)
    if outcome is Outcome.DIVERGED_NAN:
        return "Divergence", f"non-finite training loss or gradient norm{where}"
    if outcome is Outcome.DIVERGED_EXPLOSION:
        loss, first = ev.get("max_loss"), ev.get("initial_loss")
        numbers = f" ({_num(loss)} vs {_num(first)})" if loss is not None and first is not None else ""
        return "Divergence", f"training loss above {EXPLOSION_FACTOR:g}x the first batch's{numbers}{where}"
    if outcome is Outcome.TIMEOUT:
        return "Timeout", _cut(result.error_message or f"trial ran past its time limit{where}")
    if outcome is Outcome.OOM_HOST:
        kind = "OomKilled" if "out-of-memory killer" in (result.error_message or "") else "HostMemoryBudget"
        return kind, _cut(_with_memory(result.error_message or "host memory exhausted", ev))
    if outcome is Outcome.OOM_GPU:
        return "GpuMemory", _cut(_with_memory(result.error_message or "GPU memory exhausted", ev))
    if outcome is Outcome.PRUNED or outcome is Outcome.OK:
        return "", ""
    return "WorkerExit", _cut(result.error_message or f"{outcome.value}{where}")


def one_line(result) -> str:
    """The reason on one console line: type, then message, newlines folded, cut to fit."""
    error_type, message = reason(result)
    name = error_type.rsplit(".", 1)[-1]
    text = " ".join(message.split())
    line = f"{name}: {text}" if text and not text.startswith(name) else text or name
    return line if len(line) <= CONSOLE_LIMIT else line[: CONSOLE_LIMIT - 3] + "..."


def artifacts(result) -> dict[str, str]:
    """Files for a failed trial's MLflow run: ``failure.json`` (outcome, reason, evidence) always,
    and ``traceback.txt`` when an exception was raised."""
    if not result.outcome.failed:
        return {}
    error_type, message = reason(result)
    record = {
        "outcome": result.outcome.value,
        "error_type": error_type,
        "error_message": message,
        "failed_epoch": result.failed_epoch,
        "failed_step": result.failed_step,
        "epochs_reported": len(result.epochs),
        "last_epoch": result.epochs[-1] if result.epochs else None,
        "evidence": result.evidence or {},
    }
    files = {"failure.json": json.dumps(_finite(record), indent=2)}
    if result.traceback:
        files["traceback.txt"] = redact(strip_ansi(result.traceback))
    return files


def _where(result) -> str:
    parts = []
    if result.failed_step is not None:
        parts.append(f"step {result.failed_step}")
    if result.failed_epoch is not None:
        parts.append(f"epoch {result.failed_epoch}")
    return f" at {', '.join(parts)}" if parts else ""


def _with_memory(message: str, ev: dict) -> str:
    """``message`` with the peak and the budget, when the driver measured them."""
    numbers = []
    if ev.get("peak_mb") is not None:
        numbers.append(f"peak {ev['peak_mb']:.0f} MiB")
    if ev.get("budget_mb") is not None:
        numbers.append(f"budget {ev['budget_mb']:.0f} MiB")
    return f"{message} ({', '.join(numbers)})" if numbers else message


def _num(value: float) -> str:
    return f"{value:.4g}"


def _cut(text: str) -> str:
    return redact_cut(text, MESSAGE_LIMIT)


def _finite(value):
    """JSON has no NaN or Infinity: such numbers are written as strings ("nan", "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
