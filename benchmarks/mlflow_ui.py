"""Screenshots of the MLflow UI on a demo study, taken by headless Chromium (the README's).

``python -m benchmarks.mlflow_ui`` (needs ``chromium`` on the PATH, e.g. ``apt-get install
chromium``): runs a small study in a temporary folder with one healthy trial and one trial of each
failure that can be made to happen, plus a few sampled ones, retrains and registers the best,
serves the store with ``mlflow server`` on 127.0.0.1 and writes

* ``benchmarks/results/mlflow_ui_runs.png``: the study's saved view (trials grouped by outcome),
* ``benchmarks/results/mlflow_ui_charts.png``: its chart view (the losses, a divergence's spike), and
* ``benchmarks/results/mlflow_ui_failed_run.png``: a failed trial's run (its reason and tags),

with ``benchmarks/results/mlflow_ui.json`` recording the URLs and what was in the store.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import requests
import yaml

from benchmarks.common import RESULTS, environment
from spp_search.study.runs_view import runs_url

BASE = {"channel_policy": "pad_missing", "fault": "none", "learning_rate": 0.005, "optimizer": "adam"}
TRIALS = [
    BASE,
    {**BASE, "learning_rate": 50.0, "optimizer": "sgd"},  # diverged
    {**BASE, "fault": "allocate"},  # oom_host under the 1500 MiB budget
    {**BASE, "fault": "hang"},  # timeout
    {**BASE, "fault": "raise"},  # crash
    {**BASE, "channel_policy": "strict"},  # data_error on the unreadable files
]


def _config(root: Path) -> dict:
    return {
        "study": {
            "name": "spp-demo",
            "trials": len(TRIALS) + 4,
            "epochs": 3,
            "storage": f"sqlite:///{root}/optuna.db",
            "tracking_uri": f"sqlite:///{root}/mlflow.db",
            "device": "cpu",
            "workers": 2,
            "host_memory_budget": "1500MiB",
            "trial_timeout": 15.0,
            "max_retries": 0,
        },
        "data": {
            "synthetic": {"num_images": 96, "min_size": 16, "max_size": 40},
            "corruption": {"unreadable": 0.03},
            "cache_dir": str(root / "cache"),
        },
        "defaults": {"image_size": 24, "width": 8, "dense_units": 16, "batch_size": 16},
        "space": {
            "levels": {"choices": [[1], [1, 2], [1, 2, 4]]},
            "pooling": {"choices": ["max", "avg"]},
            "input_policy": {"choices": ["fixed", "variable_padded"]},
            "channel_policy": {"choices": ["pad_missing", "strict"]},
            "fault": {"choices": ["none", "allocate", "hang", "raise"]},
            "optimizer": {"choices": ["adam", "sgd"]},
            "learning_rate": {"low": 1e-3, "high": 50.0, "log": True},
        },
    }


def _study(root: Path) -> None:
    """The demo study, then the best retrained and registered (all through the CLI)."""
    from spp_search.cli import main

    raw = _config(root)
    path = root / "demo.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    study = optuna.create_study(study_name="spp-demo", storage=raw["study"]["storage"], direction="maximize")
    for trial in TRIALS:
        study.enqueue_trial(trial)
    os.chdir(root)  # MLflow's default artifact root (./mlartifacts) goes here
    assert main(["--config", str(path)]) == 0
    assert main(["export-best", "--config", str(path), "--out", "best.yaml", "--train", "--register", "spp-demo"]) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(root: Path, port: int) -> subprocess.Popen:
    """``mlflow server`` on ``root/mlflow.db`` at 127.0.0.1:``port``, once it answers."""
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--workers", "1"]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(240):
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                return process
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("mlflow server did not start")


def browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _chromium(url: str, action: list[str], budget_ms: int = 20000) -> str:
    found = browser()
    if found is None:
        raise SystemExit("error: no chromium on the PATH; install it (apt-get install chromium) and rerun")
    done = subprocess.run(
        [found, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1600,900"]
        + [f"--virtual-time-budget={budget_ms}", *action, url],
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return done.stdout


def _shoot(url: str, out: Path) -> None:
    _chromium(url, [f"--screenshot={out}"], 60000 if "CHART" in url else 20000)  # charts draw late


def page_text(url: str, wanted: str = "", tries: int = 3) -> str:
    """The text of ``url`` once its scripts have run (headless Chromium's DOM, tags dropped).

    The UI fetches its runs and metric histories from the server, which answers slowly on a busy
    machine: until ``wanted`` shows, the page is read again with a longer wait (20, 40, 80 s of
    virtual time)."""
    import re

    text = ""
    for attempt in range(tries):
        dom = _chromium(url, ["--dump-dom"], 20000 * 2**attempt)
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
        if wanted in text:
            break
    return text


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="spp-demo-"))
    _study(root)
    port = free_port()
    server = serve(root, port)
    try:
        base = f"http://127.0.0.1:{port}"
        api = f"{base}/api/2.0/mlflow"
        experiment = requests.get(f"{api}/experiments/get-by-name", params={"experiment_name": "spp-demo"}).json()
        experiment_id = experiment["experiment"]["experiment_id"]
        runs = requests.post(f"{api}/runs/search", json={"experiment_ids": [experiment_id], "max_results": 100}).json()
        failed = [r for r in runs["runs"] if r["info"]["status"] == "FAILED"]
        # MLflow 3's UI keeps a GenAI / Model training switch per browser (GenAI in a fresh one);
        # workflowType in the URL selects Model training, whatever the browser remembers
        view = "workflowType=machine_learning"
        urls = {  # the experiment as it opens, its saved view (what `run` prints) and its charts
            "plain": f"{base}/#/experiments/{experiment_id}",
            "runs": runs_url(base, experiment_id),
            "charts": runs_url(base, experiment_id, chart=True),
        }
        if failed:
            urls["failed_run"] = f"{base}/#/experiments/{experiment_id}/runs/{failed[0]['info']['run_id']}?{view}"
        for name, url in urls.items():
            _shoot(url, RESULTS / f"mlflow_ui_{name}.png")
        outcomes: dict[str, int] = {}
        for run in runs["runs"]:
            tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
            if "outcome" in tags:
                outcomes[tags["outcome"]] = outcomes.get(tags["outcome"], 0) + 1
        record = {
            "environment": environment(),
            "urls": {k: v.replace(base, "http://127.0.0.1:5000") for k, v in urls.items()},
            "runs": len(runs["runs"]),
            "trial_outcomes": outcomes,
            "screenshots": [f"mlflow_ui_{name}.png" for name in urls],
        }
        (RESULTS / "mlflow_ui.json").write_text(json.dumps(record, indent=2))
        print(json.dumps(record, indent=2))
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
