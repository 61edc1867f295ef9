"""Hostile input and faults (issue 22): each gets one clear line, exit 2 (an input to fix) or 1 (the
host failed), never a traceback on the console, and a refused run leaves no study behind.

Against real stores: SQLite files, PostgreSQL, a Redis journal on a database number of its own, and
small tmpfs mounts for a full disk and a read-only file system (skipped where mounting is not
allowed). The SPP layer's edge inputs are ``test_spp_edges.py``'s.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml

from spp_search.cli import main
from tests.helpers import STUDY_PY, tiny_config

pytestmark = pytest.mark.hostile


def _write(tmp_path: Path, raw: dict, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _refused(capsys, argv: list[str], code: int = 2) -> str:
    """Run the CLI in-process; it must exit ``code`` with one line on stderr and no traceback."""
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _studies(url: str) -> list[str]:
    """The studies a storage holds (none when its SQLite file was never created)."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return []
    return optuna.get_all_study_names(url)


# --- bad input: exit 2, nothing written -------------------------------------------------------


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"", "(empty)"),  # item 5: it ran 50 copies of the default study before
        (bytes(range(256)) * 4, "UTF-8 text"),  # item 11: a binary file
        (b"study:\n  name: a\n  trials: 2\nstudy:\n  name: b\n", "'study' appears twice"),  # item 9
        (b"study:\n  trials: 2\n  trials: 3\n", "'trials' appears twice"),
    ],
    ids=["empty", "binary", "duplicate-section", "duplicate-key"],
)
def test_a_config_file_that_is_not_a_config_is_refused(tmp_path, capsys, monkeypatch, content, fragment):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    assert fragment in _refused(capsys, ["run", "--config", str(path)])
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    from spp_search.config.settings import read_file

    path = tmp_path / "c.yaml"
    path.write_text("base: &b {trials: 2}\nstudy:\n  <<: *b\n  name: merged\n")
    assert read_file(path)["study"] == {"trials": 2, "name": "merged"}


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--trials", "1000000000"], "at most 10000"),  # item 4: it queued tickets forever
        (["--workers", "1000"], "[0, 64]"),  # item 10
        (["--study-name", "a" * 300], "(300 characters)"),  # item 8: report could not use it
        (["--study-name", "../escape"], "study-name"),
        (["--study-name", "tab\there"], "printable"),
        # the second pass (inputs of our own choosing)
        (["--max-retries", "1000000"], "[0, 10]"),
        (["--epochs", "100000000"], "[1, 10000]"),
        (["--storage", ""], "be a URL when given"),
        (["--storage", "sqlite:///"], "name a database file"),
        (["--storage", "journal:///no/such/folder/j.log"], "be in an existing folder"),
        (["--storage", "sqlite:////no/such/folder/o.db"], "be in an existing folder"),
    ],
    ids=[
        "trials",
        "workers",
        "long-name",
        "dot-name",
        "control-char",
        "retries",
        "epochs",
        "empty-storage",
        "sqlite-no-file",
        "journal-no-folder",
        "sqlite-no-folder",
    ],
)
def test_limits_protect_the_user(tmp_path, capsys, argv, fragment):
    raw = tiny_config(tmp_path)
    err = _refused(capsys, ["run", "--config", str(_write(tmp_path, raw)), *argv])
    assert fragment in err
    assert _studies(raw["study"]["storage"]) == []


def test_train_refuses_zero_epochs(tmp_path, capsys):
    """Second pass: `train --epochs 0` trained with the default count."""
    raw = tiny_config(tmp_path)
    raw["space"] = {}
    err = _refused(
        capsys, ["train", "--config", str(_write(tmp_path, raw)), "--out", str(tmp_path / "m.keras"), "--epochs", "0"]
    )
    assert "`epochs` must be an integer in [1, 10000]" in err and not (tmp_path / "m.keras").exists()


def test_next_steps_quote_a_name_with_spaces(tmp_path):
    """Second pass: `report` printed `--study-name my study` unquoted."""
    import shlex

    from spp_search.cli import report_next_steps
    from spp_search.config.settings import build_config

    config = build_config(tiny_config(tmp_path, name="my study"))
    line = next(line for line in report_next_steps(config) if "export-best" in line)
    assert "--study-name 'my study'" in line and shlex.split(line.split("next: ")[-1])


def test_workers_are_limited_per_core(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    raw = tiny_config(tmp_path)
    err = _refused(capsys, ["run", "--config", str(_write(tmp_path, raw)), "--workers", "20"])
    assert "at most 8 on 2 CPU cores" in err
    assert _studies(raw["study"]["storage"]) == []


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _truncated_sqlite(path: Path) -> None:
    optuna.create_study(study_name="x", storage=f"sqlite:///{path}")
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2)


@pytest.mark.parametrize(
    "store, break_it, fragment",
    [
        ("storage", _garbage, "file is not a database"),
        ("storage", _truncated_sqlite, "malformed"),
        ("tracking", _garbage, "file is not a database"),
    ],
    ids=["random-optuna-db", "truncated-optuna-db", "random-mlflow-db"],
)
def test_a_corrupt_database_is_named_and_nothing_is_created(tmp_path, capsys, store, break_it, fragment):
    """Item 6: before, a garbage mlflow.db failed after the Optuna study and a ticket were made."""
    raw = tiny_config(tmp_path)
    broken = tmp_path / ("optuna.db" if store == "storage" else "mlflow.db")
    break_it(broken)
    err = _refused(capsys, ["run", "--config", str(_write(tmp_path, raw))])
    assert fragment in err and str(broken.name) in err and "aside" in err
    if store == "tracking":
        assert _studies(raw["study"]["storage"]) == []


@pytest.mark.parametrize("damage", ["random", "bad-line"])
def test_a_corrupt_journal_file_is_named(tmp_path, capsys, damage):
    journal = tmp_path / "j.log"
    if damage == "random":
        _garbage(journal)
    else:
        optuna.create_study(
            study_name="other",
            storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))),
        )
        with journal.open("a") as f:
            f.write('{"op_code": 5, "bad\n')
    raw = tiny_config(tmp_path, storage=f"journal:///{journal}")
    err = _refused(capsys, ["run", "--config", str(_write(tmp_path, raw))])
    assert "Optuna journal" in err and str(journal) in err


@contextlib.contextmanager
def _mounted(path: Path, options: str):
    """A tmpfs at ``path`` (``options``: e.g. ``size=3m`` or ``ro``); skips where mounting fails."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def read_only(tmp_path):
    with _mounted(tmp_path / "ro", "ro,size=1m") as path:
        yield path


@pytest.mark.parametrize("store", ["storage", "tracking_uri"])
def test_a_read_only_store_folder_is_refused_before_anything_is_written(
    tmp_path, capsys, monkeypatch, read_only, store
):
    """Item 7: a read-only storage folder failed at its lock file (OSError), a read-only tracking
    folder after minutes of MLflow retries, with a WAITING trial left behind."""
    monkeypatch.chdir(tmp_path)
    raw = tiny_config(tmp_path, **{store: f"sqlite:///{read_only}/x.db"})
    err = _refused(capsys, ["run", "--config", str(_write(tmp_path, raw))])
    assert "read-only file system" in err and str(read_only) in err
    if store == "tracking_uri":
        assert _studies(raw["study"]["storage"]) == []


def test_export_best_into_a_read_only_folder_is_refused(tmp_path, capsys, read_only):
    raw = tiny_config(tmp_path)
    err = _refused(capsys, ["export-best", "--config", str(_write(tmp_path, raw)), "--out", str(read_only / "b.yaml")])
    assert "read-only file system" in err


def test_permanent_storage_errors_are_not_retried(tmp_path, capsys, monkeypatch):
    """Item 12: a missing database was retried 5 times over ~22 s before its message."""
    from spp_search.infra import retry

    waits = []
    monkeypatch.setattr(retry.time, "sleep", waits.append)
    raw = tiny_config(tmp_path, storage="postgresql://postgres@127.0.0.1:5432/no_such_db_spp")
    err = _refused(capsys, ["run", "--config", str(_write(tmp_path, raw))])
    assert 'database "no_such_db_spp" does not exist' in err and waits == []


def test_a_lost_connection_is_still_retried(monkeypatch):
    from sqlalchemy.exc import OperationalError

    from spp_search.infra import retry

    monkeypatch.setattr(retry.time, "sleep", lambda s: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
        return "ok"

    assert retry.with_retries(flaky, "storage x") == "ok" and len(calls) == 3


def test_an_unexpected_error_is_one_line_and_its_traceback_is_logged(tmp_path, capsys, monkeypatch):
    from spp_search.study import driver

    monkeypatch.setenv("SPP_SEARCH_LOG_DIR", str(tmp_path / "logs"))

    def broken(config, join=False):
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(driver, "run", broken)
    raw = tiny_config(tmp_path)
    err = _refused(capsys, ["run", "--config", str(_write(tmp_path, raw))], code=1)
    assert "RuntimeError: something inside broke" in err
    log = Path(err.split("traceback in ")[1].rstrip(")"))
    assert log.parent == tmp_path / "logs" and "Traceback" in log.read_text()


# --- names that enter queries ----------------------------------------------------------------


@pytest.mark.slow
def test_a_study_name_with_quotes_runs_and_finds_its_own_parent_run(tmp_path, monkeypatch):
    """Item 1: the name was pasted into an MLflow filter; `o'brien` crashed the run."""
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    name = 'o\'brien "quoted"'
    raw = tiny_config(tmp_path, name=name, trials=1, epochs=1)
    path = _write(tmp_path, raw)
    assert main(["run", "--config", str(path)]) == 0
    assert main(["run", "--config", str(path), "--trials", "2"]) == 0  # resumes: finds its parent run
    client = MlflowClient(raw["study"]["tracking_uri"])
    experiment = client.get_experiment_by_name(name)
    parents = client.search_runs([experiment.experiment_id], "tags.`spp_search.role` = 'study'")
    assert [r.data.tags["spp_search.study"] for r in parents] == [name]
    assert parents[0].info.status == "FINISHED"


# --- faults mid-study: exit 1, runs terminal, trials kept, a rerun resumes --------------------


def _cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3", "SPP_SEARCH_LOG_DIR": str(cwd)}
    return subprocess.run(
        [sys.executable, STUDY_PY, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out[-3000:]
    return errors[0]


def _run_states(tracking_uri: str, name: str) -> list[str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    return [r.info.status for r in client.search_runs([experiment.experiment_id])]


def _when_a_trial_finishes(storage, name: str, then, mid_trial: bool = False) -> threading.Thread:
    """A thread that calls ``then()`` once the study has a finished trial (within 240 s); with
    ``mid_trial``, once another trial has also reported its first epoch (it is still training)."""

    def ready(trials) -> bool:
        finished = any(t.state.is_finished() for t in trials)
        training = any(t.state.name == "RUNNING" and t.intermediate_values for t in trials)
        return finished and (training or not mid_trial)

    def watch():
        deadline = time.time() + 240
        while time.time() < deadline:
            with contextlib.suppress(Exception):
                if ready(optuna.load_study(study_name=name, storage=storage()).trials):
                    then()
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


@pytest.mark.slow
def test_a_full_disk_stops_the_study_keeps_its_trials_and_a_rerun_resumes(tmp_path):
    """Item 2: the tracking store's disk fills mid-study (after the first trial). Before: 1,900
    lines of traceback, the parent run RUNNING, the trial that met it a `crash` (using up its
    retries)."""
    from spp_search.study import budget

    disk = tmp_path / "disk"
    with _mounted(disk, "size=4m"):
        tracking = f"sqlite:///{disk}/mlflow.db"
        raw = tiny_config(tmp_path, name="full", trials=4, epochs=8, tracking_uri=tracking, workers=1)
        raw["study"]["pruner"] = "none"
        storage = raw["study"]["storage"]
        filler = disk / "filler"

        def fill():  # at once: the trial's next epoch log meets a full disk
            with filler.open("wb") as f:
                stats = os.statvfs(disk)
                os.posix_fallocate(f.fileno(), 0, stats.f_bavail * stats.f_frsize)

        watcher = _when_a_trial_finishes(lambda: storage, "full", fill, mid_trial=True)
        path = _write(tmp_path, raw)
        done = _cli("run", "--config", str(path), cwd=tmp_path)
        watcher.join()
        assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
        assert "disk full" in _one_error_line(done)
        study = optuna.load_study(study_name="full", storage=storage)
        outcomes = [t.user_attrs.get("outcome") for t in study.trials]
        assert "crash" not in outcomes and "host_error" in outcomes, outcomes
        assert "RUNNING" not in {t.state.name for t in study.trials}
        host = next(t for t in study.trials if t.user_attrs.get("outcome") == "host_error")
        again = [t for t in study.trials if t.user_attrs.get("retry_of") == host.number]
        assert len(again) == 1 and again[0].user_attrs["attempt"] == host.user_attrs.get("attempt", 1)
        kept = budget.counted(study)
        assert kept >= 1
        filler.unlink()
        done = _cli("run", "--config", str(path), cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert set(_run_states(tracking, "full")) <= {"FINISHED", "FAILED", "KILLED"}
        assert budget.counted(optuna.load_study(study_name="full", storage=storage)) == 4


@pytest.mark.slow
def test_a_wiped_redis_journal_is_named_and_every_run_ends(tmp_path):
    """Item 3: `redis-cli flushdb` mid-study gave `Cannot tell a WAITING trial`, the parent run
    RUNNING and a summary of "total 0"; nothing said the storage lost the study."""
    import redis

    db = 12
    url = f"redis://127.0.0.1:6379/{db}"
    client = redis.Redis(host="127.0.0.1", port=6379, db=db)
    client.flushdb()
    name = f"wiped-{uuid.uuid4().hex[:6]}"
    raw = tiny_config(tmp_path, name=name, trials=40, epochs=1, storage=url, workers=1)
    tracking = raw["study"]["tracking_uri"]

    def journal():
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalRedisBackend(url))

    wiper = _when_a_trial_finishes(journal, name, client.flushdb)
    try:
        done = _cli("run", "--config", str(_write(tmp_path, raw)), cwd=tmp_path)
    finally:
        wiper.join()
        client.flushdb()
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    line = _one_error_line(done)
    assert "no longer holds study" in line or "holds 0 of" in line or "can no longer be read" in line, line
    assert "RUNNING" not in _run_states(tracking, name)
