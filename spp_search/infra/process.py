"""What a command-line process sets up before it works: quiet libraries, SIGTERM as Ctrl-C."""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings


def quiet_libraries() -> None:
    """Keep the console for trial outcomes: MLflow and Optuna log INFO lines otherwise."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
    # MLflow's own HTTP retries (7, backoff factor 2) would keep a run waiting for minutes on an
    # unreachable server; our retries (infra.retry: 1, 2, 4, 8 s) report it in one line
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    logging.getLogger("optuna").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # if it was imported before the variable was set
    # Optuna's ExperimentalWarning (heartbeats, journal storages, constraints...) on every run
    # says nothing a user can act on; matched by its text, so Optuna need not be imported here
    warnings.filterwarnings("ignore", message=r".* is experimental \(supported from v")
    warnings.filterwarnings("ignore", message=r"Argument ``\w+`` is an experimental feature")
    # spp-search runs its own trial loop (budget tickets, heartbeats) on purpose
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def stop_on_sigterm() -> dict:
    """SIGTERM stops a command like Ctrl-C (trials recorded, MLflow runs closed, non-zero exit).
    Returns a dict that gets ``signal = "SIGTERM"`` when that is what stopped it."""
    seen: dict = {}
    if threading.current_thread() is threading.main_thread():

        def handler(signum, frame):
            seen["signal"] = "SIGTERM"
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, handler)
    return seen
