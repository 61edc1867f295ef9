"""Storage and tracking URLs from the environment (no password on the command line), with the
command-line option first, then the environment, then the config file."""

from __future__ import annotations

import pytest

from spp_search.cli import main
from spp_search.infra import environment


def _export(tmp_path, *extra) -> list[str]:
    return ["export-best", "--out", str(tmp_path / "best.yaml"), "--study-name", "s", *extra]


def test_storage_from_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPP_SEARCH_STORAGE", f"sqlite:///{tmp_path}/from-env.db")
    assert main(_export(tmp_path)) == 2
    assert "from-env.db" in capsys.readouterr().err  # it looked there (the file does not exist)


def test_the_option_wins_over_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPP_SEARCH_STORAGE", f"sqlite:///{tmp_path}/from-env.db")
    assert main(_export(tmp_path, "--storage", f"sqlite:///{tmp_path}/from-option.db")) == 2
    err = capsys.readouterr().err
    assert "from-option.db" in err and "from-env.db" not in err


def test_storage_from_a_file(tmp_path, monkeypatch, capsys):
    secret = tmp_path / "storage.url"
    secret.write_text(f"sqlite:///{tmp_path}/from-file.db\n")
    monkeypatch.delenv("SPP_SEARCH_STORAGE", raising=False)
    monkeypatch.setenv("SPP_SEARCH_STORAGE_FILE", str(secret))
    assert main(_export(tmp_path)) == 2
    assert "from-file.db" in capsys.readouterr().err


def test_an_unreadable_storage_file_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SPP_SEARCH_STORAGE", raising=False)
    monkeypatch.setenv("SPP_SEARCH_STORAGE_FILE", str(tmp_path / "missing"))
    assert main(_export(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert "`SPP_SEARCH_STORAGE_FILE` must name a readable file" in err and err.count("\n") == 0


def test_tracking_uri_from_mlflow_tracking_uri(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:pw@mlflow:5000")
    assert environment.tracking_uri(None) == "http://user:pw@mlflow:5000"
    assert environment.storage_url("sqlite:///x.db") == "sqlite:///x.db"  # an option beats the environment


def test_a_worker_needs_a_storage_from_somewhere(monkeypatch, capsys):
    for name in ("SPP_SEARCH_STORAGE", "SPP_SEARCH_STORAGE_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["worker", "--study-name", "s"]) == 2
    assert "Pass --storage, or set SPP_SEARCH_STORAGE" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["report", "export-best"])
def test_read_only_commands_take_the_environment_too(tmp_path, monkeypatch, capsys, command):
    monkeypatch.setenv("SPP_SEARCH_STORAGE", f"sqlite:///{tmp_path}/env-{command}.db")
    argv = [command, "--study-name", "s"] + (["--out", str(tmp_path / "b.yaml")] if command == "export-best" else [])
    assert main(argv) == 2
    assert f"env-{command}.db" in capsys.readouterr().err
