"""``dashboard``: optuna-dashboard on a study's storage, at 127.0.0.1 only (it has no authentication)."""

from __future__ import annotations

import os
import signal
import sys

from spp_search.infra import optuna_private
from spp_search.infra.errors import ConfigError, must
from spp_search.infra.storage import load_study, make_storage


def serve(study_name: str, storage: str, port: int) -> int:
    """Serve the dashboard until Ctrl-C; a one-line error when optuna-dashboard is not installed."""
    try:
        from optuna_dashboard import run_server
    except ImportError:
        fix = 'Install it: pip install -c constraints.txt -e ".[dashboard]".'
        raise ConfigError(must("dashboard", "have optuna-dashboard installed", "optuna_dashboard", fix)) from None
    study = load_study(study_name, storage)
    url = f"http://127.0.0.1:{port}/dashboard/studies/{optuna_private.study_id(study)}"
    print(f"optuna-dashboard: {url} (Ctrl-C stops it)", flush=True)
    signal.signal(signal.SIGTERM, _exit_now)
    run_server(make_storage(storage), host="127.0.0.1", port=port)
    return 0


def _exit_now(signum, frame) -> None:
    """SIGTERM ends the server at once: the WSGI server's request handler catches every exception
    (a KeyboardInterrupt raised while it answers a request was swallowed and the server went on),
    and the dashboard holds nothing to save."""
    sys.stderr.write("stopped by SIGTERM\n")
    os._exit(143)
