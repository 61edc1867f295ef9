"""GPU measurements in one short run, on a host with JAX and no TensorFlow (and no network).

    python -m benchmarks.gpu --wheelhouse DIR --backend jax        # on the GPU host, < 5 minutes
    python -m benchmarks.gpu --device cpu --quick --out DIR        # the same code on a CPU (tests)

``--wheelhouse`` (written by ``benchmarks/wheelhouse.sh`` on a machine with PyPI) is installed with
``pip install --no-index --no-deps --target``; the run then re-executes itself with those packages
on ``PYTHONPATH``. It measures, each with the device synchronised (``backends.runtime().sync``):

(a) ``spp_op``: forward+backward of every SPP variant against a global-pool floor, and our layer's
    exactness on the device (with the matrix units at their default precision);
(b) ``study``: the default 50-trial study (``study.py --trials 50``), wall time and outcomes;
(c) ``oom_boundary``: batch size doubled under ``--gpu-memory-budget 2GiB`` until ``oom_gpu``,
    twice (the boundary must be the same both times);
(d) ``precision``: images/s with float32, mixed_float16 and mixed_bfloat16, and how busy the GPU
    was during the float32 fit (NVML utilisation sampled every 50 ms);
(e) ``train_step``: one training step of the SPP model vs the same model with a global-pool head.

It writes ``benchmarks/results/gpu-<backend>.json`` (``cpu-quick-<backend>.json`` for a CPU run)
under ``--out`` and rebuilds ``summary.md`` there. A device loan may allow only parts of a run:

    python -m benchmarks.gpu --merge benchmarks/results/gpu-runs/jax-h200-run*.json

rebuilds ``gpu-jax.json`` from the raw files of several runs (later runs win; a study run with
non-default ``XLA_FLAGS`` is kept under its own name), recording which run each section is from
and the ``notes.json`` beside them (what a reader must know about those runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
INSTALLED = "SPP_GPU_BENCH_SITE"


def install(wheelhouse: Path) -> Path:
    """Install every wheel of ``wheelhouse`` into a private folder (no index, no dependency solving)."""
    site = Path(tempfile.mkdtemp(prefix="spp-site-"))
    wheels = sorted(str(p) for p in wheelhouse.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"error: `wheelhouse` must hold .whl files, but got wheelhouse={str(wheelhouse)!r}.")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    subprocess.run([*cmd, "--target", str(site), *wheels], check=True)
    return site


def _environment(backend: str, device: str) -> None:
    """Before Keras is imported: the backend, and no preallocation (workers need the GPU too)."""
    os.environ["KERAS_BACKEND"] = backend
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(tempfile.gettempdir()) / "spp-jax-compile"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        os.environ["JAX_PLATFORMS"] = "cpu"


def _data(num_images: int, size: int, smallest: int | None = None) -> dict:
    from spp_search.config.settings import build_config

    low = smallest or size // 2
    raw = {"data": {"synthetic": {"num_images": num_images, "min_size": low, "max_size": size}}}
    return build_config(raw).data.for_trial()


def _factors(**overrides) -> dict:
    from spp_search.config.factors import default_factors

    return {**default_factors(), **overrides}


class _Quiet:
    def epoch_end(self, epoch, metrics):
        return False


def spp_section(quick: bool, device: str) -> dict:
    """(a) The SPP op benchmark's cases on this device (static shapes: JAX compiles per shape)."""
    from benchmarks import spp_op

    shapes = [(4, 12, 12, 8), (4, 7, 9, 8)] if quick else None  # quick: the code path, in seconds
    rows = spp_op.measure(quick, repeats=3 if quick else 20, modes=("static",), shapes=shapes)
    divisible = [r for r in rows if all(d % max(r["levels"]) == 0 for d in r["shape"][1:3])]
    other = [r for r in rows if r not in divisible]
    return {
        "rows": rows,
        "all_exact": all(r["floor_ceil_exact"] for r in rows),
        "one_hot_product_exact": _precision_probe(),
        "worst_ratio_vs_floor_divisible": max((r["ratio_vs_floor"] for r in divisible), default=None),
        "worst_ratio_vs_floor_any_size": max((r["ratio_vs_floor"] for r in other), default=None),
    }


def _precision_probe() -> dict:
    """Does a one-hot row selection by matrix product return the rows exactly, at the device's
    default precision and at the precision the layer asks for? (A GPU's TF32 units would round.)"""
    from keras import ops

    from spp_search.backends import runtime
    from spp_search.model.bins import selection_matrix

    x = np.random.default_rng(0).normal(size=(13, 512)).astype("float32")
    select = selection_matrix(13, 6)
    exact = select @ x.astype(np.float64)
    default = ops.convert_to_numpy(ops.matmul(ops.convert_to_tensor(select), ops.convert_to_tensor(x)))
    chosen = ops.convert_to_numpy(runtime().exact_matmul(ops.convert_to_tensor(select), ops.convert_to_tensor(x)))
    return {
        "default_precision_max_error": float(np.abs(default - exact).max()),
        "layer_precision_max_error": float(np.abs(chosen - exact).max()),
    }


def _numbers(result, *stats: str) -> dict:
    """A trial's outcome, median step in ms and the named stats."""
    step_ms = 1000 * result.stats.get("step_time_median_s", float("nan"))
    return {"outcome": result.outcome.value, "step_ms": step_ms, **{k: result.stats.get(k) for k in stats}}


def _run(factors: dict, data: dict, epochs: int, device: str):
    from spp_search.config.schedule import Budget
    from spp_search.trial.run import TrialSpec, run_trial

    return run_trial(
        TrialSpec(0, factors, data, Budget.of_epochs(epochs), 0, device, backend=os.environ["KERAS_BACKEND"]), _Quiet()
    )


def train_step_section(quick: bool, device: str) -> dict:
    """(e) Median training step of the SPP model and of the same model with a global-pool head,
    at a fixed size and with bucketed variable sizes of about the same mean pixel count."""
    low, high, fixed, sides, batch = (16, 32, 24, [20, 28], 16) if quick else (96, 128, 112, [104, 120], 128)
    data = _data(64 if quick else 1024, high, low)
    out = {}
    for name, levels in (("spp", [1, 2, 4]), ("global_pool", [1])):
        for policy in ("fixed", "variable_bucketed"):
            factors = _factors(
                levels=levels, image_size=fixed, batch_size=batch, input_policy=policy, width=32, bucket_sides=sides
            )
            result = _run(factors, data, 2 if quick else 3, device)
            assert result.outcome.value == "ok", result.error_message
            out[f"{name}_{policy}_step_ms"] = 1000 * result.stats["step_time_median_s"]
            out[f"{name}_{policy}_images_per_s"] = result.stats["images_per_s"]
    for policy in ("fixed", "variable_bucketed"):
        out[f"ratio_{policy}"] = out[f"spp_{policy}_step_ms"] / out[f"global_pool_{policy}_step_ms"]
    out["bucketed_vs_fixed_images_per_s"] = out["spp_variable_bucketed_images_per_s"] / out["spp_fixed_images_per_s"]
    return out


class _Busy:
    """Samples NVML GPU utilisation every 50 ms while it is open (no samples without a GPU)."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self.stop = threading.Event()

    def __enter__(self):
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # noqa: BLE001 - no NVIDIA GPU here
            return
        while not self.stop.wait(0.05):
            self.samples.append(int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=1)

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def precision_section(quick: bool, device: str) -> dict:
    """(d) images/s under each dtype policy; GPU busy share during the float32 fit."""
    size, batch, epochs = (32, 16, 2) if quick else (128, 256, 4)
    data = _data(64 if quick else 2048, size)
    out = {}
    for policy in ("float32", "mixed_float16", "mixed_bfloat16"):
        factors = _factors(image_size=size, batch_size=batch, width=32, mixed_precision=policy)
        with _Busy() as busy:
            result = _run(factors, data, epochs, device)
        out[policy] = {**_numbers(result, "images_per_s", "compile_s", "peak_gpu_mb"), "gpu_busy_percent": busy.mean}
    from benchmarks.common import host_batch_ms

    out["host_batch_ms"] = host_batch_ms(_factors(image_size=size, batch_size=batch, width=32), data, steps=10)
    return out


def oom_section(quick: bool, device: str) -> dict:
    """(c) Double the batch size under a memory budget until the trial runs out, twice."""
    from spp_search.trial.isolation import Budgets, Placement, ProcessRunner

    backend = os.environ["KERAS_BACKEND"]
    if device == "gpu":
        budgets, oom, size, start, limit = Budgets(gpu_memory_bytes=2 * 2**30), "oom_gpu", 128, 64, 2**15
    else:  # the same procedure under a host budget, small enough to end quickly
        budgets, oom, size, start, limit = (
            Budgets(host_memory_bytes=3 * 2**30),
            "oom_host",
            64,
            64,
            128 if quick else 2**14,
        )
    data = _data(64, size)
    sequences = []
    for _ in range(2):
        runner = ProcessRunner(Placement(backend, device), budgets)
        steps, batch, boundary = [], start, None
        try:
            while batch <= limit:
                factors = _factors(image_size=size, batch_size=batch, width=16, input_policy="fixed")
                from spp_search.config.schedule import Budget
                from spp_search.trial.run import TrialSpec

                result = runner.run(
                    TrialSpec(0, factors, data, Budget.of_epochs(1), 0, device, backend=backend), _Quiet()
                )
                steps.append(
                    {"batch_size": batch, "outcome": result.outcome.value, "error": result.error_message[:300]}
                )
                if result.outcome.value == oom:
                    boundary = batch
                    break
                if result.outcome.value != "ok":
                    break
                batch *= 2
        finally:
            runner.close()
        sequences.append({"first_oom_batch_size": boundary, "steps": steps})
    first = [s["first_oom_batch_size"] for s in sequences]
    return {
        "budget": "2GiB GPU" if device == "gpu" else "3GiB host",
        "image_size": size,
        "sequences": sequences,
        "same_boundary_both_times": first[0] == first[1],
        "first_oom_batch_size": first[0],
    }


def compile_section(quick: bool, device: str) -> dict:
    """How long one trial of the default study compiles, cold (fresh worker, empty compile cache),
    with XLA's default GPU autotuning and with autotuning off (``--xla_gpu_autotune_level=0``)."""
    from spp_search.config.schedule import Budget
    from spp_search.trial.isolation import Budgets, Placement, ProcessRunner
    from spp_search.trial.run import TrialSpec

    backend = os.environ["KERAS_BACKEND"]
    data = _data(64 if quick else 512, 96, 32)
    factors = _factors(levels=[1, 2, 4], batch_size=32, input_policy="fixed", image_size=64)
    out = {}
    for label, flags in (("autotune_default", ""), ("autotune_off", "--xla_gpu_autotune_level=0")):
        with tempfile.TemporaryDirectory() as cache:
            env = {"XLA_FLAGS": flags, "JAX_COMPILATION_CACHE_DIR": cache}
            runner = ProcessRunner(Placement(backend, device, extra_env=env), Budgets())
            try:
                result = runner.run(
                    TrialSpec(0, factors, data, Budget.of_epochs(2), 0, device, backend=backend), _Quiet()
                )
            finally:
                runner.close()
        out[label] = _numbers(result, "compile_s", "trial_wall_s", "train_time_s")
    return out


def study_section(quick: bool, device: str, backend: str, timeout_s: float, workers: int | None = None) -> dict:
    """(b) The default study through the command line, on fresh storages, timed.

    Stopped after ``timeout_s`` (SIGTERM: trials recorded, runs closed) so that a slow study
    still leaves the other numbers and how far it got."""
    trials = 1 if quick else 50
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            str(ROOT / "study.py"),
            "--trials",
            str(trials),
            "--backend",
            backend,
            "--device",
            device,
            "--study-name",
            "bench-gpu",
            "--storage",
            f"sqlite:///{tmp}/o.db",
            "--tracking-uri",
            f"sqlite:///{tmp}/m.db",
        ]
        if workers:
            cmd += ["--workers", str(workers)]
        config = Path(tmp) / "quick.yaml"
        config.write_text(json.dumps(_quick_config()))
        cmd += ["--config", str(config) if quick else str(ROOT / "experiments" / "default.yaml")]
        start = time.perf_counter()
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": f"{tmp}/jax-compile"}  # each study starts cold
        if os.environ.get("SPP_STUDY_XLA_FLAGS") is not None:
            env["XLA_FLAGS"] = os.environ["SPP_STUDY_XLA_FLAGS"]
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            output, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            output, _ = proc.communicate(timeout=60)
        wall = time.perf_counter() - start
        numbers = _study_numbers(f"sqlite:///{tmp}/o.db")
        finished = proc.returncode == 0
        return {
            "trials": trials,
            "workers": workers or "default",
            "finished": finished,
            "wall_s": wall,
            "wall_min": wall / 60 if finished else None,
            "xla_flags": env.get("XLA_FLAGS", ""),
            "output_tail": output[-1500:],
            **numbers,
        }


def _quick_config() -> dict:
    return {
        "data": {"synthetic": {"num_images": 48, "min_size": 16, "max_size": 32}},
        "defaults": {"image_size": 24, "width": 4, "dense_units": 8, "batch_size": 8},
        "study": {"epochs": 2},
        "space": {"levels": {"choices": [[1], [1, 2]]}, "input_policy": {"choices": ["fixed", "variable_bucketed"]}},
    }


def _study_numbers(storage: str) -> dict:
    import optuna

    from spp_search.study.budget import counted_trials, outcome_of

    study = optuna.load_study(study_name="bench-gpu", storage=storage)
    done = counted_trials(study)
    per_trial = _trial_metrics(storage.replace("/o.db", "/m.db"), done)
    compile_s = [m.get("compile_s", 0.0) for m in per_trial]
    outcomes: dict[str, int] = {}
    for t in done:
        outcomes[outcome_of(t)] = outcomes.get(outcome_of(t), 0) + 1
    ok = [t.value for t in done if outcome_of(t) == "ok"]
    return {
        "trials_done": len(done),
        "outcomes": outcomes,
        "best_val_accuracy": max(ok) if ok else None,
        "compile_s_total": sum(compile_s),
        "per_trial_mean": {
            key: statistics.mean(m[key] for m in per_trial if key in m) if any(key in m for m in per_trial) else None
            for key in ("compile_s", "train_time_s", "trial_wall_s", "traced_shapes")
        },
    }


def _trial_metrics(tracking: str, trials) -> list[dict]:
    """Each finished trial's metrics from its MLflow run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking)
    return [
        client.get_run(t.user_attrs["mlflow_run_id"]).data.metrics for t in trials if "mlflow_run_id" in t.user_attrs
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheelhouse", type=Path, help="folder of wheels to install first (no index)")
    parser.add_argument("--backend", choices=("jax", "tensorflow"), default="jax")
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code path, not speed")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    parser.add_argument("--only", default=None, help="comma-separated sections (default: all; quick: no second study)")
    parser.add_argument("--study-timeout", type=float, default=150.0, help="seconds before the study is stopped")
    parser.add_argument("--deadline", type=float, help="seconds for the whole run (default 285; quick 900)")
    parser.add_argument("--xla-flags", default=None, help="XLA_FLAGS for the studies' workers (e.g. autotuning)")
    parser.add_argument("--merge", nargs="+", type=Path, help="rebuild gpu-<backend>.json from these raw run files")
    args = parser.parse_args()
    if args.merge:
        print(f"wrote {merge(args.merge, args.out)}")
        return
    if args.wheelhouse and not os.environ.get(INSTALLED):
        site = install(args.wheelhouse)
        # the checkout first (its experiments/ and study.py), the wheels for everything it needs
        env = {**os.environ, INSTALLED: str(site), "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
        sys.exit(subprocess.call([sys.executable, "-m", "benchmarks.gpu", *sys.argv[1:]], cwd=ROOT, env=env))
    _environment(args.backend, args.device)
    args.deadline = args.deadline or (900.0 if args.quick else 285.0)
    if args.xla_flags is not None:
        os.environ["SPP_STUDY_XLA_FLAGS"] = args.xla_flags
    begun = time.perf_counter()
    left = lambda: max(0.0, args.deadline - (time.perf_counter() - begun))  # noqa: E731
    sections = {
        "spp_op": lambda: spp_section(args.quick, args.device),
        "train_step": lambda: train_step_section(args.quick, args.device),
        "precision": lambda: precision_section(args.quick, args.device),
        "oom_boundary": lambda: oom_section(args.quick, args.device),
        "compile": lambda: compile_section(args.quick, args.device),
        "study": lambda: study_section(args.quick, args.device, args.backend, min(args.study_timeout, left() - 10)),
        "study_one_worker": lambda: study_section(args.quick, args.device, args.backend, left(), workers=1),
    }
    results, seconds = {}, {}
    default = "spp_op,train_step,precision,oom_boundary,study" + ("" if args.quick else ",study_one_worker")
    for name in (args.only or default).split(","):
        if left() < 15:
            results[name] = {"skipped": f"less than 15 s left of the {args.deadline:.0f} s deadline"}
            continue
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            results[name] = sections[name]()
        except Exception as exc:  # noqa: BLE001 - one failed section must not lose the others
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        seconds[name] = time.perf_counter() - start
        print(json.dumps(results[name], default=str)[:1500], flush=True)
        _write(args, results, seconds)  # after every section: a run cut short keeps what it measured


def merge(paths: list[Path], out: Path) -> Path:
    """One results file from several runs' raw files (see the module docstring)."""
    from benchmarks.table import write_table

    merged: dict = {"sources": {}, "section_seconds": {}}
    for path in sorted(paths):
        run = json.loads(path.read_text())
        for name, section in run.items():
            if name in ("environment", "quick", "section_seconds"):
                continue
            flags = section.get("xla_flags") if isinstance(section, dict) else None
            key = name if not flags else f"{name} ({flags})"
            merged[key] = section
            merged["sources"][key] = f"{path.name} ({run['environment']['when']})"
            merged["section_seconds"][key] = run["section_seconds"].get(name)
        merged["environment"], merged["quick"] = run["environment"], run["quick"]
    notes = sorted({p.parent / "notes.json" for p in paths})
    merged["notes"] = [line for n in notes if n.is_file() for line in json.loads(n.read_text())]
    target = out / f"gpu-{merged['environment']['backend']}.json"
    target.write_text(json.dumps(merged, indent=2, default=str))
    write_table(out)
    return target


def _write(args, results: dict, seconds: dict) -> None:
    from benchmarks.common import environment
    from benchmarks.table import write_table

    name = f"gpu-{args.backend}" if args.device == "gpu" and not args.quick else f"cpu-quick-{args.backend}"
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "environment": environment(args.backend, args.device),
        "quick": args.quick,
        "section_seconds": seconds,
        **results,
    }
    path = args.out / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    try:
        print(f"wrote {path} and {write_table(args.out)}")
    except Exception as exc:  # noqa: BLE001 - the JSON is written; the table can be rebuilt later
        print(f"wrote {path}; summary.md failed: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
