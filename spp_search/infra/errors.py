"""Exceptions of spp-search, one per way a study can go wrong.

Every message follows one template: "`<arg>` must <rule>, but got <arg>=<value>. <fix>".
Which exception is raised decides what the study does next: a ``ConfigError`` stops the study
before any training; the others end one trial and are classified by ``outcomes.classify``.
"""

from __future__ import annotations


class SppSearchError(Exception):
    """Base class of every error spp-search raises on purpose."""


class ConfigError(SppSearchError, ValueError):
    """Raised for a bad configuration file, CLI argument or layer argument.

    Fatal: the study stops with this message before it trains anything.
    """


class DataError(SppSearchError):
    """Raised when input data break the configured data policy (bad file, wrong band count).

    Deterministic: the trial is recorded as ``data_error`` and the study goes on.
    """


class ShapeError(SppSearchError):
    """Raised when a model cannot take the shape of the data it is given.

    Deterministic: the trial is recorded as ``shape_error``.
    """


def must(arg: str, rule: str, value: object, fix: str) -> str:
    """Format the project's one error template.

    >>> must("levels", "be positive integers", [0], "Use e.g. levels=(1, 2, 4).")
    '`levels` must be positive integers, but got levels=[0]. Use e.g. levels=(1, 2, 4).'
    """
    return f"`{arg}` must {rule}, but got {arg}={value!r}. {fix}"
