"""The command line of spp-search: it parses arguments and hands each command to its module.

Commands (``python study.py COMMAND``, ``spp-search COMMAND`` and ``python -m spp_search COMMAND``
are the same): ``run`` (the default: ``python study.py --trials 50``) and ``ablate`` run a study
(``study.driver``), ``worker`` joins one, ``report`` writes its report (``results.report``),
``export-best`` writes its best configuration (``results.export``), ``train`` retrains one
(``results.retrain``), ``dashboard`` serves optuna-dashboard (``results.dashboard``), and
``check-data`` checks an image folder (``data.datacheck``), and ``doctor`` diagnoses a user's own
model on their folder (``doctor``). The options' choices come from the tables the config is
validated against.

Exit status: 0 done, 1 a run-time error of ours, 2 bad config or argument (one-line message,
nothing trained), 130 interrupted (143 by SIGTERM).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from spp_search.backends import BACKENDS
from spp_search.config.choices import DEVICES, ENGINES, ISOLATIONS, SELECTIONS, TUNERS
from spp_search.infra import environment, faults
from spp_search.infra.errors import ConfigError, SppSearchError, must
from spp_search.infra.process import quiet_libraries, stop_on_sigterm
from spp_search.infra.redaction import redact

COMMANDS = ("run", "ablate", "worker", "report", "export-best", "train", "dashboard", "check-data", "doctor")


def _common(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", type=Path, default=None, help="experiment YAML (default: the shipped experiments/default.yaml)")
    add("--study-name", help="Optuna study and MLflow experiment name")
    add(
        "--storage",
        help="Optuna storage URL (default sqlite:///optuna.db; or SPP_SEARCH_STORAGE, SPP_SEARCH_STORAGE_FILE)",
    )
    add("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db; or MLFLOW_TRACKING_URI)")


def _run_options(parser: argparse.ArgumentParser) -> None:
    """Options of every command that trains a study (``run``, ``ablate``)."""
    _common(parser)
    add = parser.add_argument
    add("--trials", type=int, help="the study's total number of trials (default 50)")
    add("--seed", type=int, help="seed of the sampler and of trial initialisation")
    add("--steps", type=int, help="optimizer steps per trial, whatever the batch size (default 36)")
    add("--epochs", type=int, help="train epochs per trial instead of --steps (passes over the training set)")
    add("--data", help="image folder (one subfolder per class) instead of built-in data")
    add("--engine", choices=ENGINES, help="search engine (default optuna)")
    add("--tuner", choices=TUNERS, help="KerasTuner's tuner (default bayesian)")
    _worker_options(parser)


def _worker_options(parser: argparse.ArgumentParser) -> None:
    """Where and how trials run (``run``, ``ablate``, ``worker``)."""
    add = parser.add_argument
    add(
        "--backend",
        choices=BACKENDS,
        help="Keras backend of the trials (default: KERAS_BACKEND if set, else tensorflow)",
    )
    add("--device", choices=DEVICES, help="auto (default): the GPUs the backend can use, else CPU")
    add("--isolation", choices=ISOLATIONS, help="process (default): each trial in a worker that may crash alone")
    add("--host-memory-budget", metavar="SIZE", help="e.g. 4GiB: a worker past it is killed (oom_host)")
    add("--gpu-memory-budget", metavar="SIZE", help="e.g. 2GiB: caps the worker's GPU memory (oom_gpu)")
    add("--trial-timeout", type=float, metavar="SECONDS", help="a trial past it is stopped (default 1800, 0 = off)")
    add("--max-retries", type=int, help="retries of a crashed or timed-out trial (default 2)")
    add("--workers", type=int, help="trials run at once (default: 1 on a GPU, min(cores, 4) on a CPU)")


def _train_options(parser: argparse.ArgumentParser) -> None:
    """Options of a final training (``train``, ``export-best --train``)."""
    add = parser.add_argument
    add("--by", choices=SELECTIONS, default="accuracy", help="accuracy: best val accuracy; stability: fewest failures")
    add("--epochs", type=int, help="train this many epochs (default: the config's budget, steps or epochs)")
    add("--device", choices=DEVICES, help="auto (default)")
    add("--backend", choices=BACKENDS, help="Keras backend (default: KERAS_BACKEND, else tensorflow)")
    add("--register", metavar="NAME", help="register the logged model in MLflow's model registry as NAME")


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
    for name, help_text, handler in (
        ("run", "run (or resume) a study: the default command", cmd_run),
        ("ablate", "run a config's `ablation` (fixed configurations x seeds)", cmd_ablate),
    ):
        _run_options(command := sub.add_parser(name, help=help_text))
        command.set_defaults(handler=handler)
    worker = sub.add_parser("worker", help="join a running study (e.g. from another machine) until its total")
    worker.add_argument("--study-name", required=True, help="the study to join")
    worker.add_argument("--storage", help="its Optuna storage URL (or SPP_SEARCH_STORAGE[_FILE])")
    worker.add_argument("--tracking-uri", help="MLflow tracking URI (default: the study's, if it holds no secret)")
    _worker_options(worker)
    worker.set_defaults(handler=cmd_worker)
    report = sub.add_parser("report", help="write report.md/.html and plots; log them to MLflow")
    _common(report)
    report.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default reports/)")
    report.add_argument("--compare", nargs="+", default=[], metavar="STUDY", help="other studies to put side by side")
    report.set_defaults(handler=cmd_report)
    export = sub.add_parser("export-best", help="write the best trial's complete config (and train it: --train)")
    _common(export)
    export.add_argument("--out", type=Path, required=True, help="output file, .yaml or .json")
    export.add_argument("--train", action="store_true", help="then train it (as `train`), model to --model-out")
    export.add_argument("--model-out", type=Path, help="with --train: model file (default: --out with .keras)")
    _train_options(export)
    export.set_defaults(handler=cmd_export)
    train = sub.add_parser("train", help="retrain a config (e.g. best.yaml), or a study's best; save and log the model")
    _common(train)
    train.add_argument("--out", type=Path, required=True, help="model file, .keras")
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
    _doctor_options(sub.add_parser("doctor", help="why does YOUR model fail to train on YOUR folder? name the culprit"))
    return parser


def _doctor_options(doctor: argparse.ArgumentParser) -> None:
    from spp_search.data.channels import CHANNEL_POLICIES
    from spp_search.data.preprocessing import INPUT_POLICIES

    add = doctor.add_argument
    add("--model", required=True, metavar="SPEC", help="model.keras, pkg.module:function or file.py:function")
    add("--data", required=True, metavar="DIR", help="the image folder (one subfolder per class)")
    add("--custom-objects", default="", metavar="MODULE", help="the module defining a .keras model's custom layers")
    add(
        "--input-policy",
        choices=INPUT_POLICIES,
        help="default: fixed at the model's static size, else variable_bucketed",
    )
    add("--image-size", type=int, help="default: the model's static size, else 64")
    add("--channel-policy", choices=CHANNEL_POLICIES, default="strict", help="how your training meets the files")
    add("--epochs", type=int, default=6, help="training epochs per trial (default 6)")
    add("--batch-size", type=int, default=16, help="default 16")
    add("--learning-rate", type=float, help="default: the compiled model's, else 0.003")
    add("--host-memory-budget", default="none", metavar="SIZE", help="e.g. 2GiB: a trial past it is oom_host")
    add("--gpu-memory-budget", default="none", metavar="SIZE", help="e.g. 4GiB")
    add("--seeds", type=int, default=3, help="seeds per arm (default 3)")
    add("--time-budget", type=float, default=300.0, metavar="SECONDS", help="stop adding arms after it (default 300)")
    add(
        "--out",
        type=Path,
        default=Path("diagnosis"),
        help="diagnosis.json, diagnosis.md, fix.yaml (default diagnosis/)",
    )
    add("--json", type=Path, metavar="PATH", help="also write the record here")
    add("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db; or MLFLOW_TRACKING_URI)")
    add("--study-name", help="the diagnosis study's name (default doctor-<model>-<UTC time>; a rerun resumes it)")
    add("--storage", help="its Optuna storage URL (default sqlite:///<out>/diagnosis.db)")
    add("--backend", choices=BACKENDS, help="Keras backend (default: KERAS_BACKEND, else tensorflow)")
    add("--device", choices=DEVICES, default="auto", help="auto (default)")
    doctor.set_defaults(handler=cmd_doctor)


def _config(args: argparse.Namespace, overrides: dict):
    """The config of ``--config`` (or the shipped default experiment) with the options given."""
    from spp_search.config.settings import load_config, shipped_experiment

    path = args.config or shipped_experiment()
    return load_config(path, {"study.name": args.study_name, "study.storage": args.storage, **overrides})


def _placement(args: argparse.Namespace) -> dict:
    """Config overrides from the where-and-how options."""
    names = ("device", "isolation", "host_memory_budget", "gpu_memory_budget", "trial_timeout", "max_retries")
    return {f"study.{n}": getattr(args, n) for n in (*names, "workers", "backend")}


def cmd_run(args: argparse.Namespace) -> int:
    from spp_search.study import driver

    given = {"trials": args.trials, "tracking_uri": args.tracking_uri, "seed": args.seed}
    given.update(steps=args.steps, epochs=args.epochs)
    overrides = {**{f"study.{k}": v for k, v in given.items()}, "data.source": args.data, **_placement(args)}
    overrides.update({"study.engine": args.engine, "study.tuner": args.tuner})
    return driver.run(_config(args, overrides))


def cmd_ablate(args: argparse.Namespace) -> int:
    """``run`` for a config that must have an ``ablation`` section."""
    from spp_search.config.settings import read_file

    if args.config is None or "ablation" not in read_file(args.config):
        fix = "See experiments/paper_multisize.yaml."
        raise ConfigError(must("config", "have an `ablation` section for `ablate`", str(args.config), fix))
    return cmd_run(args)


def cmd_worker(args: argparse.Namespace) -> int:
    """Join an existing study: its config comes from the storage; run tickets until the total."""
    from spp_search.study import driver

    if not args.storage:
        fix = f"Pass --storage, or set {environment.STORAGE_ENV} or {environment.STORAGE_FILE_ENV}."
        raise ConfigError(must("storage", "be given to join a study", None, fix))
    config = driver.joined_config(args.study_name, args.storage, args.tracking_uri, _placement(args))
    return driver.run(config, join=True)


def cmd_report(args: argparse.Namespace) -> int:
    from spp_search.infra.files import check_writable
    from spp_search.infra.storage import load_study
    from spp_search.results.report import write_report

    config = _config(args, {"study.tracking_uri": args.tracking_uri})
    check_writable(args.out.resolve(), "out", str(args.out))
    study = load_study(config.study.name, config.study.storage)
    others = [load_study(name, config.study.storage) for name in args.compare]
    path = write_report(study, config.study.tracking_uri, args.out / config.study.name, others)
    print(f"wrote {path} (and report.html, plots) in {path.parent}: open {path.with_suffix('.html')}")
    for line in report_next_steps(config):
        print(line)
    return 0


def report_next_steps(config) -> list[str]:
    """After ``report``: the study's MLflow view and the command that exports its best trial."""
    from mlflow import MlflowClient

    from spp_search.study.runs_view import next_steps

    experiment = MlflowClient(config.study.tracking_uri).get_experiment_by_name(config.study.name)
    command = f"python study.py export-best --study-name {shlex.quote(config.study.name)} --out best.yaml --train"
    return next_steps(config.study.tracking_uri, experiment.experiment_id if experiment else None, command)


def _retrain_options(args: argparse.Namespace) -> dict:
    return {"epochs": args.epochs, "device": args.device, "backend": args.backend, "register": args.register}


def cmd_export(args: argparse.Namespace) -> int:
    from spp_search.results import export, retrain

    export.check_out(args.out)
    model_out = args.model_out or args.out.with_suffix(".keras")
    if args.train:
        retrain.check_model_out(model_out)
    config = _config(args, {})
    best = export.export_best(config, args.out, args.by)
    if not args.train:
        return 0
    tracking, experiment = args.tracking_uri or config.study.tracking_uri, args.study_name or best["result"]["study"]
    return retrain.retrain(best, model_out, tracking=tracking, experiment=experiment, **_retrain_options(args))


def cmd_train(args: argparse.Namespace) -> int:
    """Train ``--config`` (e.g. an exported best), or without it the best trial of ``--study-name``."""
    from spp_search.results import export, retrain

    retrain.check_model_out(args.out)
    if args.config is not None:
        raw, experiment, tracking = retrain.from_file(args.config, args.study_name, args.tracking_uri)
    elif args.study_name:
        config = _config(args, {})
        raw, experiment = export.best_of_study(config, args.by), config.study.name
        tracking = args.tracking_uri or config.study.tracking_uri
    else:
        fix = "Pass --config best.yaml (from export-best), or --study-name (and --storage) of a study."
        raise ConfigError(must("config", "be given, or --study-name", None, fix))
    return retrain.retrain(raw, args.out, tracking=tracking, experiment=experiment, **_retrain_options(args))


def cmd_dashboard(args: argparse.Namespace) -> int:
    from spp_search.results import dashboard

    config = _config(args, {})
    return dashboard.serve(config.study.name, config.study.storage, args.port)


def cmd_check_data(args: argparse.Namespace) -> int:
    """``check-data``: the pre-study check on its own; exit 2 when a study could not use the folder."""
    from spp_search.data import datacheck

    config = _config(args, {"data.source": args.data})
    return datacheck.command(
        config.data, config.defaults["channel_policy"], "channel_policy" in config.space.names, args.json
    )


def cmd_doctor(args: argparse.Namespace) -> int:
    """``doctor``: exit 0 with a diagnosis (``none`` included), 1 for ``unknown``, 2 for bad input."""
    from spp_search.doctor.diagnosis import command

    return command({**vars(args), "tracking_uri": args.tracking_uri or "sqlite:///mlflow.db"})


def _with_environment(args: argparse.Namespace) -> None:
    """``--storage`` and ``--tracking-uri`` from the environment when not given (``infra.environment``)."""
    for option in ("storage", "tracking_uri"):
        if getattr(args, option, None) == "":
            name = option.replace("_", "-")
            raise ConfigError(must(name, "be a URL when given", "", f"Leave --{name} out for the default."))
    if hasattr(args, "storage"):
        args.storage = environment.storage_url(args.storage)
    if hasattr(args, "tracking_uri"):
        args.tracking_uri = environment.tracking_uri(args.tracking_uri)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    quiet_libraries()
    start, stopped_by = time.perf_counter(), stop_on_sigterm()
    try:
        _with_environment(args)
        return args.handler(args)
    except ConfigError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except SppSearchError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - never a traceback on the console: one line, the rest logged
        code, line = faults.explain(exc)
        print(f"error: {line}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        name = stopped_by.get("signal", "SIGINT")
        print(
            f"stopped by {name} after {time.perf_counter() - start:.0f} s; running trials were recorded as "
            "interrupted and re-queued: rerun the same command to resume",
            file=sys.stderr,
        )
        return 143 if name == "SIGTERM" else 130
