"""Retrying what a brief outage breaks: one call (``with_retries``) or every call of a storage.

A database restarting, a Redis failover or a network blip lasts seconds; without retries each
ended a driver with a traceback from whichever call met it first. Here a connection failure is
retried with exponential backoff (1, 2, 4, 8 s) and then reported in one line naming the place.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

import optuna
from optuna.storages import BaseStorage

from spp_search.infra.errors import ConfigError
from spp_search.infra.faults import host_fault
from spp_search.infra.optuna_private import BaseHeartbeat
from spp_search.infra.redaction import redact

T = TypeVar("T")
# errors no retry can fix: a wrong password, database or host name, a missing file
PERMANENT = re.compile(
    r"password authentication failed|Access denied|database .* does not exist|role .* does not exist|"
    r"Unknown database|unable to open database file|could not translate host name|Name or service not known|"
    r"WRONGPASS|invalid password|invalid username-password|AuthenticationError|Authentication required",
    re.I,
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
            if not (retryable or (transient is not None and transient(exc))) or host_fault(exc):
                raise  # a full disk or a read-only file does not pass by waiting (``faults``)
            if PERMANENT.search(f"{type(exc).__name__}: {exc}"):
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ConfigError(
                    f"`{what.split(' ')[0]}` must be usable, but {what} failed: {redact(first)}. "
                    "Waiting will not fix it: check the URL, the database name and the credentials."
                ) from None
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


class RetryingStorage(BaseStorage, BaseHeartbeat):
    """An Optuna storage whose every call retries a lost connection with backoff (1, 2, 4, 8 s).

    The methods of ``BaseStorage`` and ``BaseHeartbeat`` delegate to the wrapped storage through
    ``with_retries``; heartbeat support is the wrapped storage's own (``get_heartbeat_interval``
    is None for journal storages). ``inner`` is kept for code that needs the real storage type.
    """

    def __init__(self, inner: BaseStorage, where: str) -> None:
        self.inner, self._where = inner, where

    def __getattr__(self, name: str):  # private helpers of the wrapped storage, unretried
        return getattr(self.inner, name)

    def get_heartbeat_interval(self) -> int | None:
        """The wrapped storage's heartbeat interval; None where it has no heartbeat (journal)."""
        return self.inner.get_heartbeat_interval() if isinstance(self.inner, BaseHeartbeat) else None


def _retrying(name: str):
    def method(self, *args, **kwargs):
        call = getattr(self.inner, name)
        return with_retries(lambda: call(*args, **kwargs), self._where, transient=connection_lost)

    method.__name__ = name
    return method


def connection_lost(exc: Exception) -> bool:
    """A Redis or database connection that dropped (not covered by ``with_retries``'s own list)."""
    try:
        import redis

        if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            return True
    except ImportError:
        pass
    text = str(exc).lower()
    return any(w in text for w in ("connection", "server closed", "terminating", "broken pipe"))


for _name in sorted(
    {n for cls in (BaseStorage, BaseHeartbeat) for n in vars(cls) if not n.startswith("__")}
    - {"get_heartbeat_interval"}
):
    if callable(getattr(BaseStorage, _name, None) or getattr(BaseHeartbeat, _name, None)):
        setattr(RetryingStorage, _name, _retrying(_name))
RetryingStorage.__abstractmethods__ = frozenset()
