"""Keep credentials out of logs, console output, MLflow params/tags and exported configs."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|passwd|pwd|token|secret|api_key)=)[^&\s]*")


def redact(text: str) -> str:
    """Replace passwords in URLs (``user:pw@host``) and secret query values with ``***``.

    >>> redact("postgresql://bob:hunter2@db:5432/optuna")
    'postgresql://bob:***@db:5432/optuna'
    """
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _QUERY_SECRET.sub(r"\1***", text)
