"""Credentials never reach logs, MLflow or exported configs: URLs, query secrets, cut messages."""

from __future__ import annotations

import pytest

from spp_search.infra.redaction import redact, redact_cut


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://bob:hunter2@db:5432/optuna", "postgresql://bob:***@db:5432/optuna"),
        ("mysql+pymysql://bob:p@ss@db/optuna", "mysql+pymysql://bob:***@db/optuna"),
        (
            "postgresql://bob:a:b@c@db/x and redis://:pw@cache:6379/0",
            "postgresql://bob:***@db/x and redis://:***@cache:6379/0",
        ),
        ("https://ghp_TOKEN123@github.com/org/repo", "https://***@github.com/org/repo"),
        ("postgresql://bob@db/optuna", "postgresql://bob@db/optuna"),  # a user name alone is no secret
        ("http://mlflow:5000/?access_token=abc&x=1", "http://mlflow:5000/?access_token=***&x=1"),
        ("https://store/blob?sv=1&sig=S3CR3T%3D&se=2", "https://store/blob?sv=1&sig=***&se=2"),
        ("https://h/p?password=pw&token=t&api_key=k", "https://h/p?password=***&token=***&api_key=***"),
        ("no secret here: shape (2, 3)", "no secret here: shape (2, 3)"),
    ],
)
def test_redact_table(text, expected):
    assert redact(text) == expected


def test_a_message_is_redacted_before_it_is_cut():
    """Cutting first could leave a password prefix with its '@' cut off, which no rule matches."""
    message = "x" * 30 + " postgresql://bob:hunter2@db/optuna"
    cut = redact_cut(message, 52)
    assert "hunt" not in cut and len(cut) <= 52
    assert redact(message[:52]).endswith("bob:hunt")  # the old order leaked a prefix
