"""Docker files, checked without a Docker engine: hadolint, the Compose schema, and commands
that must agree with the CLI."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from compose_spec import PyCompose

from spp_search.cli import build_parser, cmd_run, cmd_worker

DOCKER = Path(__file__).resolve().parent.parent / "docker"
ENV = {"POSTGRES_PASSWORD": "pw"}


def interpolate(text: str, env: dict) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} substitution."""

    def sub(match: re.Match) -> str:
        name, op, arg = match.groups()
        if name in env:
            return env[name]
        if op == ":-":
            return arg
        raise KeyError(f"{name}: {arg}")

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", sub, text)


def load(name: str, env: dict = ENV) -> dict:
    return yaml.safe_load(interpolate((DOCKER / name).read_text(), env))  # resolves YAML merge keys


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_hadolint_passes(dockerfile):
    done = subprocess.run([shutil.which("hadolint"), str(DOCKER / dockerfile)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_dockerfile_copies_what_exists_and_runs_study_py(dockerfile):
    text = (DOCKER / dockerfile).read_text()
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        for source in line.split()[:-1]:
            assert (DOCKER.parent / source).exists(), source
    assert 'ENTRYPOINT ["python", "/app/study.py"]' in text and "USER 10001" in text


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_the_build_context_holds_only_what_the_images_copy(dockerfile):
    """No `.dockerignore` sent the whole checkout (`.venv/` alone is 3.5 GB) as the context: it
    now lets through only what the Dockerfiles copy, and each of those."""
    lines = (DOCKER.parent / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    text = (DOCKER / dockerfile).read_text()
    copied = {source for line in re.findall(r"^COPY (.+)$", text, re.M) for source in line.split()[:-1]}
    assert copied == allowed


def test_compose_files_follow_the_compose_spec():
    merged = load("compose.yaml")
    PyCompose.from_yaml(yaml.safe_dump(merged)).validate()
    gpu = load("compose.gpu.yaml")
    PyCompose.from_yaml(
        yaml.safe_dump({"services": {"worker": {**merged["services"]["worker"], **gpu["services"]["worker"]}}})
    ).validate()


def test_the_schema_check_can_fail():
    broken = load("compose.yaml")
    broken["services"]["mlflow"]["ports"] = [{"published": "not-a-port", "target": "x"}]
    with pytest.raises(ValueError):
        PyCompose.from_yaml(yaml.safe_dump(broken)).validate()


def test_password_is_required_not_written():
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        load("compose.yaml", env={})
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?" in (DOCKER / "compose.yaml").read_text()


def test_servers_publish_on_loopback_only():
    services = load("compose.yaml")["services"]
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published and all(str(p).startswith("127.0.0.1:") for p in published)


def _argv(service: dict) -> list[str]:
    entry = service.get("entrypoint", [])
    return [*(entry if isinstance(entry, list) else [entry]), *service.get("command", [])]


def test_no_secret_on_a_command_line():
    """compose passed the database password in `--storage`, `--backend-store-uri` and the
    dashboard's URL: visible in `ps` and `docker inspect`. It travels in the environment now."""
    services = load("compose.yaml", env={"POSTGRES_PASSWORD": "pw-s3cret"})["services"]
    assert all("pw-s3cret" not in " ".join(map(str, _argv(s))) for s in services.values())
    assert "STORAGE" not in services["study"]["environment"]  # the old name nothing read
    for name in ("study", "worker", "dashboard"):
        assert "pw-s3cret@postgres" in services[name]["environment"]["SPP_SEARCH_STORAGE"]
    assert "pw-s3cret@postgres" in services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]


@pytest.mark.parametrize(("service", "handler"), [("study", cmd_run), ("worker", cmd_worker)])
def test_service_commands_are_valid_cli_calls(service, handler, monkeypatch):
    from spp_search.infra import environment

    services = load("compose.yaml")["services"]
    for name, value in services[service]["environment"].items():
        monkeypatch.setenv(name, value)
    args = build_parser().parse_args(services[service]["command"])
    assert args.handler is handler
    assert environment.tracking_uri(args.tracking_uri) == "http://mlflow:5000"
    assert environment.storage_url(args.storage).startswith("postgresql://spp:pw@postgres")
    assert services[service]["build"]["dockerfile"] == "docker/Dockerfile.cpu"


def test_study_and_workers_share_one_study():
    services = load("compose.yaml")["services"]
    run = build_parser().parse_args(services["study"]["command"])
    worker = build_parser().parse_args(services["worker"]["command"])
    config = yaml.safe_load(Path(run.config.as_posix().replace("/app/", str(DOCKER.parent) + "/")).read_text())
    assert worker.study_name == config["study"]["name"]
    assert services["worker"]["environment"] == services["study"]["environment"]


def _mlflow_answers(service: dict, tmp_path: Path, environment: dict) -> int:
    """Start the compose MLflow service's command here (SQLite for its PostgreSQL, a free port on
    127.0.0.1) and return the status of a request sent as a worker sends it: `Host: mlflow:5000`."""
    import os
    import socket
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [str(a) for a in service["command"]]
    argv[argv.index("--host") + 1], argv[argv.index("--port") + 1] = "127.0.0.1", str(port)
    argv[argv.index("--artifacts-destination") + 1] = str(tmp_path / "artifacts")
    env = {**os.environ, **environment, "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    server = subprocess.Popen([mlflow, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1"
        request = urllib.request.Request(url, headers={"Host": "mlflow:5000"})
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return answer.status
            except urllib.error.HTTPError as error:
                return error.code
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline and server.poll() is None, "the MLflow server did not start"
                time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.slow
def test_the_mlflow_service_answers_the_workers_host_header(tmp_path):
    """MLflow 3's server answered `Host: mlflow:5000` with 403 (DNS-rebinding guard): compose's
    workers failed at their first metric. With the service's environment it answers 200."""
    service = load("compose.yaml")["services"]["mlflow"]
    environment = {k: str(v) for k, v in service["environment"].items() if k != "MLFLOW_BACKEND_STORE_URI"}
    assert _mlflow_answers(service, tmp_path / "fixed", environment) == 200
    without = {k: v for k, v in environment.items() if not k.startswith("MLFLOW_SERVER_ALLOWED")}
    assert _mlflow_answers(service, tmp_path / "default", without) == 403  # the check can fail


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def test_every_installed_package_is_pinned():
    """Issue 24 item 5: `wheel` (pulled in by TensorFlow's astunparse) was installed at whatever
    version the index had that day: `pip install -c constraints.txt` pins only what the file lists.
    Every distribution of this environment (installed by the README's command, a superset of what
    the image installs) is pinned at its installed version. pip and setuptools come with the venv;
    the build backend is pinned in pyproject.toml's build-system."""
    from importlib.metadata import distributions

    root = DOCKER.parent
    lines = [line.split("#")[0].strip() for line in (root / "constraints.txt").read_text().splitlines()]
    pins = dict((_name(n), v.split(";")[0].strip()) for n, v in (line.split("==", 1) for line in lines if "==" in line))
    installed = {_name(d.metadata["Name"]): d.version for d in distributions()}
    unpinned = {n: v for n, v in installed.items() if n not in pins and n not in ("pip", "setuptools", "spp-search")}
    assert unpinned == {}, f"add to constraints.txt: {unpinned}"
    assert {n: v for n, v in installed.items() if n in pins and pins[n] != v} == {}
    assert re.search(r'requires = \["setuptools==[\d.]+"\]', (root / "pyproject.toml").read_text())
