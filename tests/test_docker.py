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


@pytest.mark.parametrize(("service", "handler"), [("study", cmd_run), ("worker", cmd_worker)])
def test_service_commands_are_valid_cli_calls(service, handler):
    services = load("compose.yaml")["services"]
    args = build_parser().parse_args(services[service]["command"])
    assert args.handler is handler
    assert args.tracking_uri == "http://mlflow:5000" and args.storage.startswith("postgresql://spp:pw@postgres")
    assert services[service]["build"]["dockerfile"] == "docker/Dockerfile.cpu"


def test_study_and_workers_share_one_study():
    services = load("compose.yaml")["services"]
    run = build_parser().parse_args(services["study"]["command"])
    worker = build_parser().parse_args(services["worker"]["command"])
    config = yaml.safe_load(Path(run.config.as_posix().replace("/app/", str(DOCKER.parent) + "/")).read_text())
    assert worker.study_name == config["study"]["name"] and worker.storage == run.storage
