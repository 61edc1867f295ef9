"""Why a failed trial failed: a one-line reason and the evidence behind it, for every outcome.

A trial that raised carries its exception's type, message and traceback. The other failures have
no exception: a divergence is seen by the stability watch, an out-of-memory or time-out kill and a
dead worker by the driver. For those, ``reason`` names what happened (``Divergence``,
``HostMemoryBudget``, ``Timeout``, ``WorkerExit``, ...) and says it with the numbers, and
``evidence`` (filled where it was seen: ``run.py`` in the worker, ``isolation.py`` in the
driver) holds the trace that shows it: the losses and gradient norms before a divergence, the
memory climb and the budget before an out-of-memory kill, the last progress before a time-out.

So every failed MLflow run carries ``error_type`` and ``error_message`` tags, and ``artifacts``
gives it ``failure.json`` (always) and ``traceback.txt`` (exceptions). Plain data only: this runs
in the driver without a backend.
"""

from __future__ import annotations

import json
import math

from spp_search.infra.redaction import redact, redact_cut, strip_ansi
from spp_search.trial.outcomes import MESSAGE_LIMIT

CONSOLE_LIMIT = 160  # characters of the reason on the console's line for a failed trial


def reason(result) -> tuple[str, str]:
    """``(error_type, error_message)`` of a failed trial: its exception's own, else its outcome's
    explanation (``outcomes.KINDS``); empty for ok and pruned."""
    if result.error_type:
        return result.error_type, redact_cut(result.error_message or result.error_type, MESSAGE_LIMIT)
    explain = result.outcome.kind.explain
    return explain(result) if explain is not None else ("", "")


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


def _finite(value):
    """JSON has no NaN or Infinity: such numbers are written as strings ("nan", "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
