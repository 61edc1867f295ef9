"""Shared test helpers: tiny study configs, a CLI run of enqueued trials, throwaway databases.

The NumPy SPP reference lives in ``spp_search.bins`` (the benchmarks check exactness with it too).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path


def tiny_config(tmp_path, **study) -> dict:
    """A raw config for a study that trains in seconds: 48 tiny images, a 4-filter net, 10
    optimizer steps validated twice (2 epochs of 36 training images at batch 8), unless ``epochs``
    is given."""
    budget = {} if "epochs" in study else {"steps": 10, "evaluations": 2}
    return {
        "study": {
            "name": "tiny",
            "trials": 3,
            **budget,
            "storage": f"sqlite:///{tmp_path}/optuna.db",
            "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
            "device": "cpu",
            **study,
        },
        "data": {"synthetic": {"num_images": 48, "min_size": 16, "max_size": 32}},
        "defaults": {"image_size": 24, "width": 4, "dense_units": 8, "batch_size": 8},
        "space": {
            "levels": {"choices": [[1], [1, 2]]},
            "pooling": {"choices": ["max", "avg"]},
            "input_policy": {"choices": ["fixed", "variable_padded"]},
            "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
        },
    }


def run_enqueued(tmp_path, name: str, trials: list[dict], data: dict | None = None, **study) -> tuple:
    """Run the CLI on a tiny study whose trials are exactly ``trials`` (factor overrides), in order.

    The space searches the overridden factors over the values given, and the trials are enqueued
    before the run, so the sampler cannot reorder them. Returns (exit code, optuna study, MLflow
    child runs sorted by trial number, MLflow client).
    """
    import optuna
    import yaml
    from mlflow import MlflowClient

    from spp_search.cli import main
    from spp_search.config.factors import param_text

    raw = tiny_config(tmp_path, name=name, trials=len(trials), **study)
    raw["data"].update(data or {}, cache_dir=str(tmp_path / "cache"))
    keys = list(dict.fromkeys(k for t in trials for k in t))
    raw["space"] = {k: {"choices": list({param_text(t[k]): t[k] for t in trials if k in t}.values())} for k in keys}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    storage = raw["study"]["storage"]
    created = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for t in trials:
        created.enqueue_trial({k: param_text(v) for k, v in t.items()})
    code = main(["--config", str(path)])
    client = MlflowClient(raw["study"]["tracking_uri"])
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], "tags.`spp_search.role` = 'trial'")
    runs.sort(key=lambda r: int(r.data.tags["spp_search.trial_number"]))
    return code, optuna.load_study(study_name=name, storage=storage), runs, client


@contextlib.contextmanager
def fresh_database(kind: str):
    """A new, empty PostgreSQL or MariaDB database on the local server, dropped afterwards."""
    import uuid

    import sqlalchemy

    name = f"spp_{uuid.uuid4().hex[:10]}"
    admin = {
        "postgresql": "postgresql://postgres@127.0.0.1:5432/postgres",
        "mysql": "mysql+pymysql://root@127.0.0.1:3306/mysql",
    }[kind]
    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    try:
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f"DROP DATABASE {name}" + (" WITH (FORCE)" if kind == "postgresql" else "")))
        engine.dispose()


STUDY_PY = str(Path(__file__).resolve().parent.parent / "study.py")


def spawn_study(*args: str, log: Path) -> subprocess.Popen:
    """``python study.py ARGS`` in its own session (so a test can SIGKILL or SIGSTOP the driver
    with its trial workers), CPU only, output to ``log``."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, STUDY_PY, *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
