"""Choosing a backend, preparing workers for it, and placing workers on GPUs: no backend imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spp_search import backends
from spp_search.config.settings import build_config
from spp_search.infra.errors import ConfigError
from spp_search.trial.placement import make_runners
from spp_search.trial.workers import Placement

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("requested", "env", "expected"),
    [
        ("jax", "tensorflow", "jax"),
        ("auto", "jax", "jax"),
        (None, None, "tensorflow"),
        ("tensorflow", None, "tensorflow"),
    ],
)
def test_resolve_prefers_the_option_then_keras_backend(monkeypatch, requested, env, expected):
    if env is None:
        monkeypatch.delenv("KERAS_BACKEND", raising=False)
    else:
        monkeypatch.setenv("KERAS_BACKEND", env)
    assert backends.resolve(requested) == expected


def test_an_unknown_keras_backend_is_named(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    with pytest.raises(ConfigError, match="`KERAS_BACKEND` must be one of"):
        backends.resolve("auto")


def test_a_missing_backend_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install 'spp-search\\[jax\\]'"):
        backends.require("jax")


def test_select_refuses_a_second_backend_in_one_process():
    import keras

    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    with pytest.raises(ConfigError, match="--isolation process"):
        backends.select(other)


def test_worker_env_for_jax_on_a_gpu_caps_memory_by_fraction(monkeypatch):
    monkeypatch.setattr(backends, "gpu_memory_bytes", lambda index=0: 80 * 2**30)
    env = backends.worker_env("jax", "gpu", gpu="1", gpu_memory_bytes=2 * 2**30)
    assert env["KERAS_BACKEND"] == "jax" and env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.0250"
    assert "--xla_gpu_autotune_level=0" in env["XLA_FLAGS"]
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_autotune_level=2")
    assert "XLA_FLAGS" not in backends.worker_env("jax", "gpu")  # the user's own flags, inherited, win
    cpu = backends.worker_env("jax", "cpu", threads=1, cores="1")
    assert cpu["CUDA_VISIBLE_DEVICES"] == "-1" and cpu["JAX_PLATFORMS"] == "cpu" and cpu["SPP_SEARCH_CORES"] == "1"
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in backends.worker_env("tensorflow", "gpu", gpu_memory_bytes=2**30)


def test_worker_env_for_jax_on_a_cpu_compiles_faster_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setattr(backends, "_jaxlib_version", lambda: "0.10.2")
    flags = backends.worker_env("jax", "cpu")["XLA_FLAGS"].split()
    assert flags == ["--xla_cpu_use_fusion_emitters=false", "--xla_backend_optimization_level=1"]
    assert "XLA_FLAGS" not in backends.worker_env("tensorflow", "cpu")
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=3")  # the user's own setting wins
    assert backends.worker_env("jax", "cpu")["XLA_FLAGS"].split() == [
        "--xla_backend_optimization_level=3",
        "--xla_cpu_use_fusion_emitters=false",
    ]
    monkeypatch.delenv("XLA_FLAGS")
    monkeypatch.setattr(backends, "_jaxlib_version", lambda: "0.11.0")  # not measured: an unknown flag aborts
    assert "XLA_FLAGS" not in backends.worker_env("jax", "cpu")


def test_the_cpu_xla_flags_are_accepted_by_the_installed_jaxlib():
    """XLA aborts the process on a flag it does not know: the pinned jaxlib must take these."""
    pytest.importorskip("jax")
    env = {**os.environ, **backends.worker_env("jax", "cpu")}
    assert "xla_cpu_use_fusion_emitters" in env.get("XLA_FLAGS", ""), "the pinned jaxlib is not in CPU_XLA_FLAGS_JAXLIB"
    done = subprocess.run(
        [sys.executable, "-c", "import jax.numpy as jnp; print(float((jnp.ones(3) + 1).sum()))"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == "6.0", done.stderr[-1000:]


def test_workers_spread_one_per_gpu_and_share_by_budget(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(backends, "gpu_memory_bytes", lambda index=0: 10 * 2**30)
    config = build_config({"study": {"workers": 4}})
    runners = make_runners(config, "gpu", gpus=2, backend="jax")
    assert [r.placement.gpu for r in runners] == ["0", "1", "0", "1"]
    assert runners[0].budgets.gpu_memory_bytes == int(0.9 * 10 * 2**30 / 2)  # two workers per GPU
    monkeypatch.setattr("os.cpu_count", lambda: 4)  # one worker per 2 cores: one per GPU here
    one_each = make_runners(build_config({}), "gpu", gpus=2, backend="jax")
    assert [r.placement.gpu for r in one_each] == ["0", "1"] and one_each[0].budgets.gpu_memory_bytes is None
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    shared = make_runners(build_config({}), "gpu", gpus=1, backend="jax")
    assert len(shared) == 4 and shared[0].budgets.gpu_memory_bytes == int(0.9 * 10 * 2**30 / 4)


def test_cpu_workers_split_the_cores(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    runners = make_runners(build_config({"study": {"workers": 2}}), "cpu", backend="jax")
    assert [(r.placement.threads, r.placement.cores) for r in runners] == [(2, "0,1"), (2, "2,3")]
    assert all(isinstance(r.placement, Placement) and r.placement.backend == "jax" for r in runners)


def test_commands_that_only_read_results_import_no_backend(tmp_path):
    """``export-best``, ``report`` and ``check-data`` in a fresh process: no Keras, TensorFlow or JAX."""
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / "photos" / label / f"{i}.png")
    storage = f"sqlite:///{tmp_path}/o.db"
    script = textwrap.dedent(f"""
        import os, sys
        sys.argv, sys.path[:0] = ["study.py"], [{str(ROOT)!r}]  # the checkout, run in tmp_path
        import optuna
        from spp_search.cli import main
        from spp_search.config.factors import default_factors
        from spp_search.config.settings import build_config
        from spp_search.study.lifecycle import open_study
        import spp_search.results.report, spp_search.results.export  # noqa: F401
        config = build_config({{"study": {{"name": "s", "storage": "{storage}"}}}})
        study = open_study(config)
        trial = study.ask()
        trial.set_user_attr("outcome", "ok")
        factors = {{k: list(v) if isinstance(v, tuple) else v for k, v in default_factors().items()}}
        trial.set_user_attr("factors", factors)
        study.tell(trial, 0.5)
        study_options = ["--study-name", "s", "--storage", "{storage}"]
        codes = [
            main(["export-best", *study_options, "--out", "{tmp_path}/best.yaml"]),
            main(["report", *study_options, "--tracking-uri", "sqlite:///{tmp_path}/m.db", "--out", "{tmp_path}/r"]),
            main(["check-data", "--data", "{tmp_path}/photos"]),
        ]
        print(codes, [m for m in ("keras", "tensorflow", "jax") if m in sys.modules])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "[0, 0, 0] []", (done.stdout[-2000:], done.stderr[-2000:])
    assert (tmp_path / "best.yaml").is_file() and (tmp_path / "r" / "s" / "report.md").is_file()


def test_the_report_starts_without_mlflow_statistics_or_plotting():
    """Its start-up took 2.3 s for MLflow, SciPy and statsmodels at module level: each is imported
    where it is used (reading MLflow, an interval, a plot)."""
    heavy = ("mlflow", "scipy", "statsmodels", "matplotlib", "plotly", "sklearn")
    probe = f"import sys, spp_search.cli, spp_search.results.report; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.strip() == "[]", (done.stdout, done.stderr[-2000:])
