"""The benchmarks' pure parts: the target check and the sampler-feedback repeat count."""

from __future__ import annotations

from types import SimpleNamespace

import optuna

from benchmarks.sampler_feedback import repeats_after, summarise
from benchmarks.table import targets_section


def _spp_row(shape, levels, mode, floor, paper, speedup):
    return {
        "shape": list(shape),
        "levels": list(levels),
        "mode": mode,
        "ratio_vs_floor": floor,
        "ratio_vs_paper_window": paper,
        "speedup_vs_round_bins": speedup,
    }


def test_targets_are_checked_on_the_worst_case():
    results = {
        "spp_op": {
            "rows": [
                _spp_row((64, 32, 32, 128), (1, 2, 4), "dynamic", 1.2, 1.05, 6.0),
                _spp_row((64, 32, 32, 128), (1, 2, 4), "static", 1.0, 0.9, 4.0),  # speed-up 4 < 5
                _spp_row((16, 7, 9, 512), (1, 2, 4), "dynamic", 2.5, 1.0, 2.0),
                _spp_row((32, 13, 13, 256), (1, 2, 3, 6), "dynamic", 3.5, 1.0, 2.0),  # 3.5 > 3
            ]
        },
        "pipeline": {"ratio_vs_fixed": {"variable_bucketed": 0.85}},
        "overhead": None,
        "study": {"runs": [{"pruner": "median", "wall_s": 660.0, "driver_rss_mb": {"growth": 3.0}}]},
    }
    text = "\n".join(targets_section(results))
    assert "| SPP divisible sizes, dynamic: ours / paper window (worst) | 1.05 | <= 1.1 | met |" in text
    assert "| SPP any size, dynamic: ours / floor (worst) | 3.50 | <= 3 | MISSED |" in text
    assert "speed-up over one slice per bin (worst) | 4.00 | >= 5 | MISSED |" in text
    assert "| variable_bucketed images/s / fixed | 0.85 | >= 0.8 | met |" in text
    assert "| isolated / inline trial wall time | not measured |" in text
    assert "| CPU TensorFlow: default 50-trial study, pruning on (minutes) | 11.00 | <= 1.5 | MISSED |" in text


def _trial(number, outcome, **params):
    dist = optuna.distributions.CategoricalDistribution(["a", "b", "c"])
    return SimpleNamespace(
        number=number, params=params, user_attrs={"outcome": outcome}, distributions={k: dist for k in params}
    )


def test_a_repeat_is_the_same_failure_within_the_radius():
    trials = [
        _trial(0, "shape_error", x="a", y="a", z="a"),
        _trial(1, "ok", x="b", y="b", z="b"),
        _trial(2, "shape_error", x="a", y="b", z="a"),  # 1 away from trial 0
        _trial(3, "shape_error", x="b", y="b", z="c"),  # 2 from trial 2, 3 from trial 0
        _trial(4, "data_error", x="a", y="a", z="a"),  # another outcome: no repeat
    ]
    assert [repeats_after(trials, 2, r) for r in (1, 2, 3)] == [1, 2, 2]
    summary = summarise(trials, start=2)
    assert summary["failures_after"] == 3 and summary["trials_after"] == 3


def test_sampler_feedback_summary_gives_means_intervals_and_the_difference():
    """Hand-computed: on 2, 4, 6 (mean 4, SD 2, t(2) 4.303 -> +-4.97) and off 8, 8, 8."""
    from benchmarks.sampler_feedback import summary

    def run(feedback, failures, r3):
        return {"feedback": feedback, "failures_after": failures, "repeats_after": {"radius_3": r3}}

    runs = [run(True, f, 1) for f in (2, 4, 6)] + [run(False, 8, 3) for _ in range(3)]
    got = summary(runs)
    assert got["failures_after"]["on"] == [4.0, -0.97, 8.97]
    assert got["failures_after"]["off"][0] == 8.0
    assert got["failures_after"]["off_minus_on"][0] == 4.0
    assert got["repeats_r3"]["off_minus_on"][0] == 2.0 and got["seeds_per_arm"] == 3
