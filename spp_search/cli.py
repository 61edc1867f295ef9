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

from spp_search.data import BUILT_IN
from spp_search.errors import ConfigError, SppSearchError, must
from spp_search.redaction import redact, redact_cut

CHECKOUT_EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def shipped_experiment(name: str = "default.yaml") -> Path | None:
    """An experiment shipped with spp-search: from the installed package (``spp_search.experiments``,
    the wheel's copy of ``experiments/``), else from the source checkout (an editable install)."""
    from importlib.resources import files

    try:
        path = Path(str(files("spp_search.experiments") / name))
    except ModuleNotFoundError:
        path = CHECKOUT_EXPERIMENTS / name
    return path if path.is_file() else None


COMMANDS = ("run", "ablate", "worker", "report", "export-best", "train", "dashboard", "check-data")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="experiment YAML (default: the shipped experiments/default.yaml)",
    )
    parser.add_argument("--study-name", help="Optuna study and MLflow experiment name")
    parser.add_argument(
        "--storage",
        help="Optuna storage URL (default sqlite:///optuna.db; or SPP_SEARCH_STORAGE, SPP_SEARCH_STORAGE_FILE)",
    )
    parser.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db; or MLFLOW_TRACKING_URI)"
    )


def _run_options(run: argparse.ArgumentParser) -> None:
    """Options of every command that trains a study (``run``, ``ablate``)."""
    _common(run)
    add = run.add_argument
    add("--trials", type=int, help="the study's total number of trials (default 50)")
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


def _prog() -> str:
    """The name the user typed: ``study.py``, ``spp-search`` or ``python -m spp_search``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "spp-search"
    return "python -m spp_search" if name == "__main__.py" else name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="Search SPP training configurations with Optuna; every trial is logged to "
        "MLflow with its outcome (ok, pruned, diverged_nan, or the failure kind).",
        epilog="Examples:\n  python study.py --trials 50\n"
        "  python study.py report\n"
        "  python study.py export-best --out best.yaml\n"
        "  python study.py train --config best.yaml --out model.keras\n"
        "  mlflow ui --backend-store-uri sqlite:///mlflow.db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
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
    report.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default reports/)")
    report.add_argument(
        "--compare",
        nargs="+",
        default=[],
        metavar="STUDY",
        help="other studies in the same storage to put side by side (e.g. another engine)",
    )
    report.set_defaults(handler=cmd_report)
    export = sub.add_parser("export-best", help="write the best trial's complete config (and train it: --train)")
    _common(export)
    export.add_argument("--out", type=Path, required=True, help="output file, .yaml or .json")
    _by(export)
    export.add_argument("--train", action="store_true", help="then train it (as `train`), model to --model-out")
    export.add_argument("--model-out", type=Path, help="with --train: model file (default: --out with .keras)")
    _train_options(export)
    export.set_defaults(handler=cmd_export)
    train = sub.add_parser(
        "train",
        help="retrain a config (e.g. best.yaml), or a study's best trial; save the model, log it to MLflow",
    )
    _common(train)
    train.add_argument("--out", type=Path, required=True, help="model file, .keras")
    _by(train)
    _train_options(train)
    train.set_defaults(handler=cmd_train)
    dashboard = sub.add_parser("dashboard", help="serve optuna-dashboard on the study's storage at 127.0.0.1")
    _common(dashboard)
    dashboard.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")
    dashboard.set_defaults(handler=cmd_dashboard)
    check = sub.add_parser("check-data", help="look at an image folder as a study would, without training")
    _common(check)
    check.add_argument("--data", help="image folder (one subfolder per class); default: the config's data.source")
    check.add_argument("--json", type=Path, metavar="FILE", help="also write the full check (every file) as JSON")
    check.set_defaults(handler=cmd_check_data)
    return parser


def _by(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--by",
        choices=("accuracy", "stability"),
        default="accuracy",
        help="accuracy: best val accuracy; stability: fewest failures across seeds",
    )


def _train_options(parser: argparse.ArgumentParser) -> None:
    """Options of a final training (``train``, ``export-best --train``)."""
    add = parser.add_argument
    add("--epochs", type=int, help="training epochs (default: the config's)")
    add("--device", choices=("auto", "cpu", "gpu"), help="auto (default)")
    add("--backend", choices=("tensorflow", "jax"), help="Keras backend (default: KERAS_BACKEND, else tensorflow)")
    add("--register", metavar="NAME", help="register the logged model in MLflow's model registry as NAME")


def _config(args: argparse.Namespace, overrides: dict):
    from spp_search.config import load_config

    path = args.config or shipped_experiment()
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


def _folder_check(config, console):
    """Decode every file of the config's folder once and print the summary (``datacheck``)."""
    from spp_search import datacheck

    check = datacheck.check_folder(Path(config.data.source))
    for line in check.summary():
        console.print(line, markup=False, highlight=False)
    return check


def _warn(check, config, console) -> None:
    """Stop on what makes the folder unusable; warn about what is left out or will fail."""
    from spp_search import datacheck

    datacheck.require(check, config.data.on_unreadable)
    searched = "channel_policy" in config.space.names
    policy = datacheck.policy_warning(check, config.defaults.get("channel_policy", "strict"), searched)
    for line in [*datacheck.warnings(check), *([policy] if policy else [])]:
        console.print(line, markup=False, highlight=False, style="yellow")


def check_data(config, console) -> dict | None:
    """Check a folder source once, before anything is created: print its summary and one warning
    per file left out; a ``ConfigError`` (exit 2) if it cannot make a study. Returns the check as
    a dict for the parent MLflow run (None for built-in data)."""

    if config.data.source in BUILT_IN:
        return None
    check = _folder_check(config, console)
    _warn(check, config, console)
    return check.to_dict()


def cmd_check_data(args: argparse.Namespace) -> int:
    """``check-data``: the pre-study check on its own; exit 2 when a study could not use the folder."""
    import json

    from rich.console import Console

    config = _config(args, {"data.source": args.data})
    if config.data.source in BUILT_IN:
        raise ConfigError(must("data", "be an image folder", config.data.source, "Pass --data DIR."))
    console = Console(soft_wrap=True)
    check = _folder_check(config, console)
    if args.json is not None:
        args.json.write_text(json.dumps(check.to_dict(), indent=1))
    _warn(check, config, console)
    left_out = f", {len(check.unreadable())} left out" if check.unreadable() else ""
    console.print(f"ok: a study can use {len(check.usable())} images in {len(check.classes)} classes{left_out}")
    return 0


def _train_study(config, prepare=None, join: bool = False) -> int:
    from rich.console import Console

    from spp_search import backends
    from spp_search.devices import resolve_device
    from spp_search.engines.optuna_engine import run_study

    checked = check_data(config, Console(soft_wrap=True))
    backend = backends.require(backends.resolve(config.study.backend))
    config = dataclasses.replace(config, study=dataclasses.replace(config.study, backend=backend))
    device, gpus = resolve_device(config.study.device, backend)
    runners = make_runners(config, device, gpus, backend)
    try:
        if config.study.engine == "keras-tuner":
            backends.select(backend)  # KerasTuner imports Keras in the driver: on the study's backend
            from spp_search.engines.keras_tuner_engine import run_keras_tuner

            run_keras_tuner(config, runners[:1], device, Console(), Path("kt_projects"), checked)
        else:
            run_study(config, runners, device, Console(), prepare, join=join, data_check=checked)
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
    model_out = args.model_out or args.out.with_suffix(".keras")
    if args.train:
        _check_model_out(model_out)
    config = _config(args, {})
    study = load_study(config.study.name, config.study.storage)
    best = best_config(study, args.by)
    write_config(best, args.out)
    result = best["result"]
    print(f"wrote {args.out}: trial {result['trial']} of {result['study']}, val_accuracy {result['val_accuracy']:.4f}")
    if args.train:
        tracking = args.tracking_uri or config.study.tracking_uri
        return _train(best, args, model_out, tracking, experiment=args.study_name or result["study"])
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train ``--config`` (e.g. an exported best), or without it the best trial of ``--study-name``;
    the run, its metrics and the model go to the study's MLflow experiment (``registry.py``)."""
    from spp_search.config import read_file

    _check_model_out(args.out)
    if args.config is not None:
        raw = read_file(args.config)
        source = raw.get("result") or {}
        study_name = args.study_name or source.get("study") or (raw.get("study") or {}).get("name")
        tracking = args.tracking_uri or (raw.get("study") or {}).get("tracking_uri")
        return _train(raw, args, args.out, tracking, experiment=study_name)
    if not args.study_name:
        fix = "Pass --config best.yaml (from export-best), or --study-name (and --storage) of a study."
        raise ConfigError(must("config", "be given, or --study-name", None, fix))
    from spp_search.export import best_config, load_study

    config = _config(args, {})
    best = best_config(load_study(config.study.name, config.study.storage), args.by)
    tracking = args.tracking_uri or config.study.tracking_uri
    return _train(best, args, args.out, tracking, experiment=config.study.name)


def _check_model_out(out: Path) -> None:
    """The model file's name and folder, checked before anything is trained or logged."""
    if out.suffix != ".keras":
        raise ConfigError(must("out", "end in .keras", str(out), "E.g. --out model.keras."))
    if not out.parent.resolve().is_dir():
        raise ConfigError(must("out", "be in an existing folder", str(out), "Create the folder first."))


def _train(raw: dict, args: argparse.Namespace, out: Path, tracking: str | None, experiment: str | None) -> int:
    """Train the config ``raw`` into ``out``, as a run of ``experiment`` at ``tracking``."""
    from spp_search import backends
    from spp_search.config import build_config
    from spp_search.devices import resolve_device

    source = raw.get("result") or {}
    if tracking and "***" in tracking:
        tracking = None  # a redacted URL from a stored config: the default, unless given
    overrides = {"study.device": args.device, "study.backend": args.backend, "study.tracking_uri": tracking}
    config = build_config(raw, overrides)
    backend = backends.require(backends.resolve(config.study.backend))
    device, _ = resolve_device(config.study.device, backend)
    backends.select(backend)  # before Keras is imported below
    from spp_search import registry
    from spp_search.tracking import Tracker
    from spp_search.training import train_config

    if config.space.params:  # checked by train_config too, but before a run is created here
        fix = "Export one with `python study.py export-best --out best.yaml`."
        raise ConfigError(must("config", "fix every factor (an empty `space`)", f"space={config.space.names}", fix))
    tracker = Tracker(config.study.tracking_uri, experiment or config.study.name)
    epochs = args.epochs or config.study.epochs
    run_id = registry.start_training(tracker, config, source, backend, epochs)
    try:
        metrics, model, example = train_config(
            config, out, device, args.epochs, backend, reporter=registry.EpochLogger(tracker, run_id)
        )
        logged = registry.log_model(tracker, run_id, model, config, example, args.register, source)
    except BaseException as exc:
        tracker.client.set_tag(run_id, "error_message", redact_cut(f"{type(exc).__name__}: {exc}", 500))
        tracker.end_run(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    if source.get("val_accuracy") is not None:
        tracker.client.log_metric(run_id, "source_val_accuracy", float(source["val_accuracy"]))
    tracker.end_run(run_id)
    print(f"wrote {out}: val_accuracy {metrics['val_accuracy']:.4f}, input {metrics['input_shape']}")
    if source.get("val_accuracy") is not None:
        print(f"the exported trial reached {source['val_accuracy']:.4f}")
    print(f"MLflow: run {run_id} in experiment {tracker.study_name!r}, model {logged['model_uri']}")
    if logged["version"] is not None:
        print(f"registered {args.register!r} version {logged['version']}: models:/{args.register}/{logged['version']}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """optuna-dashboard on the study's storage, at 127.0.0.1 only (it has no authentication)."""
    try:
        from optuna_dashboard import run_server
    except ImportError:
        fix = 'Install it: pip install -c constraints.txt -e ".[dashboard]".'
        raise ConfigError(must("dashboard", "have optuna-dashboard installed", "optuna_dashboard", fix)) from None
    from spp_search.export import load_study
    from spp_search.storage import make_storage

    config = _config(args, {})
    study = load_study(config.study.name, config.study.storage)
    print(f"optuna-dashboard: http://127.0.0.1:{args.port}/dashboard/studies/{study._study_id} (Ctrl-C stops it)")
    run_server(make_storage(config.study.storage), host="127.0.0.1", port=args.port)
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
    import warnings

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
    # MLflow's own HTTP retries (7, backoff factor 2) would keep a run waiting for minutes on an
    # unreachable server; our retries (storage.with_retries: 1, 2, 4, 8 s) report it in one line
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    logging.getLogger("optuna").setLevel(logging.WARNING)
    # Optuna's ExperimentalWarning (heartbeats, journal storages, constraints...) on every run
    # says nothing a user can act on; matched by its text, so Optuna need not be imported here
    warnings.filterwarnings("ignore", message=r".* is experimental \(supported from v")
    warnings.filterwarnings("ignore", message=r"Argument ``\w+`` is an experimental feature")
    # spp-search runs its own trial loop (budget tickets, heartbeats) on purpose
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
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
