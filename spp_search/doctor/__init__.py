"""The doctor: a user's own failing SPP model and folder in, one culprit named with evidence out.

``diagnose(model, data, **options)`` (``diagnosis.py``) reproduces the failure as an isolated
trial, tests the suspects by intervention over seeds (``culprits.py``: one change per arm),
decides (``verdict.py``) and writes the verdict (``writeup.py``); ``probe.py`` looks at the
model before any training. Imports every room below it; Keras only in workers.
"""

from __future__ import annotations


def diagnose(model, data, **options) -> dict:
    """See ``spp_search.doctor.diagnosis.diagnose``."""
    from spp_search.doctor.diagnosis import diagnose as run

    return run(model, data, **options)


__all__ = ["diagnose"]
