"""Optuna storages by URL, with heartbeats for RDB storages and retries for brief outages.

* ``sqlite:///optuna.db`` (default), ``postgresql://user:pw@host/db``, ``mysql+pymysql://...``:
  ``RDBStorage`` with a heartbeat, so a trial whose driver died (SIGKILL, machine loss) is
  found stale after ``GRACE_S`` seconds and handled by the engine (failed, re-queued).
* ``journal:///path/to/study.log``: Optuna's journal storage on a file.
* ``redis://host:6379/0``: the journal storage on Redis.

Journal storages have no heartbeat in Optuna 5: a killed worker's trial stays RUNNING there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalRedisBackend, JournalStorage

from spp_search.errors import ConfigError, must
from spp_search.redaction import redact

HEARTBEAT_S = 5
GRACE_S = 30
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
T = TypeVar("T")


def make_storage(url: str, on_stale: Callable | None = None) -> BaseStorage:
    """The Optuna storage for ``url`` (see the module docstring), reachable or a clear error."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "journal":
        path = url.removeprefix("journal://")
        return JournalStorage(JournalFileBackend(path.removeprefix("/") if path.startswith("/.") else path))
    if scheme in ("redis", "rediss"):
        return with_retries(lambda: JournalStorage(JournalRedisBackend(url)), f"storage {redact(url)}")
    if scheme not in RDB_SCHEMES:
        raise ConfigError(
            must(
                "storage",
                "be sqlite://, postgresql://, mysql+pymysql://, journal:// or redis://",
                redact(url),
                "See README, Scale-out.",
            )
        )
    engine = {"pool_pre_ping": True} if scheme != "sqlite" else {"connect_args": {"timeout": 60}}
    return with_retries(
        lambda: RDBStorage(
            url,
            engine_kwargs=engine,
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            heartbeat_stale_trial_callback=on_stale,
        ),
        f"storage {redact(url)}",
    )


def with_retries(
    call: Callable[[], T],
    what: str,
    attempts: int = 5,
    first_wait: float = 1.0,
    transient: Callable[[Exception], bool] | None = None,
) -> T:
    """Run ``call``, retrying connection failures with exponential backoff (1, 2, 4, 8 s), then
    fail with one clear line. ``transient(exc)`` may accept more exception types as retryable."""
    wait = first_wait
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ImportError as exc:
            raise ConfigError(
                f"`{what.split(' ')[0]}` needs a database driver that is not installed ({exc}). "
                "Install the project with its dependencies (pip install -e .)."
            ) from None
        except Exception as exc:  # noqa: BLE001 - classified just below
            retryable = isinstance(
                exc, (ConnectionError, OSError, optuna.exceptions.StorageInternalError, _db_errors())
            )
            if not (retryable or (transient is not None and transient(exc))):
                raise
            if attempt == attempts:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ConfigError(
                    f"`{what.split(' ')[0]}` must be reachable, but {what} failed {attempts} times: "
                    f"{redact(first)}. Check the server and the URL."
                ) from None
            time.sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")


def _db_errors() -> type[Exception]:
    """SQLAlchemy's operational error (connection refused, server gone), imported lazily."""
    from sqlalchemy.exc import OperationalError

    return OperationalError
