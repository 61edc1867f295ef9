"""The command line fits the ecosystem: the same study options on every study command, a
``spp-search`` script and ``python -m spp_search``, the default experiment shipped in the wheel,
Optuna's experimental warnings off the console, and optuna-dashboard on the study's storage."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
import requests

from spp_search.cli import COMMANDS, build_parser
from spp_search.infra.process import quiet_libraries

ROOT = Path(__file__).resolve().parent.parent
STUDY_OPTIONS = ["--study-name", "s", "--storage", "sqlite:///x.db", "--tracking-uri", "sqlite:///m.db"]
REQUIRED = {
    "export-best": ["--out", "b.yaml"],
    "train": ["--out", "m.keras"],
    "doctor": ["--model", "m.keras", "--data", "photos"],
}


@pytest.mark.parametrize("command", [c for c in COMMANDS])
def test_every_study_command_takes_the_study_options(command):
    """export-best and train refused --tracking-uri, which the other commands took."""
    args = build_parser().parse_args([command, *STUDY_OPTIONS, *REQUIRED.get(command, [])])
    assert (args.study_name, args.storage, args.tracking_uri) == ("s", "sqlite:///x.db", "sqlite:///m.db")


def _quiet_env() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1"}


@pytest.mark.parametrize(
    ("command", "prog"),
    [
        ([str(Path(sys.executable).parent / "spp-search")], "spp-search"),
        ([sys.executable, "-m", "spp_search"], "python -m spp_search"),
    ],
    ids=["console-script", "python-m"],
)
def test_the_console_script_and_the_module_run_the_cli(command, prog, tmp_path):
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0 and f"usage: {prog}" in done.stdout and "dashboard" in done.stdout


@pytest.mark.parametrize(
    "command",
    [[str(Path(sys.executable).parent / "spp-search")], ["-m", "spp_search"]],
    ids=["console-script", "python-m"],
)
def test_the_entry_points_import_no_backend_before_a_command_chooses_one(command, tmp_path):
    """`spp-search train --backend jax` failed: importing the package had already started Keras
    on TensorFlow (only study.py kept the package from importing Keras); export-best paid
    TensorFlow's import."""
    args = [sys.executable, "-X", "importtime", *command, "export-best", "--out", "b.yaml"]
    args += ["--storage", f"sqlite:///{tmp_path}/none.db"]
    env = _quiet_env()
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 2 and "existing study database" in done.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert not imported & {"keras", "tensorflow", "jax"}, imported & {"keras", "tensorflow", "jax"}


def test_optunas_experimental_warnings_stay_off_the_console(tmp_path):
    """Heartbeats (every RDB storage here) printed an ExperimentalWarning on every run."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_libraries()
        optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/o.db", heartbeat_interval=5, grace_period=30)
        JournalStorage(JournalFileBackend(str(tmp_path / "j.log")))
        optuna.storages.fail_stale_trials(optuna.create_study(storage=f"sqlite:///{tmp_path}/o.db"))  # every claim
    assert not [w for w in seen if "experimental" in str(w.message).lower()], [str(w.message) for w in seen]


@pytest.mark.slow
def test_the_default_experiment_resolves_from_an_installed_wheel(tmp_path):
    """The default config was found only next to a source checkout."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=300,
    )
    wheel = next(wheels.glob("spp_search-*.whl"))
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    # the installed copy, not the checkout: -I ignores PYTHONPATH and the editable install's finder
    # sits in site-packages, which -S keeps out; the dependencies come from this venv's site-packages
    site = next(p for p in sys.path if p.endswith("site-packages"))
    code = (
        "import sys; sys.path[:0] = [sys.argv[1]]; sys.path.append(sys.argv[2]);"
        "from spp_search.cli import main; from spp_search.config.settings import shipped_experiment;"
        "import spp_search;"
        "print(spp_search.__file__); print(shipped_experiment());"
        "sys.exit(main(['export-best', '--out', 'b.yaml', '--storage', 'sqlite:///none.db']))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(target), site],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=_quiet_env(),
    )
    lines = done.stdout.splitlines()
    assert lines[0].startswith(str(target)) and lines[1] == str(
        target / "spp_search" / "experiments" / "default.yaml"
    ), (
        done.stdout,
        done.stderr[-2000:],
    )
    # the config resolved (the study's name came from it); the storage is what is missing
    assert done.returncode == 2 and "point at an existing study database" in done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_dashboard_serves_the_study(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="shown", storage=storage, direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "study.py"),
            "dashboard",
            "--study-name",
            "shown",
            "--storage",
            storage,
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_quiet_env(),
    )
    try:
        deadline, studies = time.time() + 120, None
        while time.time() < deadline and studies is None:
            with contextlib.suppress(requests.RequestException, ValueError, KeyError):
                studies = requests.get(f"http://127.0.0.1:{port}/api/studies", timeout=10).json()["study_summaries"]
            time.sleep(0.5)
        assert studies and studies[0]["study_name"] == "shown"
        page = requests.get(f"http://127.0.0.1:{port}/dashboard/studies/{studies[0]['study_id']}", timeout=60)
        assert page.ok and "<html" in page.text.lower()
        detail = requests.get(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}", timeout=60).json()
        assert len(detail["trials"]) == 2
    finally:
        process.terminate()  # the command stops on SIGTERM like on Ctrl-C (about 2 s)
        try:
            out, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
            raise AssertionError(f"the dashboard did not stop on SIGTERM: {out[-2000:]}") from None
    assert f"http://127.0.0.1:{port}/dashboard/studies/" in out


NATIVE_LOG = ("I0000", "W0000", "E0000", "absl::InitializeLog", "cuInit", "oneDNN", "cpu_feature_guard")


def test_a_study_keeps_native_log_lines_off_the_console_and_ends_saying_what_next(tmp_path):
    """TensorFlow/XLA C++ lines (`E0000 ... failed call to cuInit`) broke the progress bar; the
    study ended without saying where its results are or what to open next."""
    import yaml

    from tests.helpers import tiny_config

    raw = tiny_config(tmp_path, name="quiet", trials=2)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell
    env["SPP_SEARCH_LOG_DIR"] = str(tmp_path / "logs")
    done = subprocess.run(
        [sys.executable, str(ROOT / "study.py"), "--config", "c.yaml"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = done.stdout + done.stderr
    assert not [line for line in console.splitlines() if any(m in line for m in NATIVE_LOG)]
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("worker-*.log"))
    assert "I0000" in logs or "oneDNN" in logs  # the lines were kept, in the workers' log files
    assert "viewStateShareKey=spp-search" in done.stdout and "mlflow ui --backend-store-uri" in done.stdout
    assert "next: python study.py report --study-name quiet" in done.stdout
