"""Every failed trial explains itself (failures.py): a reason for each outcome, its evidence as an
artifact, no terminal codes, no secrets; and the console line carries the reason."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from spp_search.study.progress import StudyProgress
from spp_search.trial import failures
from spp_search.trial.outcomes import Outcome
from spp_search.trial.run import TrialResult

DIVERGED = TrialResult(
    Outcome.DIVERGED_EXPLOSION,
    failed_epoch=1,
    failed_step=17,
    evidence={"initial_loss": 1.1, "max_loss": 40.0, "steps": [{"step": 17, "loss": 40.0, "grad_norm": float("inf")}]},
)
CASES = [
    (DIVERGED, "Divergence", "above 10x the first batch's (40 vs 1.1) at step 17, epoch 1"),
    (TrialResult(Outcome.DIVERGED_NAN, failed_epoch=0, failed_step=3), "Divergence", "non-finite"),
    (
        TrialResult(
            Outcome.OOM_HOST,
            error_message="trial 4: exceeded the host memory budget (signal 9)",
            evidence={"peak_mb": 1530.2, "budget_mb": 1500.0},
        ),
        "HostMemoryBudget",
        "exceeded the host memory budget (signal 9) (peak 1530 MiB, budget 1500 MiB)",
    ),
    (
        TrialResult(Outcome.OOM_HOST, error_message="trial 4: killed by the kernel's out-of-memory killer"),
        "OomKilled",
        "out-of-memory killer",
    ),
    (TrialResult(Outcome.TIMEOUT, error_message="trial 2: timed out (signal 9)"), "Timeout", "timed out"),
    (TrialResult(Outcome.CRASH, error_message="trial 5: worker exited with code -11 (signal 11)"), "WorkerExit", "-11"),
    (
        TrialResult(Outcome.DATA_ERROR, error_type="spp_search.errors.DataError", error_message="a.png: unreadable"),
        "spp_search.errors.DataError",
        "a.png: unreadable",
    ),
]


@pytest.mark.parametrize(
    ("result", "error_type", "words"), CASES, ids=[c[0].outcome.value + str(i) for i, c in enumerate(CASES)]
)
def test_every_failure_has_a_type_and_a_reason(result, error_type, words):
    got_type, message = failures.reason(result)
    assert got_type == error_type and words in message
    files = failures.artifacts(result)
    record = json.loads(files["failure.json"])  # strict JSON: inf and nan written as strings
    assert record["outcome"] == result.outcome.value and record["error_message"] == message


def test_a_divergence_artifact_holds_the_steps_before_it():
    record = json.loads(failures.artifacts(DIVERGED)["failure.json"])
    assert record["evidence"]["steps"] == [{"step": 17, "loss": 40.0, "grad_norm": "inf"}]
    assert record["failed_step"] == 17


def test_messages_and_tracebacks_lose_terminal_codes_and_secrets():
    result = TrialResult(
        Outcome.CRASH,
        error_type="builtins.ValueError",
        error_message="\x1b[1mValueError\x1b[0m: cannot reach postgresql://bob:hunter2@db/x",
        traceback="Traceback\n\x1b[31mValueError\x1b[0m: postgresql://bob:hunter2@db/x\n",
    )
    _, message = failures.reason(result)
    files = failures.artifacts(result)
    for text in (message, files["traceback.txt"], files["failure.json"]):
        assert "\x1b" not in text and "hunter2" not in text
    assert message == "ValueError: cannot reach postgresql://bob:***@db/x"


def test_ok_and_pruned_trials_have_no_failure_record():
    for outcome in (Outcome.OK, Outcome.PRUNED):
        assert failures.artifacts(TrialResult(outcome)) == {}


def test_the_console_line_of_a_failed_trial_says_why():
    """It used to say `trial 3 data_error` and no more: the reason was only in MLflow."""
    out = io.StringIO()
    result = TrialResult(
        Outcome.DATA_ERROR,
        error_type="spp_search.errors.DataError",
        error_message="img_0017.png: unreadable [bytes 0-1024]\nsecond line",
        failed_epoch=0,
        failed_step=0,
    )
    with StudyProgress(Console(file=out, width=200), 1, 0, "x") as progress:
        progress.trial_done(3, result, 1.0, "levels=1")
    text = out.getvalue()
    assert "DataError: img_0017.png: unreadable [bytes 0-1024] second line" in text
    long = TrialResult(Outcome.CRASH, error_type="builtins.RuntimeError", error_message="x" * 1000)
    assert len(failures.one_line(long)) == failures.CONSOLE_LIMIT
