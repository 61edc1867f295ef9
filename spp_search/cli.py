"""Command line of spp-search; ``study.py`` only calls :func:`main`.

Commands: ``run`` (the default: ``python study.py --trials 50``) and ``export-best``.
Exit status: 0 done, 2 bad config or argument (one-line message, nothing trained), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from spp_search.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "experiments" / "default.yaml"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="experiment YAML (default: experiments/default.yaml if present)",
    )
    parser.add_argument("--study-name", help="Optuna study and MLflow experiment name")
    parser.add_argument("--storage", help="Optuna storage URL (default sqlite:///optuna.db)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="study.py",
        description="Search SPP training configurations with Optuna; every trial is logged to "
        "MLflow with its outcome (ok, pruned, diverged_nan, or the failure kind).",
        epilog="Examples:\n  python study.py --trials 50\n"
        "  python study.py export-best --out best.yaml\n"
        "  mlflow ui --backend-store-uri sqlite:///mlflow.db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="{run,export-best}")
    run = sub.add_parser("run", help="run (or resume) a study: the default command")
    _common(run)
    run.add_argument("--trials", type=int, help="the study's total number of trials (default 50)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    run.add_argument("--seed", type=int, help="seed of the sampler and of trial initialisation")
    run.add_argument("--epochs", type=int, help="training epochs per trial")
    run.add_argument(
        "--device", choices=("auto", "cpu", "gpu"), help="auto (default): a GPU when TensorFlow sees one"
    )
    run.add_argument("--data", help="image folder (one subfolder per class) instead of built-in data")
    run.set_defaults(handler=cmd_run)
    export = sub.add_parser("export-best", help="write the best trial's complete config")
    _common(export)
    export.add_argument("--out", type=Path, required=True, help="output file, .yaml or .json")
    export.set_defaults(handler=cmd_export)
    return parser


def _config(args: argparse.Namespace, overrides: dict):
    from spp_search.config import load_config

    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    return load_config(path, {"study.name": args.study_name, "study.storage": args.storage, **overrides})


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from spp_search.devices import resolve_device
    from spp_search.engines.optuna_engine import run_study
    from spp_search.isolation import InlineRunner

    config = _config(
        args,
        {
            "study.trials": args.trials,
            "study.tracking_uri": args.tracking_uri,
            "study.seed": args.seed,
            "study.epochs": args.epochs,
            "study.device": args.device,
            "data.source": args.data,
        },
    )
    device = resolve_device(config.study.device)
    runner = InlineRunner()
    try:
        run_study(config, runner, device, Console())
    finally:
        runner.close()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from spp_search.export import best_config, check_out, load_study, write_config

    check_out(args.out)
    config = _config(args, {})
    study = load_study(config.study.name, config.study.storage)
    best = best_config(study)
    write_config(best, args.out)
    result = best["result"]
    print(
        f"wrote {args.out}: trial {result['trial']} of {result['study']}, "
        f"val_accuracy {result['val_accuracy']:.4f}"
    )
    return 0


def _quiet_libraries() -> None:
    """Keep the console for trial outcomes: MLflow and Optuna log INFO lines otherwise."""
    import logging

    for name in ("mlflow", "alembic", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "export-best", "-h", "--help"):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    start = time.perf_counter()
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"interrupted after {time.perf_counter() - start:.0f} s; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
