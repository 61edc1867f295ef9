"""Optuna storages by URL scheme: one table says how to open each, how its trials stay alive, and
how drivers lock it.

* ``sqlite:///optuna.db`` (default), ``postgresql://user:pw@host/db``, ``mysql+pymysql://...``:
  ``RDBStorage`` with Optuna's heartbeat, so a trial whose driver died (SIGKILL, machine loss) is
  found stale after ``GRACE_S`` seconds and handled by the engine (failed, re-queued).
* ``journal:///path/to/study.log``: Optuna's journal storage on a file; ``redis://host:6379/0``:
  the journal storage on Redis. Journal storages have no heartbeat in Optuna 5: liveness comes
  from per-driver leases instead (``study.liveness``).

Every storage comes wrapped in ``RetryingStorage`` (``retry.py``). A new scheme is one entry of
``SCHEMES`` (how to open it, ``heartbeat`` or ``lease`` liveness, its lock) plus its tests.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalRedisBackend, JournalStorage

from spp_search.infra import locks
from spp_search.infra.errors import ConfigError, must
from spp_search.infra.optuna_private import cached
from spp_search.infra.redaction import redact
from spp_search.infra.retry import RetryingStorage, with_retries

HEARTBEAT_S = 5  # a running trial's heartbeat (RDB) or its driver's lease renewal (journal)
GRACE_S = 30  # a trial with no beat for this long belongs to a dead driver
LIVENESS = ("heartbeat", "lease")


@dataclass(frozen=True)
class Scheme:
    """How spp-search uses the storages of one URL scheme."""

    open: Callable[[str, Callable | None], BaseStorage]  # (url, stale-trial callback) -> storage
    liveness: str  # ``heartbeat`` (Optuna's own, RDB) or ``lease`` (``study.liveness``, journal)
    lock: Callable[[str, str, float], AbstractContextManager]  # (url, key, timeout): the start-up lock
    example: str  # shown when a URL's scheme is unknown


def _schema_race(exc: Exception) -> bool:
    """Two processes creating a fresh database's schema at once: the loser's insert of the schema
    version (or of a table) fails; a moment later the schema is there, so it is retried."""
    text = str(exc)
    return "alembic_version" in text or "already exists" in text


def _rdb(url: str, on_stale: Callable | None) -> BaseStorage:
    sqlite = url.startswith("sqlite")
    engine = {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}
    rdb = with_retries(
        lambda: RDBStorage(
            url,
            engine_kwargs=engine,
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            heartbeat_stale_trial_callback=on_stale,
        ),
        _where(url),
        transient=_schema_race,
    )
    return cached(rdb)  # the cache Optuna's create_study puts in front of an RDB storage


def _journal_file(url: str, on_stale: Callable | None) -> BaseStorage:
    return JournalStorage(JournalFileBackend(str(locks.local_path(url))))


def _journal_redis(url: str, on_stale: Callable | None) -> BaseStorage:
    return with_retries(lambda: JournalStorage(JournalRedisBackend(url)), _where(url))


SCHEMES: dict[str, Scheme] = {
    "sqlite": Scheme(_rdb, "heartbeat", locks.file_lock, "sqlite:///optuna.db"),
    "postgresql": Scheme(_rdb, "heartbeat", locks.sql_lock, "postgresql://user@host/db"),
    "mysql": Scheme(_rdb, "heartbeat", locks.sql_lock, "mysql+pymysql://user@host/db"),
    "journal": Scheme(_journal_file, "lease", locks.file_lock, "journal:///study.log"),
    "redis": Scheme(_journal_redis, "lease", locks.redis_lock, "redis://host:6379/0"),
    "rediss": Scheme(_journal_redis, "lease", locks.redis_lock, "rediss://host:6380/0"),
}


def scheme_of(url: str) -> Scheme:
    """The table entry of ``url``'s scheme (``mysql+pymysql`` is ``mysql``); a one-line error for
    an unknown one, listing the known schemes."""
    name = url.split(":", 1)[0].split("+", 1)[0].lower()
    if name not in SCHEMES:
        known = [s.example.split("//")[0] + "//" for s in SCHEMES.values()]
        rule = f"be {', '.join(known[:-1])} or {known[-1]}"
        raise ConfigError(must("storage", rule, redact(url), "See docs/scale-out.md."))
    return SCHEMES[name]


def _where(url: str) -> str:
    return f"storage {redact(url)}"


def make_storage(url: str, on_stale: Callable | None = None) -> BaseStorage:
    """The Optuna storage for ``url``, reachable or a clear error, retrying every call."""
    return RetryingStorage(scheme_of(url).open(url, on_stale), _where(url))


def load_study(name: str, storage: str) -> optuna.Study:
    """Load an existing study, or fail with the names that storage holds (creating nothing)."""
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
        raise ConfigError(
            must(
                "storage",
                "point at an existing study database",
                redact(storage),
                "Run the study first, or pass the --storage it used.",
            )
        )
    store = make_storage(storage)
    try:
        return optuna.load_study(study_name=name, storage=store)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(store)]
        raise ConfigError(
            must(
                "study-name",
                f"name a study in the storage (it holds {names})",
                name,
                "Pass --study-name and --storage of a study you ran.",
            )
        ) from None


@contextlib.contextmanager
def exclusive(url: str, name: str, timeout: float = locks.LOCK_TIMEOUT_S):
    """Hold the lock named ``name`` in the storage at ``url`` (its scheme's kind of lock), across
    processes and machines: starting a study (tickets, arms, MLflow parent run) runs under it."""
    key = hashlib.sha256(f"spp-search:{name}".encode()).hexdigest()
    with scheme_of(url).lock(url, key, timeout):
        yield


def lost_study(url: str, name: str, known_trials: int) -> str | None:
    """Why the storage at ``url`` no longer holds study ``name`` as a driver knew it (with
    ``known_trials`` trials), read afresh (a new connection, no cache); None if it does.

    Asked after a study failed: a Redis database flushed or a database file replaced mid-study
    shows up as an error of whatever call met it first (``Cannot tell a WAITING trial``).
    """
    try:
        store = scheme_of(url).open(url, None)
        names = [s.study_name for s in store.get_all_studies()]
        if name not in names:
            return f"storage {redact(url)} no longer holds study {name!r} (it holds {len(names)} studies)"
        now = len(store.get_all_trials(store.get_study_id_from_name(name), deepcopy=False))
    except Exception as exc:  # noqa: BLE001 - unreadable now: say so, with what it raised
        return f"storage {redact(url)} can no longer be read ({type(exc).__name__}: {str(exc)[:200]})"
    if now < known_trials:
        return f"storage {redact(url)} holds {now} of study {name!r}'s {known_trials} trials"
    return None
