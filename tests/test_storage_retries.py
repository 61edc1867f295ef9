"""Brief outages are retried with backoff, then reported in one line; credentials stay hidden."""

from __future__ import annotations

import pytest

from spp_search.infra import retry
from spp_search.infra.errors import ConfigError
from spp_search.infra.retry import with_retries
from spp_search.infra.storage import make_storage


def test_a_brief_outage_is_retried(monkeypatch):
    monkeypatch.setattr(retry.time, "sleep", lambda s: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("connection refused")
        return "ok"

    assert with_retries(flaky, "storage x") == "ok" and len(calls) == 3


def test_a_long_outage_fails_clearly_without_the_password(monkeypatch):
    waits = []
    monkeypatch.setattr(retry.time, "sleep", waits.append)

    def down():
        raise ConnectionError("could not connect to postgresql://bob:hunter2@db/optuna")

    with pytest.raises(ConfigError, match="must be reachable") as info:
        with_retries(down, "storage postgresql://bob:***@db/optuna")
    assert "hunter2" not in str(info.value) and waits == [1.0, 2.0, 4.0, 8.0]


def test_bugs_are_not_retried(monkeypatch):
    monkeypatch.setattr(retry.time, "sleep", lambda s: pytest.fail("a bug must not be retried"))
    with pytest.raises(TypeError):
        with_retries(lambda: (_ for _ in ()).throw(TypeError("bug")), "storage x")


def test_unknown_storage_scheme_is_a_config_error():
    with pytest.raises(ConfigError, match="`storage` must be sqlite://"):
        make_storage("mongodb://localhost/x")


@pytest.mark.slow
def test_an_unreachable_tracking_server_stops_the_run_in_about_30_s(tmp_path):
    """MLflow's own HTTP retries (7, backoff 2) kept a run waiting for minutes; ours: 1, 2, 4, 8 s."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, str(root / "study.py"), "--trials", "1", "--tracking-uri", "http://127.0.0.1:1"]
    cmd += ["--storage", f"sqlite:///{tmp_path}/o.db", "--study-name", "unreachable"]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the run was still waiting for the tracking server after 120 s")
    err = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and "`tracking-uri` must be reachable" in err, done.stderr[-2000:]
    assert time.perf_counter() - start < 45
