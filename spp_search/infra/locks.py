"""Locks across processes and machines, one kind per storage (chosen by ``storage.SCHEMES``).

Drivers that start together (``run`` twice, or the Compose file's driver and workers) must not
both create the study's tickets, ablation arms or MLflow parent run: that part of starting a
study runs under a lock held in the study's own storage (``storage.exclusive``). Each lock takes
``(url, key, timeout)``; one not obtained within ``timeout`` is a one-line ``ConfigError``.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from spp_search.infra.errors import ConfigError
from spp_search.infra.redaction import redact
from spp_search.infra.retry import with_retries

LOCK_TIMEOUT_S = 120.0


def local_path(url: str) -> Path:
    """The file of a ``sqlite:///`` or ``journal://`` URL (``journal:///./x.log`` is relative)."""
    path = url.split("://", 1)[1] if "://" in url else url
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
    elif url.startswith("journal://"):
        path = url.removeprefix("journal://")
        path = path.removeprefix("/") if path.startswith("/.") else path
    return Path(path)


@contextlib.contextmanager
def file_lock(url: str, key: str, timeout: float):
    """``flock`` on a file beside the database or journal (SQLite and journal files: one host).

    The lock file is removed by its holder before it lets go, so none is left behind. A waiter
    may then hold a lock on a file that is gone while a newcomer locks a new one: so a lock
    counts only when the file locked is still the one at the path (same inode), else it retries.
    """
    import fcntl

    database = local_path(url)
    path = database.with_name(f".{database.name}.{key[:12]}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConfigError(_lock_error(str(database), timeout)) from None
                time.sleep(0.05)
                continue
            if not _same_file(handle, path):  # its holder removed it as we locked it: lock afresh
                continue
            try:
                yield
            finally:
                path.unlink(missing_ok=True)
                fcntl.flock(handle, fcntl.LOCK_UN)
            return


def _same_file(handle, path: Path) -> bool:
    """``handle`` is the file now at ``path`` (not one its last holder has since removed)."""
    try:
        return os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def sql_lock(url: str, key: str, timeout: float):
    """PostgreSQL: an advisory lock; MySQL/MariaDB: ``GET_LOCK``."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
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
def redis_lock(url: str, key: str, timeout: float):
    """A ``SET NX`` key with an expiry."""
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
