"""Range checks for the numeric fields of the config dataclasses, declared beside each field.

A field declares its range with ``numeric(default, low, high)``; ``check_numbers(instance)`` (called
from each ``__post_init__``) refuses NaN, infinities, booleans and values outside the range with
the project's one-line error. Without it ``nan`` slipped through comparisons (``nan < 0`` is false)
and failed later with a traceback, or silently switched a guard off.
"""

from __future__ import annotations

import dataclasses
import math

from spp_search.infra.errors import ConfigError, must

SEED_MAX = 2**32 - 1  # NumPy's and the samplers' seed range


def numeric(default: float, low: float | None = None, high: float | None = None, fix: str = "Fix the value."):
    """A dataclass field holding a number in ``[low, high]`` (None: unbounded on that side)."""
    return dataclasses.field(default=default, metadata={"range": (low, high), "fix": fix})


def check_numbers(instance: object) -> None:
    """Raise ``ConfigError`` for the first numeric field of ``instance`` that is not a finite number
    of its declared type inside its declared range."""
    for field in dataclasses.fields(instance):
        if "range" not in field.metadata:
            continue
        value, (low, high) = getattr(instance, field.name), field.metadata["range"]
        integer = isinstance(field.default, int)
        kind = "an integer" if integer else "a finite number"
        bounds = (
            ""
            if low is None and high is None
            else f" >= {low}"
            if high is None
            else f" <= {high}"
            if low is None
            else f" in [{low}, {high}]"
        )
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (not integer or float(value).is_integer())
        ok = ok and (low is None or value >= low) and (high is None or value <= high)
        if not ok:
            raise ConfigError(must(field.name, f"be {kind}{bounds}", value, field.metadata["fix"]))
