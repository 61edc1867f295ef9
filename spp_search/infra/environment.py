"""URLs with credentials from the environment, so that a password need not sit on a command line.

A storage URL with a password on a command line is visible to every user of the machine (``ps``)
and in container metadata. Precedence: the command-line option, then the environment, then the
config file. ``SPP_SEARCH_STORAGE`` holds the storage URL, or ``SPP_SEARCH_STORAGE_FILE`` a file
holding it (a mounted secret); ``MLFLOW_TRACKING_URI`` is MLflow's own variable.

The images set ``SPP_SEARCH_BASE_IMAGE`` (their base image's name and digest, given at build
time): every run records it, so a result names the base it came from.
"""

from __future__ import annotations

import os
from pathlib import Path

from spp_search.infra.errors import ConfigError, must

STORAGE_ENV, STORAGE_FILE_ENV, TRACKING_ENV = "SPP_SEARCH_STORAGE", "SPP_SEARCH_STORAGE_FILE", "MLFLOW_TRACKING_URI"
BASE_IMAGE_ENV, BASE_IMAGE_TAG = "SPP_SEARCH_BASE_IMAGE", "base_image"


def storage_url(given: str | None) -> str | None:
    """``given``, else the storage URL the environment holds, else None (the config's)."""
    return given or os.environ.get(STORAGE_ENV) or read_secret_file(os.environ.get(STORAGE_FILE_ENV))


def tracking_uri(given: str | None) -> str | None:
    """``given``, else ``MLFLOW_TRACKING_URI``, else None (the config's)."""
    return given or os.environ.get(TRACKING_ENV) or None


def read_secret_file(path: str | None) -> str | None:
    """The first line of ``path`` (a storage URL kept in a file); the error names the path only."""
    if not path:
        return None
    try:
        url = Path(path).read_text().strip().splitlines()[0].strip()
    except (OSError, IndexError):
        url = ""
    if not url:
        fix = "Point it at a readable file whose first line is the storage URL."
        raise ConfigError(must(STORAGE_FILE_ENV, "name a readable file holding a URL", path, fix))
    return url


def image_tags() -> dict[str, str]:
    """The MLflow tag naming the container's base image (``name@digest``); none outside one."""
    base = os.environ.get(BASE_IMAGE_ENV, "").strip()
    return {BASE_IMAGE_TAG: base} if base else {}
