"""The same study on every storage, against the real local servers (PostgreSQL, MariaDB, Redis).

These servers run on our machines and in CI: a test fails, not skips, when one is unreachable
(set SPP_SKIP_SERVICES=1 to skip them on a machine without the services).
"""

from __future__ import annotations

import os
import uuid

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from spp_search.cli import main
from spp_search.engines.budget import counted
from tests.helpers import fresh_database, tiny_config

pytestmark = pytest.mark.slow
STORAGES = ["sqlite", "postgresql", "mysql", "journal", "redis"]


@pytest.fixture(params=STORAGES)
def storage(request, tmp_path):
    kind = request.param
    if kind in ("postgresql", "mysql", "redis") and os.environ.get("SPP_SKIP_SERVICES") == "1":
        pytest.skip("SPP_SKIP_SERVICES=1")
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/optuna.db"
    elif kind == "journal":
        yield f"journal://{tmp_path}/journal.log"
    elif kind == "redis":
        yield f"redis://127.0.0.1:6379/{1 + uuid.uuid4().int % 14}"
    else:
        with fresh_database(kind) as url:
            yield url


def test_same_study_on_every_storage(storage, tmp_path):
    name = f"st-{uuid.uuid4().hex[:8]}"
    raw = tiny_config(tmp_path, name=name, trials=2, storage=storage, workers=2)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["--config", str(path)]) == 0
    assert main(["--config", str(path), "--trials", "3"]) == 0  # resume and extend
    from spp_search.storage import make_storage

    study = optuna.load_study(study_name=name, storage=make_storage(storage))
    assert counted(study) == 3 and len(study.trials) == 3
    assert len({t.number for t in study.trials}) == 3
    client = MlflowClient(raw["study"]["tracking_uri"])
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    assert sorted(r.data.tags["spp_search.role"] for r in runs) == ["study", "trial", "trial", "trial"]
    assert all(r.info.status in ("FINISHED", "KILLED") for r in runs)


def test_credentials_never_reach_mlflow_or_the_console(tmp_path, capsys):
    secret = "s3cr3t-pw"
    raw = tiny_config(tmp_path, name="redact", trials=1)
    raw["study"]["storage"] = f"postgresql://postgres:{secret}@127.0.0.1:1/nope"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert secret not in err and "postgres:***@" in err
