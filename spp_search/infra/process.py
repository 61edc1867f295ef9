"""What a command-line process sets up before it works: quiet libraries, native logs off the
console, SIGTERM as Ctrl-C."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
import warnings
from pathlib import Path


def quiet_libraries() -> None:
    """Keep the console for trial outcomes: MLflow and Optuna log INFO lines otherwise."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
    # MLflow's own HTTP retries (7, backoff factor 2) would keep a run waiting for minutes on an
    # unreachable server; our retries (infra.retry: 1, 2, 4, 8 s) report it in one line
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    logging.getLogger("optuna").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # if it was imported before the variable was set
    # a failing store (a full disk) makes MLflow log each database error with its traceback, then
    # raise it: the raised error is what the command reports (one line, ``infra.faults``)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    logging.getLogger("mlflow.system_metrics").setLevel(logging.CRITICAL)
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


def log_dir() -> Path:
    """Where native library logs go (``SPP_SEARCH_LOG_DIR``, else a folder in the temp dir)."""
    folder = Path(os.environ.get("SPP_SEARCH_LOG_DIR") or Path(tempfile.gettempdir()) / "spp-search-logs")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def native_stderr_to_log(name: str) -> Path:
    """Point this process's file descriptor 2 at ``<log_dir>/<name>-<pid>.log`` for good.

    TensorFlow, XLA and absl write C++ log lines (``I0000 ... port.cc``, ``E0000 ... failed call
    to cuInit``) straight to descriptor 2 before ``TF_CPP_MIN_LOG_LEVEL`` is read, and they break
    the driver's progress bar. A worker reports everything that matters through its pipe, so its
    descriptor 2 goes to a file: the lines stay readable there, off the console."""
    path = log_dir() / f"{name}-{os.getpid()}.log"
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    return path


@contextlib.contextmanager
def native_stderr_quiet(name: str):
    """``native_stderr_to_log`` for the duration, descriptor 2 restored after (in-process work:
    ``train``, the doctor's probe), so the command's own one-line errors still reach the console."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        yield native_stderr_to_log(name)
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
