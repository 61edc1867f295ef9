"""Where spp-search writes: a folder checked writable before any work, so nothing is half-done.

Root passes every permission check except a read-only file system, so both causes are told apart
in the fix: a folder another user owns (a container's bind mount) or a read-only mount.
"""

from __future__ import annotations

import os
from pathlib import Path

from spp_search.infra.errors import ConfigError, must
from spp_search.infra.redaction import redact


def check_writable(folder: Path, option: str, value: str) -> None:
    """``folder`` (or the nearest parent that exists, where it would be created) is writable."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(must(option, "be in a folder", redact(value), f"{existing} is not a folder."))
    if not os.access(existing, os.W_OK | os.X_OK):
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            fix = f"{existing} is on a read-only file system: pass --{option} (or run) elsewhere."
        else:
            fix = f"Make {existing} writable by uid {os.getuid()} (e.g. chown), or pass --{option} elsewhere."
        raise ConfigError(must(option, "be in a writable folder", redact(value), fix))
