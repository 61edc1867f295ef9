"""Optuna storages by URL, with heartbeats for RDB storages and retries for brief outages.

* ``sqlite:///optuna.db`` (default), ``postgresql://user:pw@host/db``, ``mysql+pymysql://...``:
  ``RDBStorage`` with a heartbeat, so a trial whose driver died (SIGKILL, machine loss) is
  found stale after ``GRACE_S`` seconds and handled by the engine (failed, re-queued).
* ``journal:///path/to/study.log``: Optuna's journal storage on a file.
* ``redis://host:6379/0``: the journal storage on Redis.

Every storage comes wrapped in ``RetryingStorage``: each call retries a lost connection with
backoff, so a storage that is away for a few seconds does not end a driver.

Journal storages have no heartbeat in Optuna 5: a killed worker's trial stays RUNNING there.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._heartbeat import BaseHeartbeat
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
    where = f"storage {redact(url)}"
    if scheme == "journal":
        path = url.removeprefix("journal://")
        path = path.removeprefix("/") if path.startswith("/.") else path
        return RetryingStorage(JournalStorage(JournalFileBackend(path)), where)
    if scheme in ("redis", "rediss"):
        return RetryingStorage(with_retries(lambda: JournalStorage(JournalRedisBackend(url)), where), where)
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
    rdb = with_retries(
        lambda: RDBStorage(
            url,
            engine_kwargs=engine,
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            heartbeat_stale_trial_callback=on_stale,
        ),
        where,
        transient=_schema_race,
    )
    return RetryingStorage(_CachedStorage(rdb), where)  # the cache Optuna puts in front of an RDB


def _schema_race(exc: Exception) -> bool:
    """Two processes creating a fresh database's schema at once: the loser's insert of the schema
    version (or of a table) fails; a moment later the schema is there, so it is retried."""
    text = str(exc)
    return "alembic_version" in text or "already exists" in text


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


LOCK_TIMEOUT_S = 120.0


@contextlib.contextmanager
def exclusive(url: str, name: str, timeout: float = LOCK_TIMEOUT_S):
    """Hold a lock named ``name`` in the storage at ``url``, across processes and machines.

    Drivers that start together (``run`` twice, or the Compose file's driver and workers) must not
    both create the study's tickets, ablation arms or MLflow parent run: that part of starting a
    study runs under this lock. PostgreSQL: an advisory lock; MySQL/MariaDB: ``GET_LOCK``; Redis:
    a ``SET NX`` key with an expiry; SQLite and journal files (one host): ``flock`` on a file
    beside the database. A lock not obtained within ``timeout`` is a one-line ``ConfigError``.
    """
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    key = hashlib.sha256(f"spp-search:{name}".encode()).hexdigest()
    if scheme in ("postgresql", "mysql"):
        lock = _sql_lock(url, scheme, key, timeout)
    elif scheme in ("redis", "rediss"):
        lock = _redis_lock(url, key, timeout)
    else:
        lock = _file_lock(_local_path(url), key, timeout)
    with lock:
        yield


def _local_path(url: str) -> Path:
    path = url.split("://", 1)[1] if "://" in url else url
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
    elif url.startswith("journal://"):
        path = url.removeprefix("journal://")
        path = path.removeprefix("/") if path.startswith("/.") else path
    return Path(path)


@contextlib.contextmanager
def _file_lock(database: Path, key: str, timeout: float):
    import fcntl

    path = database.with_name(f".{database.name}.{key[:12]}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConfigError(_lock_error(str(database), timeout)) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _sql_lock(url: str, scheme: str, key: str, timeout: float):
    import sqlalchemy

    engine = with_retries(lambda: sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool), "storage")
    number = int(key[:15], 16)  # fits PostgreSQL's bigint advisory key
    try:
        with with_retries(engine.connect, f"storage {redact(url)}") as conn:
            if scheme == "postgresql":
                conn.execute(sqlalchemy.text(f"SET lock_timeout = '{int(timeout * 1000)}ms'"))
                try:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": number})
                except sqlalchemy.exc.OperationalError:
                    raise ConfigError(_lock_error(redact(url), timeout)) from None
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": number})
            else:
                got = conn.execute(sqlalchemy.text("SELECT GET_LOCK(:k, :t)"), {"k": key[:60], "t": timeout}).scalar()
                if got != 1:
                    raise ConfigError(_lock_error(redact(url), timeout))
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:k)"), {"k": key[:60]})
    finally:
        engine.dispose()


@contextlib.contextmanager
def _redis_lock(url: str, key: str, timeout: float):
    import uuid

    import redis

    client = redis.Redis.from_url(url)
    token, name = uuid.uuid4().hex, f"spp-search:lock:{key}"
    deadline = time.monotonic() + timeout
    while not with_retries(lambda: client.set(name, token, nx=True, px=int(timeout * 1000)), f"storage {redact(url)}"):
        if time.monotonic() > deadline:
            raise ConfigError(_lock_error(redact(url), timeout))
        time.sleep(0.05)
    try:
        yield
    finally:
        if client.get(name) == token.encode():
            client.delete(name)


def _lock_error(where: str, timeout: float) -> str:
    return (
        f"`storage` must grant the study's start-up lock, but {where} did not within {timeout:g} s. "
        "Another driver may be stuck starting: stop it, or wait and retry."
    )


class RetryingStorage(BaseStorage, BaseHeartbeat):
    """An Optuna storage whose every call retries a lost connection with backoff (1, 2, 4, 8 s).

    Without it a storage that went away for a few seconds (a restarted server, a network blip)
    ended every driver with a traceback from whichever call met it first. The methods of
    ``BaseStorage`` and ``BaseHeartbeat`` delegate to the wrapped storage through ``with_retries``;
    heartbeat support is the wrapped storage's own (``get_heartbeat_interval`` is None for journal
    storages). ``inner`` is kept for code that needs the real storage type.
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
        return with_retries(lambda: call(*args, **kwargs), self._where, transient=_connection_lost)

    method.__name__ = name
    return method


def _connection_lost(exc: Exception) -> bool:
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
