"""Faults of the machine a study runs on, told apart from errors of a configuration, in one table.

A full disk, a read-only folder, a corrupt database file or a storage wiped while a study ran are
not findings about SPP, and a traceback does not help the user who meets them. ``FAULTS`` has one
entry per fault: how to recognise it from an exception (its type and text, anywhere in the chain
of causes), the exit status (2: the user must fix an input, e.g. a database file; 1: the host failed
at run time) and the line that says what failed and what to do. ``host_fault(exc)`` is how a
trial's runner decides that the host, not the configuration, ended a trial (it is re-queued at no
attempt's cost and the study stops); ``explain(exc)`` is the command line's last word on any
exception: one line, the traceback in a log file the line names.
"""

from __future__ import annotations

import errno
import re
import time
import traceback
from dataclasses import dataclass

from spp_search.infra.errors import SppSearchError
from spp_search.infra.process import log_dir
from spp_search.infra.redaction import redact


class HostFault(SppSearchError):
    """The host failed the study (disk full, a folder not writable, its storage lost): exit 1.

    The message names what failed and what was kept; a rerun after the fix resumes the study.
    """


@dataclass(frozen=True)
class Fault:
    """One way the host can fail a study: its ``errno`` values, or a pattern of its text."""

    errnos: tuple[int, ...]
    pattern: str  # searched in "ExceptionType: message"
    exit_code: int  # 2: an input to fix (a file); 1: the host failed at run time
    says: str  # what failed and the fix; ``{detail}`` is the exception's first line
    host: bool = True  # a trial it ends is not the configuration's failure

    def matches(self, exc: BaseException) -> bool:
        if isinstance(exc, OSError) and exc.errno in self.errnos:
            return True
        return self.matches_text(f"{type(exc).__name__}: {exc}")

    def matches_text(self, text: str) -> bool:
        return bool(re.search(self.pattern, text, re.I))


FAULTS: dict[str, Fault] = {
    "disk_full": Fault(
        (errno.ENOSPC, errno.EDQUOT),
        r"No space left on device|database or disk is full|Errno 28\b|Disk quota exceeded",
        1,
        "the disk is full ({detail}); finished trials and their MLflow runs are kept: free space, then rerun the "
        "same command to resume",
    ),
    "read_only": Fault(
        (errno.EROFS,),
        r"Read-only file system|readonly database|Errno 30\b",
        1,
        "a file could not be written ({detail}); finished trials are kept: make the folder writable (or pass "
        "--storage / --tracking-uri elsewhere), then rerun the same command to resume",
    ),
    "corrupt_database": Fault(
        (),
        r"file is not a database|database disk image is malformed",
        2,
        "a database file is corrupt or not a database ({detail}): move it aside (or pass --storage / "
        "--tracking-uri to a new file) and rerun",
        host=False,
    ),
}


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes (``raise ... from``) and contexts, outermost first."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def fault_of(exc: BaseException) -> tuple[str, Fault, BaseException] | None:
    """The fault of ``FAULTS`` that matches ``exc`` or one of its causes, with the match: the
    innermost one (``sqlite3``'s "database or disk is full", not MLflow's wrapper of it)."""
    for link in reversed(_chain(exc)):
        for name, fault in FAULTS.items():
            if fault.matches(link):
                return name, fault, link
    return None


def host_fault(exc: BaseException) -> str | None:
    """The name of the host fault that ended ``exc``'s work, or None (then it is the trial's own)."""
    found = fault_of(exc)
    return found[0] if found and found[1].host else None


def host_fault_in(error_type: str, message: str) -> str | None:
    """``host_fault`` from a worker's report of an exception (its type name and message)."""
    text = f"{error_type}: {message}"
    return next((name for name, f in FAULTS.items() if f.host and f.matches_text(text)), None)


def host_line(name: str, what: str, detail: str) -> str:
    """The line of host fault ``name`` (a key of ``FAULTS``) that stopped ``what``."""
    return f"{name.replace('_', ' ')}: {what}: {FAULTS[name].says.format(detail=detail)}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__)


def write_traceback(exc: BaseException) -> str | None:
    """The traceback in a log file (``SPP_SEARCH_LOG_DIR``, else the temp dir); its path, or None
    when even that cannot be written (a full disk)."""
    try:
        path = log_dir() / f"error-{time.strftime('%Y%m%dT%H%M%S')}-{id(exc) % 10000:04d}.log"
        path.write_text(redact("".join(traceback.format_exception(exc))))
        return str(path)
    except OSError:
        return None


def explain(exc: BaseException) -> tuple[int, str]:
    """(exit status, one line) for an exception nothing else handled; the traceback goes to a log."""
    log = write_traceback(exc)
    where = f" (traceback in {log})" if log else ""
    found = fault_of(exc)
    if found is not None:
        name, fault, link = found
        return fault.exit_code, f"{name.replace('_', ' ')}: {fault.says.format(detail=first_line(link))}{where}"
    if isinstance(exc, SppSearchError):
        return 1, f"{redact(str(exc))}{where}"
    return 1, f"unexpected error, please report it: {first_line(exc)}{where}"
