"""The CPU image built and run for real (podman on a stand-in for python:3.11-slim, see
tests/containers.py): --help, a study on a mounted folder with report and export-best, the folder
errors, and compose's scale-out topology without a compose engine (the MLflow service's command in
the image answering the workers' Host header; a driver and two worker containers on the host
network against the local PostgreSQL and an MLflow container).

Set SPP_CONTAINER_RESULTS=FILE to write the figures (build time, image size, in-container study
time, Host-header statuses) as JSON: benchmarks/results/container.json came from that.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from spp_search.study.budget import counted
from tests import containers
from tests.helpers import fresh_database

pytestmark = [pytest.mark.container, pytest.mark.slow]
FIGURES: dict = {}
COMPOSE = containers.ROOT / "docker/compose.yaml"


@pytest.fixture(scope="module")
def image():
    reason = containers.unavailable()
    if reason:
        pytest.skip(reason)
    FIGURES.update(containers.build_image())
    yield containers.IMAGE
    out = os.environ.get("SPP_CONTAINER_RESULTS")
    if out:
        Path(out).write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")


def _ok(done, what: str) -> str:
    assert done.returncode == 0, f"{what} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_image_answers_help(image):
    out = _ok(containers.run("--help"), "--help")
    assert "export-best" in out and "doctor" in out


def test_a_study_on_a_mounted_folder_then_report_and_export_best(image, tmp_path):
    """What docs/scale-out.md tells a user: a host folder owned by uid 10001 mounted at /data."""
    data = containers.owned_folder(tmp_path / "data")
    start = time.monotonic()
    _ok(containers.run("--trials", "2", mounts={data: "/data"}, timeout=900), "the 2-trial study")
    FIGURES["study_2_trials_s"] = round(time.monotonic() - start, 1)
    _ok(containers.run("report", "--out", "report", mounts={data: "/data"}), "report")
    _ok(containers.run("export-best", "--out", "best.yaml", mounts={data: "/data"}), "export-best")
    _ok(containers.run("doctor", "--help", mounts={data: "/data"}), "doctor --help")  # the wheel ships every room
    best = yaml.safe_load((data / "best.yaml").read_text())
    assert best["study"]["trials"] == 1 and "levels" in json.dumps(best)
    made = {p.relative_to(data).as_posix() for p in data.rglob("*")}
    assert {"optuna.db", "mlflow.db", "best.yaml", "report/spp-default/report.md"} <= made
    assert not [p for p in made if p.endswith(".lock")], made  # the start-up lock leaves no file behind
    assert {p.stat().st_uid for p in data.rglob("*")} == {containers.UID}
    runs = MlflowClient(f"sqlite:///{data}/mlflow.db").search_runs(
        [MlflowClient(f"sqlite:///{data}/mlflow.db").get_experiment_by_name("spp-default").experiment_id]
    )
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)  # the study and its 2 trials
    digest = FIGURES["base"].split("@")[1]
    assert {r.data.tags["base_image"] for r in runs} == {f"python:3.11-slim@{digest}"}  # the base results came from


def test_a_folder_the_image_cannot_write_is_one_line(image, tmp_path):
    """A host folder owned by root: one line naming /data and the fix, no traceback, nothing written."""
    data = tmp_path / "root-owned"
    data.mkdir()
    done = containers.run("--trials", "1", mounts={data: "/data"})
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "/data" in lines[0] and "uid 10001" in lines[0], lines[0]
    assert list(data.iterdir()) == []


def _mlflow_service() -> dict:
    text = COMPOSE.read_text().replace("${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}", "unused")
    return yaml.safe_load(text)["services"]["mlflow"]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _start_mlflow(tmp_path: Path, environment: dict, name: str) -> tuple:
    """compose's MLflow service (its entrypoint, command and environment) in the image, on the
    host network at its own port 5000; returns the container process and its log."""
    service = _mlflow_service()
    port = int(service["command"][service["command"].index("--port") + 1])
    if not _port_free(port):
        pytest.skip(f"port {port} (the MLflow service's) is taken on this machine")
    artifacts = containers.owned_folder(tmp_path / f"{name}-artifacts")
    log = tmp_path / f"{name}.log"
    env = {k: str(v) for k, v in environment.items()}
    server = containers.start(
        *service["command"],
        log=log,
        env=env,
        network="host",
        entrypoint=service["entrypoint"][0],
        mounts={artifacts: "/mlartifacts"},
        name=f"spp-test-{name}-{os.getpid()}",
    )
    return server, log, port


def _status(port: int, server, log: Path, timeout: float = 180) -> int:
    """The status of a request sent as a worker sends it: `Host: mlflow:5000`."""
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1"
    request = urllib.request.Request(url, headers={"Host": f"mlflow:{port}"})
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline and server.poll() is None, log.read_text()[-3000:]
            time.sleep(1)


def _stop(server, port: int) -> None:
    server.terminate()
    server.wait(60)
    deadline = time.monotonic() + 30
    while not _port_free(port) and time.monotonic() < deadline:
        time.sleep(0.5)


def test_the_mlflow_service_in_the_image_answers_the_workers_host_header(image, tmp_path):
    """Issue 24 item 1, in the image: 403 with MLflow's default allowed hosts, 200 with compose's."""
    environment = {**_mlflow_service()["environment"], "MLFLOW_BACKEND_STORE_URI": "sqlite:////mlartifacts/m.db"}
    statuses = {}
    for label, env in (
        ("before", {k: v for k, v in environment.items() if not k.startswith("MLFLOW_SERVER_ALLOWED")}),
        ("after", environment),
    ):
        server, log, port = _start_mlflow(tmp_path, env, label)
        try:
            statuses[label] = _status(port, server, log)
        finally:
            _stop(server, port)
    FIGURES["mlflow_host_header"] = statuses
    assert statuses == {"before": 403, "after": 200}


def test_a_driver_and_two_worker_containers_meet_the_budget_exactly(image, tmp_path):
    """compose's topology on the host network: PostgreSQL (the local server) for Optuna and
    MLflow, compose's MLflow service in the image, the study service and two worker services."""
    total = 6
    with fresh_database("postgresql") as optuna_db, fresh_database("postgresql") as mlflow_db:
        service = _mlflow_service()
        server, log, port = _start_mlflow(
            tmp_path, {**service["environment"], "MLFLOW_BACKEND_STORE_URI": mlflow_db}, "mlflow"
        )
        try:
            assert _status(port, server, log) == 200
            env = {"SPP_SEARCH_STORAGE": optuna_db, "MLFLOW_TRACKING_URI": f"http://mlflow:{port}"}
            name = "spp-default"
            start = time.monotonic()
            procs = [
                containers.start(
                    "run",
                    "--trials",
                    str(total),
                    "--workers",
                    "1",
                    log=tmp_path / "study.log",
                    env=env,
                    network="host",
                    mounts={containers.owned_folder(tmp_path / "study"): "/data"},
                    name=f"spp-test-study-{os.getpid()}",
                )
            ]
            _wait_for_study(optuna_db, name, procs[0], tmp_path / "study.log")
            procs += [
                containers.start(
                    "worker",
                    "--study-name",
                    name,
                    "--workers",
                    "1",
                    log=tmp_path / f"w{i}.log",
                    env=env,
                    network="host",
                    mounts={containers.owned_folder(tmp_path / f"w{i}"): "/data"},
                    name=f"spp-test-worker{i}-{os.getpid()}",
                )
                for i in range(2)
            ]
            codes = [p.wait(timeout=1200) for p in procs]
            FIGURES["scale_out_6_trials_3_containers_s"] = round(time.monotonic() - start, 1)
            logs = {p.name: p.read_text()[-1500:] for p in tmp_path.glob("*.log")}
            assert codes == [0, 0, 0], logs
            study = optuna.load_study(study_name=name, storage=optuna_db)
            assert counted(study) == total, logs
            workers = {t.user_attrs.get("worker", "").split(":")[0] for t in study.trials}
            assert len(workers) >= 2, workers  # more than one container took trials
            client = MlflowClient(f"http://127.0.0.1:{port}")
            runs = client.search_runs([client.get_experiment_by_name(name).experiment_id], max_results=100)
            assert runs and all(r.info.status in ("FINISHED", "FAILED", "KILLED") for r in runs), [
                (r.info.run_name, r.info.status) for r in runs
            ]
            trial_runs = [r for r in runs if r.data.tags.get("spp_search.role") == "trial"]
            assert len(trial_runs) >= total
        finally:
            _stop(server, port)


def _wait_for_study(storage: str, name: str, driver, log: Path, timeout: float = 300) -> None:
    """Until the driver has created the study (workers join an existing one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert driver.poll() is None or driver.returncode == 0, log.read_text()[-3000:]
        try:
            optuna.load_study(study_name=name, storage=storage)
            return
        except KeyError:
            time.sleep(2)
    raise AssertionError(f"no study {name} after {timeout} s:\n{log.read_text()[-3000:]}")
