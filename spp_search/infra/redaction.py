"""Keep credentials out of logs, console output, MLflow params/tags and exported configs."""

from __future__ import annotations

import re

# scheme://user:password@host: the password runs to the last '@' before the host (passwords may
# hold '@' and ':'; a '/' or a space ends the URL's authority).
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^\s/]*)@")
# http(s)://TOKEN@host: a bare user part of a web URL is how tokens are passed (a database URL's
# bare user part is a user name, and kept).
_WEB_TOKEN = re.compile(r"(?P<scheme>https?://)(?P<token>[^:/@\s]+)@")
_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:password|passwd|pwd|token|access_token|id_token|refresh_token|secret|client_secret"
    r"|api_key|apikey|key|sig|signature|auth)=)[^&\s]*"
)


def redact(text: str) -> str:
    """Replace passwords in URLs (``user:pw@host``), tokens in web URLs and secret query values
    with ``***``.

    >>> redact("postgresql://bob:hunter2@db:5432/optuna")
    'postgresql://bob:***@db:5432/optuna'
    """
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _WEB_TOKEN.sub(lambda m: f"{m['scheme']}***@", text)
    return _QUERY_SECRET.sub(r"\1***", text)


# terminal colour and cursor codes (Keras and TensorFlow colour some of their error messages)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape codes, which MLflow would store (and show) verbatim.

    >>> strip_ansi("\\x1b[1mValueError\\x1b[0m: bad")
    'ValueError: bad'
    """
    return _ANSI.sub("", text)


def redact_cut(text: str, limit: int) -> str:
    """``text`` redacted and without terminal codes, then cut to ``limit`` characters: cutting
    first could cut a URL between its password and its '@', and leave a prefix of the password
    that no rule recognises."""
    return redact(strip_ansi(text))[:limit]
