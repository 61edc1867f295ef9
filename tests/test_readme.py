"""The README's and docs' tables of results are the committed result files, rendered (benchmarks/readme.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks import readme

ROOT = Path(__file__).resolve().parent.parent
# tables that define things rather than report results: they need no result file
DEFINITIONS = ("| outcome | meaning | Optuna state |",)


@pytest.mark.parametrize("page", readme.PAGES, ids=lambda p: p.name)
def test_every_results_table_matches_its_result_file(page):
    assert readme.stale(page.read_text()) == [], "run `python -m benchmarks.readme`"


def test_no_table_of_results_sits_outside_a_generated_block():
    headers = []
    for page in readme.PAGES:
        text = readme.BLOCK.sub("", page.read_text())
        text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no tables
        lines = text.splitlines()
        headers += [line for i, line in enumerate(lines) if line.startswith("|") and not lines[i - 1].startswith("|")]
    assert all(h in DEFINITIONS for h in headers), headers


def test_the_readme_is_a_manual_and_links_its_pages():
    """About 200 lines (220 at most); every page of docs/ is linked from it."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 220
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in text, f"the README does not link docs/{page.name}"


def test_a_changed_result_file_makes_its_table_stale(tmp_path):
    """The check can fail: edit one number in a copy of the results and the feedback table is stale."""
    for path in (ROOT / "benchmarks" / "results").glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert readme.stale(text, tmp_path) == []
    data = json.loads((tmp_path / "sampler_feedback.json").read_text())
    data["summary"]["failures_after"]["on"][0] += 1
    (tmp_path / "sampler_feedback.json").write_text(json.dumps(data))
    assert readme.stale(text, tmp_path) == ["feedback"]
    assert readme.stale(readme.update(text, tmp_path), tmp_path) == []


def test_an_unknown_block_name_is_an_error():
    with pytest.raises(SystemExit, match="README block `nope` has no renderer"):
        readme.update("<!-- generated:nope -->\nold\n<!-- /generated:nope -->\n")
