"""Open both stores before a study writes anything to either, so a refused run leaves nothing.

Without this, a study met a broken tracking store only after it had created its Optuna study and a
ticket, and a read-only folder only at its lock file: half a study was left behind each time.
Here, in order: the folders of local stores (SQLite files, journal files, MLflow's artifact root)
must exist and be writable; an existing local file, or a server, must open and read as an Optuna
storage, then as an MLflow store. A file that does not exist yet is left for the study to create,
so a run refused later (e.g. for its model) still leaves nothing behind. Each failure is one
``ConfigError`` line that names the store and the fix (exit 2).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from spp_search.infra.errors import ConfigError, must
from spp_search.infra.faults import first_line
from spp_search.infra.files import check_writable
from spp_search.infra.locks import local_path
from spp_search.infra.redaction import redact
from spp_search.infra.retry import connection_lost as _lost
from spp_search.infra.retry import with_retries
from spp_search.infra.storage import exclusive, make_storage


def _local_file(url: str) -> Path | None:
    """The file a local store lives in (``sqlite:///x.db``, ``journal:///x.log``), else None."""
    if url.startswith("sqlite:///"):
        rest = url.removeprefix("sqlite:///").split("?", 1)[0]
        return None if rest == ":memory:" else Path(rest)
    if url.startswith("journal:///"):
        return Path(local_path(url))
    return None


def _check_file(file: Path, option: str, url: str) -> None:
    if file.name in ("", ".", ".."):
        fix = f"Name the file, e.g. --{option} sqlite:///{'optuna' if option == 'storage' else 'mlflow'}.db."
        raise ConfigError(must(option, "name a database file", redact(url), fix))
    if not file.resolve().parent.is_dir():
        fix = f"Create {file.resolve().parent} first, or pass --{option} in an existing folder."
        raise ConfigError(must(option, "be in an existing folder", redact(url), fix))
    check_writable(file.resolve().parent, option, url)
    if file.exists() and not os.access(file, os.R_OK | os.W_OK):
        fix = f"Make {file} readable and writable, or pass --{option} with another file."
        raise ConfigError(must(option, "be a readable and writable file", redact(url), fix))


def _unusable(option: str, url: str, what: str, exc: BaseException) -> ConfigError:
    file = _local_file(url)
    fix = (
        f"Move {file} aside (or pass --{option} with a new file) and rerun."
        if file is not None and file.exists()
        else "Check the server, the URL and its credentials."
    )
    return ConfigError(must(option, f"open as {what}", redact(url), f"It failed with {first_line(exc)}. {fix}"))


def open_storage(url: str) -> None:
    """The Optuna storage at ``url`` opens and reads (a corrupt file: one line, not a traceback)."""
    file = _local_file(url)
    if file is not None:
        _check_file(file, "storage", url)
        if not file.exists():
            return  # a new file in a writable folder: created by the study itself, nothing to open yet
    try:
        if url.startswith("journal:") and file is not None and file.is_file():
            check_journal(file)
        storage = make_storage(url)
        storage.get_all_studies()
    except ConfigError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _unusable("storage", url, "an Optuna journal", exc) from None
    except Exception as exc:  # noqa: BLE001 - what a broken database raises depends on the driver
        raise _unusable("storage", url, "an Optuna database", exc) from None


def check_journal(file: Path) -> None:
    """Every complete line of a journal file is JSON: Optuna reads past a bad line until the next
    write appends after it, then fails mid-study; a line being written (no newline yet) is fine."""
    with file.open("rb") as lines:
        for line in lines:
            if line.endswith(b"\n"):
                json.loads(line.decode("utf-8"))


def open_tracking(uri: str) -> None:
    """The MLflow store at ``uri`` opens and reads, and a local artifact root is writable."""
    from mlflow import MlflowClient

    file = _local_file(uri)
    if file is not None:
        _check_file(file, "tracking-uri", uri)
        check_writable(Path("mlruns").resolve(), "tracking-uri", f"{uri} (its artifacts in ./mlruns)")
        if not file.exists():
            return  # as for the storage: nothing to open before the study creates it
    elif uri.startswith("file:") or "://" not in uri:
        check_writable(Path(uri.removeprefix("file://").removeprefix("file:")).resolve(), "tracking-uri", uri)
    try:  # a server restarting is waited for (1, 2, 4, 8 s), as every store call is
        with_retries(
            lambda: MlflowClient(uri).search_experiments(max_results=1), f"tracking-uri {redact(uri)}", transient=_lost
        )
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow wraps each store's errors differently
        raise _unusable("tracking-uri", uri, "an MLflow tracking store", exc) from None


def open_stores(storage: str, tracking_uri: str, name: str) -> None:
    """Both stores of study ``name``, before anything is written to either. MLflow's store is
    opened under the study's start-up lock (``exclusive``, as ``run_study`` starts a study):
    another driver starting at once may be creating its schema, and a half-made schema fails to
    open (SQLAlchemy's ``CircularDependencyError``, measured with two runs started together)."""
    open_storage(storage)
    with exclusive(storage, f"start:{name}"):
        open_tracking(tracking_uri)
