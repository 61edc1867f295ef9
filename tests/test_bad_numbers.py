"""Every numeric config key and command-line option refuses NaN, infinities and out-of-range values
with one line that names the value and the fix (a table over all of them)."""

from __future__ import annotations

import math

import pytest

from spp_search.cli import main
from spp_search.config.settings import build_config
from spp_search.infra.errors import ConfigError

NAN, INF = math.nan, math.inf
# (section path, key, bad values); every numeric key of every config section
NUMERIC_KEYS = [
    ("study", "trials", [0, -3]),
    ("study", "seed", [-1]),
    ("study", "epochs", [0, -1]),
    ("study", "steps", [0, -1, 20_000_000]),
    ("study", "evaluations", [0, 2000]),
    ("study", "trial_timeout", [NAN, INF, -1.0]),
    ("study", "max_retries", [-1]),
    ("study", "workers", [-2]),
    ("data", "val_fraction", [NAN, INF, 0.0, 1.0]),
    ("data", "split_seed", [-1]),
    ("data", "bands", [0]),
    ("data.synthetic", "num_images", [0, -5]),
    ("data.synthetic", "num_classes", [1]),
    ("data.synthetic", "min_size", [2]),
    ("data.synthetic", "max_size", [3]),
    ("data.synthetic", "bands", [0]),
    ("data.synthetic", "noise", [NAN, INF, -1.0]),
    ("data.synthetic", "contrast", [NAN, INF]),
    ("data.synthetic", "seed", [-1]),
    ("data.corruption", "missing_bands", [NAN, INF, -0.1, 1.5]),
    ("data.corruption", "unreadable", [NAN]),
    ("data.corruption", "seed", [-1]),
]
CASES = [(section, key, value) for section, key, values in NUMERIC_KEYS for value in values]


def _raw(section: str, key: str, value) -> dict:
    raw: dict = {}
    node = raw
    for part in section.split("."):
        node = node.setdefault(part, {})
    node[key] = value
    return raw


@pytest.mark.parametrize(("section", "key", "value"), CASES, ids=[f"{s}.{k}={v}" for s, k, v in CASES])
def test_every_numeric_config_key_refuses_bad_values(section, key, value):
    with pytest.raises(ConfigError) as info:
        build_config(_raw(section, key, value))
    message = str(info.value)
    assert f"`{key}`" in message and "but got" in message and "\n" not in message


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--host-memory-budget", "nan"], "`host_memory_budget` must be a size"),
        (["--host-memory-budget", "inf"], "`host_memory_budget` must be a size"),
        (["--gpu-memory-budget=-2GiB"], "`gpu_memory_budget` must be a size"),
        (["--trial-timeout", "nan"], "`trial_timeout` must be"),
        (["--trial-timeout", "-5"], "`trial_timeout` must be"),
        (["--seed", "-1"], "`seed` must be"),
        (["--trials", "-2"], "`trials` must be"),
        (["--epochs", "0"], "`epochs` must be"),
        (["--steps", "0"], "`steps` must be"),
        (["--workers", "-1"], "`workers` must be"),
        (["--max-retries", "-1"], "`max_retries` must be"),
    ],
)
def test_every_numeric_option_refuses_bad_values_in_one_line(tmp_path, monkeypatch, capsys, argv, fragment):
    monkeypatch.chdir(tmp_path)
    code = main([*argv, "--study-name", "bad", "--storage", f"sqlite:///{tmp_path}/o.db"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and fragment in err and err.count("\n") == 0, err
    assert not (tmp_path / "o.db").exists()
