"""Command line of spp-search; ``study.py`` only calls :func:`main`.

Commands: ``run`` (the default: ``python study.py --trials 50``) and ``export-best``.
Exit status: 0 done, 2 bad config or argument (one-line message, nothing trained), 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from spp_search.errors import ConfigError, SppSearchError, must
from spp_search.redaction import redact

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "experiments" / "default.yaml"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="experiment YAML (default: experiments/default.yaml if present)",
    )
    parser.add_argument("--study-name", help="Optuna study and MLflow experiment name")
    parser.add_argument(
        "--storage",
        help="Optuna storage URL (default sqlite:///optuna.db; or SPP_SEARCH_STORAGE, SPP_SEARCH_STORAGE_FILE)",
    )


def _run_options(run: argparse.ArgumentParser) -> None:
    """Options of every command that trains a study (``run``, ``ablate``)."""
    _common(run)
    add = run.add_argument
    add("--trials", type=int, help="the study's total number of trials (default 50)")
    add("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    add("--seed", type=int, help="seed of the sampler and of trial initialisation")
    add("--epochs", type=int, help="training epochs per trial")
    add("--data", help="image folder (one subfolder per class) instead of built-in data")
    add("--engine", choices=("optuna", "keras-tuner"), help="search engine (default optuna)")
    add("--tuner", choices=("random", "bayesian", "hyperband"), help="KerasTuner's tuner (default bayesian)")
    _worker_options(run)


def _worker_options(parser: argparse.ArgumentParser) -> None:
    """Where and how trials run (``run``, ``ablate``, ``worker``)."""
    add = parser.add_argument
    add(
        "--backend",
        choices=("tensorflow", "jax"),
        help="Keras backend of the trials (default: KERAS_BACKEND if set, else tensorflow)",
    )
    add("--device", choices=("auto", "cpu", "gpu"), help="auto (default): the GPUs the backend can use, else CPU")
    add(
        "--isolation",
        choices=("process", "inline"),
        help="process (default): each trial in a worker that may crash alone",
    )
    add("--host-memory-budget", metavar="SIZE", help="e.g. 4GiB: a worker past it is killed (oom_host)")
    add("--gpu-memory-budget", metavar="SIZE", help="e.g. 2GiB: caps the worker's GPU memory (oom_gpu)")
    add(
        "--trial-timeout",
        type=float,
        metavar="SECONDS",
        help="a trial past it is stopped, outcome timeout (default 1800, 0 = off)",
    )
    add("--max-retries", type=int, help="retries of a crashed or timed-out trial (default 2)")
    add("--workers", type=int, help="trials run at once (default: 1 on a GPU, min(cores, 4) on a CPU)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="study.py",
        description="Search SPP training configurations with Optuna; every trial is logged to "
        "MLflow with its outcome (ok, pruned, diverged_nan, or the failure kind).",
        epilog="Examples:\n  python study.py --trials 50\n"
        "  python study.py report\n"
        "  python study.py export-best --out best.yaml\n"
        "  python study.py train --config best.yaml --out model.keras\n"
        "  mlflow ui --backend-store-uri sqlite:///mlflow.db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="{run,ablate,worker,report,export-best,train}")
    run = sub.add_parser("run", help="run (or resume) a study: the default command")
    _run_options(run)
    run.set_defaults(handler=cmd_run)
    ablate = sub.add_parser("ablate", help="run a config's `ablation` (fixed configurations x seeds)")
    _run_options(ablate)
    ablate.set_defaults(handler=cmd_ablate)
    worker = sub.add_parser("worker", help="join a running study (e.g. from another machine) until its total")
    worker.add_argument("--study-name", required=True, help="the study to join")
    worker.add_argument("--storage", help="its Optuna storage URL (or SPP_SEARCH_STORAGE[_FILE])")
    worker.add_argument("--tracking-uri", help="MLflow tracking URI (default: the study's, if it holds no secret)")
    _worker_options(worker)
    worker.set_defaults(handler=cmd_worker)
    report = sub.add_parser("report", help="write report.md/.html and plots; log them to MLflow")
    _common(report)
    report.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    report.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default reports/)")
    report.add_argument(
        "--compare",
        nargs="+",
        default=[],
        metavar="STUDY",
        help="other studies in the same storage to put side by side (e.g. another engine)",
    )
    report.set_defaults(handler=cmd_report)
    export = sub.add_parser("export-best", help="write the best trial's complete config")
    _common(export)
    export.add_argument("--out", type=Path, required=True, help="output file, .yaml or .json")
    export.add_argument(
        "--by",
        choices=("accuracy", "stability"),
        default="accuracy",
        help="accuracy: best val accuracy; stability: fewest failures across seeds",
    )
    export.set_defaults(handler=cmd_export)
    train = sub.add_parser("train", help="retrain a config (e.g. best.yaml) and save the model")
    train.add_argument("--config", type=Path, required=True, help="config to train (its defaults)")
    train.add_argument("--out", type=Path, required=True, help="model file, .keras")
    train.add_argument("--epochs", type=int, help="training epochs (default: the config's)")
    train.add_argument("--device", choices=("auto", "cpu", "gpu"), help="auto (default)")
    train.add_argument(
        "--backend", choices=("tensorflow", "jax"), help="Keras backend (default: KERAS_BACKEND, else tensorflow)"
    )
    train.set_defaults(handler=cmd_train)
    return parser


def _config(args: argparse.Namespace, overrides: dict):
    from spp_search.config import load_config

    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    return load_config(path, {"study.name": args.study_name, "study.storage": args.storage, **overrides})


def make_runners(config, device: str, gpus: int = 0, backend: str = "tensorflow") -> list:
    """One trial runner per worker slot: budgeted worker processes, or a single inline runner.

    On GPUs: workers are spread over the GPUs, each seeing only its own (``CUDA_VISIBLE_DEVICES``).
    By default up to 4 per GPU (one per 2 host cores): a trial of this size is bound by compiling
    its programs on the host (JAX compiles per input shape), so workers sharing a GPU overlap their
    compilations. Workers on one GPU share it by budget, never by racing for all of its memory:
    without ``--gpu-memory-budget`` each gets 90% of its GPU's memory divided by the workers on it.
    On a CPU: ``min(cores, 4)`` workers, each with ``cores // workers`` threads (and cores).
    """
    import os

    from spp_search.backends import gpu_memory_bytes
    from spp_search.config import parse_bytes
    from spp_search.isolation import Budgets, InlineRunner, Placement, ProcessRunner

    s = config.study
    if s.isolation == "inline":
        return [InlineRunner(backend)]
    budgets = Budgets(
        host_memory_bytes=parse_bytes("host_memory_budget", s.host_memory_budget),
        gpu_memory_bytes=parse_bytes("gpu_memory_budget", s.gpu_memory_budget),
        trial_timeout_s=s.trial_timeout or None,
    )
    cores = os.cpu_count() or 1
    if device == "gpu":
        workers = s.workers or gpus * min(4, max(1, cores // (2 * gpus)))
        visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        ids = visible or [str(i) for i in range(gpus)]
        per_gpu = -(-workers // len(ids))
        if per_gpu > 1 and budgets.gpu_memory_bytes is None:
            total = gpu_memory_bytes(int(ids[0]) if ids[0].isdigit() else 0)
            if total:
                budgets = Budgets(budgets.host_memory_bytes, int(0.9 * total / per_gpu), budgets.trial_timeout_s)
        placements = [Placement(backend, "gpu", gpu=ids[i % len(ids)]) for i in range(workers)]
        return [ProcessRunner(p, budgets) for p in placements]
    workers = s.workers or min(cores, 4)
    threads = max(1, cores // workers)
    placements = [
        Placement(
            backend,
            "cpu",
            threads=threads,
            cores=",".join(str(c) for c in range(i * threads, (i + 1) * threads)) if workers <= cores else None,
        )
        for i in range(workers)
    ]
    return [ProcessRunner(p, budgets) for p in placements]


def cmd_run(args: argparse.Namespace) -> int:
    overrides = {
        "study.trials": args.trials,
        "study.tracking_uri": args.tracking_uri,
        "study.seed": args.seed,
        "study.epochs": args.epochs,
        "data.source": args.data,
        "study.engine": args.engine,
        "study.tuner": args.tuner,
        **_placement(args),
    }
    config = _config(args, overrides)
    prepare = None
    if config.ablation:
        from spp_search.ablation import arms
        from spp_search.engines.budget import enqueue_arms

        configs, repeats = arms(config.ablation)
        prepare = lambda study: enqueue_arms(study, configs, repeats, config.defaults)  # noqa: E731
    elif config.enqueue:
        from spp_search.engines.budget import enqueue_configs

        prepare = lambda study: enqueue_configs(study, config.space.enqueued_params(list(config.enqueue)))  # noqa: E731
    return _train_study(config, prepare)


def cmd_worker(args: argparse.Namespace) -> int:
    """Join an existing study: its config comes from the storage; run tickets until the total."""
    from spp_search.config import build_config
    from spp_search.export import load_study

    stored = dict(load_study(args.study_name, args.storage).user_attrs.get("config") or {})
    if not stored:
        raise ConfigError(
            must(
                "study-name",
                "name a study created by `study.py run`",
                args.study_name,
                "Start it with `python study.py run --storage ...` first.",
            )
        )
    tracking = args.tracking_uri or stored["study"]["tracking_uri"]
    if "***" in tracking:
        raise ConfigError(
            must(
                "tracking-uri",
                "be given: the study's holds a secret",
                tracking,
                "Pass --tracking-uri with its credentials.",
            )
        )
    config = build_config(stored, {"study.storage": args.storage, "study.tracking_uri": tracking, **_placement(args)})
    return _train_study(config, join=True)


def _placement(args: argparse.Namespace) -> dict:
    """Config overrides from the where-and-how options."""
    return {
        "study.device": args.device,
        "study.isolation": args.isolation,
        "study.host_memory_budget": args.host_memory_budget,
        "study.gpu_memory_budget": args.gpu_memory_budget,
        "study.trial_timeout": args.trial_timeout,
        "study.max_retries": args.max_retries,
        "study.workers": args.workers,
        "study.backend": args.backend,
    }


def _train_study(config, prepare=None, join: bool = False) -> int:
    from rich.console import Console

    from spp_search import backends
    from spp_search.devices import resolve_device
    from spp_search.engines.optuna_engine import run_study

    backend = backends.require(backends.resolve(config.study.backend))
    config = dataclasses.replace(config, study=dataclasses.replace(config.study, backend=backend))
    device, gpus = resolve_device(config.study.device, backend)
    runners = make_runners(config, device, gpus, backend)
    try:
        if config.study.engine == "keras-tuner":
            backends.select(backend)  # KerasTuner imports Keras in the driver: on the study's backend
            from spp_search.engines.keras_tuner_engine import run_keras_tuner

            run_keras_tuner(config, runners[:1], device, Console(), Path("kt_projects"))
        else:
            run_study(config, runners, device, Console(), prepare, join=join)
    finally:
        for runner in runners:
            runner.close()
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    """``run`` for a config that must have an ``ablation`` section."""
    from spp_search.config import read_file

    if args.config is None or "ablation" not in read_file(args.config):
        raise ConfigError(
            must(
                "config",
                "have an `ablation` section for `ablate`",
                str(args.config),
                "See experiments/paper_multisize.yaml.",
            )
        )
    return cmd_run(args)


def cmd_report(args: argparse.Namespace) -> int:
    from spp_search.export import load_study
    from spp_search.report import write_report

    config = _config(args, {"study.tracking_uri": args.tracking_uri})
    study = load_study(config.study.name, config.study.storage)
    others = [load_study(name, config.study.storage) for name in args.compare]
    path = write_report(study, config.study.tracking_uri, args.out / config.study.name, others)
    print(f"wrote {path} (and report.html, plots) in {path.parent}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from spp_search.export import best_config, check_out, load_study, write_config

    check_out(args.out)
    config = _config(args, {})
    study = load_study(config.study.name, config.study.storage)
    best = best_config(study, args.by)
    write_config(best, args.out)
    result = best["result"]
    print(f"wrote {args.out}: trial {result['trial']} of {result['study']}, val_accuracy {result['val_accuracy']:.4f}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from spp_search import backends
    from spp_search.config import load_config
    from spp_search.devices import resolve_device

    config = load_config(args.config, {"study.device": args.device, "study.backend": args.backend})
    backend = backends.require(backends.resolve(config.study.backend))
    device, _ = resolve_device(config.study.device, backend)
    backends.select(backend)  # before Keras is imported below
    from spp_search.training import train_config

    metrics = train_config(config, args.out, device, args.epochs, backend)
    print(f"wrote {args.out}: val_accuracy {metrics['val_accuracy']:.4f}, input {metrics['input_shape']}")
    return 0


STORAGE_ENV, STORAGE_FILE_ENV, TRACKING_ENV = "SPP_SEARCH_STORAGE", "SPP_SEARCH_STORAGE_FILE", "MLFLOW_TRACKING_URI"


def _urls_from_environment(args: argparse.Namespace) -> None:
    """``--storage`` and ``--tracking-uri`` from the environment when not given, so that a password
    need not sit on a command line (visible in ``ps``). Precedence: option, environment, config.

    ``SPP_SEARCH_STORAGE`` holds the storage URL, or ``SPP_SEARCH_STORAGE_FILE`` a file holding it
    (a mounted secret); ``MLFLOW_TRACKING_URI`` is MLflow's own variable.
    """
    import os

    if hasattr(args, "storage") and not args.storage:
        args.storage = os.environ.get(STORAGE_ENV) or _read_secret_file(os.environ.get(STORAGE_FILE_ENV))
    if hasattr(args, "tracking_uri") and not args.tracking_uri:
        args.tracking_uri = os.environ.get(TRACKING_ENV) or None
    if args.command == "worker" and not args.storage:
        fix = f"Pass --storage, or set {STORAGE_ENV} or {STORAGE_FILE_ENV}."
        raise ConfigError(must("storage", "be given to join a study", None, fix))


def _read_secret_file(path: str | None) -> str | None:
    """The first line of ``path`` (a storage URL kept in a file); the error names the path only."""
    if not path:
        return None
    try:
        url = Path(path).read_text().strip().splitlines()[0].strip()
    except (OSError, IndexError):
        url = ""
    if not url:
        fix = "Point it at a readable file whose first line is the storage URL."
        raise ConfigError(must(STORAGE_FILE_ENV, "name a readable file holding a URL", path, fix))
    return url


def _quiet_libraries() -> None:
    """Keep the console for trial outcomes: MLflow and Optuna log INFO lines otherwise."""
    import logging
    import os

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
    # MLflow's own HTTP retries (7, backoff factor 2) would keep a run waiting for minutes on an
    # unreachable server; our retries (storage.with_retries: 1, 2, 4, 8 s) report it in one line
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    logging.getLogger("optuna").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "ablate", "worker", "report", "export-best", "train", "-h", "--help"):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        _urls_from_environment(args)
    except ConfigError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    stopped_by = _stop_on_sigterm()
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except SppSearchError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        name = stopped_by.get("signal", "SIGINT")
        print(
            f"stopped by {name} after {time.perf_counter() - start:.0f} s; running trials were recorded as "
            "interrupted and re-queued: rerun the same command to resume",
            file=sys.stderr,
        )
        return 143 if name == "SIGTERM" else 130


def _stop_on_sigterm() -> dict:
    """SIGTERM stops a study like Ctrl-C: trials recorded, MLflow runs closed, non-zero exit."""
    import signal
    import threading

    seen: dict = {}
    if threading.current_thread() is threading.main_thread():

        def handler(signum, frame):
            seen["signal"] = "SIGTERM"
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, handler)
    return seen
