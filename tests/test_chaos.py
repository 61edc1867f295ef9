"""The chaos suite: a driver and three workers share one study's budget while processes are killed
and stopped and the storage goes away, then the study's promises are checked.

On PostgreSQL and on the Redis journal, behind a TCP proxy (``tests/proxy.py``): a seeded schedule
SIGKILLs one driver (with its trial worker) mid-trial, SIGKILLs another driver's trial worker
mid-trial, drops every storage connection for 10 s, and SIGSTOPs a third driver for longer than
the stale grace, then resumes it. At the end: exactly the total counted; no configuration run
twice (beyond retries of the same ticket); no Optuna trial and no MLflow run left RUNNING; every
MLflow trial run belongs to one Optuna trial; every driver that was not killed exits 0.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid
from pathlib import Path

import optuna
import psutil
import pytest
import yaml
from mlflow import MlflowClient

from spp_search.infra.storage import GRACE_S, make_storage
from spp_search.study.budget import NO_BUDGET, counted, superseded
from tests.helpers import fresh_database, spawn_study, tiny_config
from tests.proxy import Proxy

pytestmark = pytest.mark.slow
TOTAL = 40


class _Watcher:
    """Polls the study through its own direct (unproxied) connection."""

    def __init__(self, url: str) -> None:
        self.storage = make_storage(url)

    def study(self) -> optuna.Study | None:
        try:
            return optuna.load_study(study_name="chaos", storage=self.storage)
        except KeyError:
            return None

    def wait(self, condition, what: str, timeout: float = 600) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            study = self.study()
            if study is not None and condition(study):
                return
            time.sleep(0.5)
        raise AssertionError(f"{what} not within {timeout} s")

    def running_on(self, pid: int):
        return lambda s: any(
            t.user_attrs.get("worker", "").endswith(f":{pid}")
            for t in s.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        )


@pytest.fixture(params=["postgresql", "redis"])
def storage(request):
    """(direct URL, URL through the proxy, proxy) on a fresh database."""
    if os.environ.get("SPP_SKIP_SERVICES") == "1":
        pytest.skip("SPP_SKIP_SERVICES=1")
    if request.param == "postgresql":
        with fresh_database("postgresql") as url:
            proxy = Proxy(5432)
            yield url, url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"), proxy
            proxy.close()
    else:
        db = 1 + uuid.uuid4().int % 14
        proxy = Proxy(6379)
        import redis

        redis.Redis(port=6379, db=db).flushdb()
        yield f"redis://127.0.0.1:6379/{db}", f"redis://127.0.0.1:{proxy.port}/{db}", proxy
        proxy.close()
        redis.Redis(port=6379, db=db).flushdb()


def _record(kind: str, figures: dict) -> None:
    """With ``SPP_CHAOS_RESULTS=FILE``, append this run's figures to FILE (JSON, per storage):
    ``SPP_CHAOS_RESULTS=benchmarks/results/chaos.json pytest tests/test_chaos.py`` (the README's)."""
    path = os.environ.get("SPP_CHAOS_RESULTS")
    if not path:
        return
    results = json.loads(Path(path).read_text()) if Path(path).is_file() else {}
    results.setdefault(kind, []).append({"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **figures})
    Path(path).write_text(json.dumps(results, indent=2))


def test_the_budget_and_the_records_survive_kills_stops_and_a_storage_outage(storage, tmp_path):
    direct, proxied, proxy = storage
    rng = random.Random(11)
    raw = tiny_config(tmp_path, name="chaos", trials=TOTAL, epochs=1, workers=1, storage=proxied, max_retries=3)
    config = tmp_path / "chaos.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    tracking = raw["study"]["tracking_uri"]
    join = ["worker", "--study-name", "chaos", "--storage", proxied, "--tracking-uri", tracking, "--workers", "1"]
    watcher, start = _Watcher(direct), time.time()
    drivers = {"driver": spawn_study("--config", str(config), log=tmp_path / "driver.log")}
    watcher.wait(lambda s: counted(s) >= 1, "the first trial")
    drivers.update({f"worker{i}": spawn_study(*join, log=tmp_path / f"worker{i}.log") for i in (1, 2, 3)})
    events: list[str] = []

    # 1. SIGKILL a whole driver (and its trial worker) mid-trial: its trial goes stale, is re-queued
    victim = drivers["worker1"]
    watcher.wait(lambda s: counted(s) >= rng.randint(3, 6), "trials before the first kill")
    watcher.wait(watcher.running_on(victim.pid), "a trial on the first victim")
    os.killpg(victim.pid, signal.SIGKILL)
    events.append("SIGKILL driver worker1")
    # 2. SIGKILL another driver's trial worker mid-trial: a crash, retried
    host = drivers["worker2"]
    watcher.wait(watcher.running_on(host.pid), "a trial on worker2")
    time.sleep(rng.uniform(0.5, 2.0))
    children = psutil.Process(host.pid).children()
    trial_workers = [
        c for c in children if "spawn_main" in " ".join(c.cmdline()) and "resource_tracker" not in " ".join(c.cmdline())
    ]
    if trial_workers:
        trial_workers[0].kill()
        events.append("SIGKILL worker2's trial worker")
    # 3. the storage goes away for 10 s
    watcher.wait(lambda s: counted(s) >= 14, "trials before the outage")
    proxy.outage(10)
    events.append("storage outage 10 s")
    # 4. SIGSTOP a driver for longer than the stale grace, then let it go on
    stopped = drivers["worker3"]
    watcher.wait(watcher.running_on(stopped.pid), "a trial on worker3")
    os.killpg(stopped.pid, signal.SIGSTOP)
    time.sleep(GRACE_S + 15)
    os.killpg(stopped.pid, signal.SIGCONT)
    events.append(f"SIGSTOP worker3 for {GRACE_S + 15:g} s")

    codes = {name: p.wait(timeout=900) for name, p in drivers.items() if p is not victim}
    wall = time.time() - start
    study = watcher.study()
    trials = study.get_trials(deepcopy=False)
    gone = superseded(trials)
    kept = [t for t in trials if t.number not in gone and t.user_attrs.get("outcome") != NO_BUDGET]
    configs = [json.dumps(t.params, sort_keys=True) for t in kept]
    duplicates = len(configs) - len(set(configs))
    requeued = len(gone)
    client = MlflowClient(tracking)
    runs = client.search_runs([client.get_experiment_by_name("chaos").experiment_id], max_results=1000)
    children = [r for r in runs if r.data.tags.get("spp_search.role") == "trial"]
    stale = sum(r.data.tags.get("outcome") == "stale" for r in children)  # found stale while it trained
    lost = sum("no heartbeat" in r.data.tags.get("error_message", "") for r in children)
    logs = "\n".join(f"== {n}\n" + (tmp_path / f"{n}.log").read_text()[-1500:] for n in drivers)
    print(
        f"\nchaos ({direct.split(':')[0]}): {'; '.join(events)}; {len(kept)} counted of {len(trials)} trials, "
        f"{requeued} re-queued ({lost} by a dead driver's expired heartbeat or lease, {stale} stale while they "
        f"trained), {duplicates} duplicate configurations, {proxy.drops} storage outage(s), "
        f"{wall:.0f} s wall"
    )
    _record(
        direct.split(":")[0],
        {
            "events": events,
            "counted": len(kept),
            "trials": len(trials),
            "requeued": requeued,
            "lost_driver": lost,
            "stale_while_training": stale,
            "duplicates": duplicates,
            "outages": proxy.drops,
            "wall_s": round(wall, 1),
            "exit_codes": codes,
        },
    )
    assert set(codes.values()) == {0}, (codes, logs)
    assert counted(study) == TOTAL and len(kept) == TOTAL, logs
    assert duplicates == 0
    assert not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    assert not [r for r in runs if r.info.status == "RUNNING"]
    owned = [t.user_attrs["mlflow_run_id"] for t in trials if "mlflow_run_id" in t.user_attrs]
    assert len(owned) == len(set(owned)) and {r.info.run_id for r in children} == set(owned)
    assert requeued >= 2  # the killed driver's trial and the killed trial worker's, at least
