"""Report statistics against hand-computed cases."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from spp_search.results.claims import (
    NOT_TESTED,
    REFUTED,
    SOME,
    SUPPORTED,
    UNKNOWN,
    DataFacts,
    _channel_order,
    _channels,
    _memory,
    facts_of,
    judge_failure,
    needed_to_refute,
    verdicts,
)
from spp_search.results.stats import exact, failure_rules, interactions, mean_interval, welch, wilson


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    # hand-computed: p=k/n, z=1.959964; centre=(p+z²/2n)/(1+z²/n), half=z*sqrt(p(1-p)/n+z²/4n²)/(1+z²/n)
    [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0), (1, 3, 0.0615, 0.7923)],
)
def test_wilson_matches_hand_computation(k, n, low, high):
    got = wilson(k, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_wilson_without_trials_is_uninformative():
    assert wilson(0, 0) == (0.0, 1.0)


def test_mean_interval_and_welch():
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    # t(0.975, 2) = 4.3027; sd = 1; half = 4.3027 / sqrt(3) = 2.4841
    assert (mean, low, high) == pytest.approx((2.0, -0.4841, 4.4841), abs=1e-4)
    assert math.isnan(mean_interval([1.0])[1])
    assert welch([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert math.isnan(welch([1], [2, 3]))


FRAME = pd.DataFrame(
    {
        "impl": ["round"] * 6 + ["floor"] * 6,
        "size": [16, 16, 16, 64, 64, 64] * 2,
        "outcome": ["diverged_nan"] * 3 + ["ok"] * 3 + ["ok"] * 6,
    }
)


def test_rules_find_the_failing_region_and_nothing_redundant():
    rules = failure_rules(FRAME, ["impl", "size"])
    assert [r.text() for r in rules] == ["impl = round and size = 16 -> diverged_nan in 3/3 trials"]


def test_rules_need_support_and_rate():
    assert failure_rules(FRAME, ["impl", "size"], min_support=4) == []
    loose = failure_rules(FRAME, ["impl"], min_rate=0.5)
    assert [r.text() for r in loose] == ["impl = round -> diverged_nan in 3/6 trials"]


def test_interaction_is_found_where_only_the_pair_fails():
    frame = FRAME.assign(failed=(FRAME["outcome"] != "ok").astype(float), other=["a", "b"] * 6)
    pairs = interactions(frame, ["impl", "size", "other"], "failed")
    assert pairs[0][:2] == ("impl", "size") and pairs[0][2] > 0.2
    assert interactions(frame.assign(failed=0.0), ["impl", "size"], "failed") == []


def _claim_frame(rows):
    base = {
        "spp_impl": "floor_ceil",
        "head": "spp",
        "input_shape": "none",
        "input_policy": "fixed",
        "outcome": "ok",
    }
    return pd.DataFrame([{**base, **r} for r in rows])


# Hand-computed: with no failure in n trials the exact 95% upper bound is 1 - 0.025 ** (1 / n),
# below 10% from n = 36 on (n = 35: 0.10003). Two failures in two: lower bound sqrt(0.025) = 0.158.
@pytest.mark.parametrize(
    ("rows", "verdict", "evidence"),
    [
        ([{}] * 36, REFUTED, "floor_ceil 0/36 [0.00, 0.10]"),
        ([{}] * 35, UNKNOWN, "needed for an upper bound under 10%: floor_ceil 1"),
        ([{}] * 2, UNKNOWN, "floor_ceil 34"),
        (
            [{}] * 3 + [{"spp_impl": "keras_adaptive", "outcome": "shape_error"}] * 2,
            f"{SOME} (keras_adaptive)",
            "floor_ceil 0/3 [0.00, 0.71]; keras_adaptive 2/2 [0.16, 1.00]; more failure-free trials needed for "
            "an upper bound under 10%: floor_ceil 33",
        ),
        (
            [{}] * 36 + [{"head": "flatten", "outcome": "shape_error"}] * 2,
            f"{SOME} (flatten)",
            "flatten 2/2",
        ),
        ([{"outcome": "shape_error"}] * 3, SUPPORTED, "floor_ceil 3/3 [0.29, 1.00]"),
        (
            [{"outcome": "data_error"}] * 4,
            NOT_TESTED,
            "no trial met the condition: needs it",
        ),  # never reached the model
        ([{"input_shape": "auto"}] * 4, NOT_TESTED, "no trial met the condition"),
        # 1 failure in 1 trial: exact interval [0.025, 1], an anecdote, not a failing implementation
        ([{}] * 3 + [{"spp_impl": "keras_adaptive", "outcome": "shape_error"}], UNKNOWN, "keras_adaptive 1/1 [0.03"),
    ],
)
def test_failure_claim_verdicts(rows, verdict, evidence):
    frame = _claim_frame(rows)
    got = judge_failure(frame, frame["input_shape"] == "none", {"shape_error"}, "claim", "needs it")
    assert got.verdict == verdict
    assert evidence in got.evidence


def test_counts_needed_to_refute_match_the_exact_bound():
    assert [needed_to_refute(0, n) for n in (0, 3, 15, 35, 36)] == [36, 33, 21, 1, 0]
    k1 = needed_to_refute(1, 10)
    assert exact(1, 10 + k1)[1] < 0.10 <= exact(1, 10 + k1 - 1)[1]


def test_every_claim_has_a_verdict_even_on_one_trial():
    frame = _claim_frame(
        [
            {
                "levels": "1,2,4",
                "image_size": 64,
                "batch_size": 16,
                "channel_policy": "strict",
                "channel_order": "as_is",
                "value": 0.5,
            }
        ]
    )
    results = verdicts(frame)
    assert len(results) == 6 and all(v.verdict and v.evidence for v in results)
    assert {v.verdict for v in results} <= {UNKNOWN, NOT_TESTED}  # one trial settles nothing


def _channel_rows(strict_errors: int, strict_ok: int, lenient: int, lenient_shape: int = 0) -> pd.DataFrame:
    rows = [{"channel_policy": "strict", "outcome": "data_error"}] * strict_errors
    rows += [{"channel_policy": "strict"}] * strict_ok
    rows += [{"channel_policy": "pad_missing"}] * (lenient - lenient_shape)
    rows += [{"channel_policy": "pad_missing", "outcome": "shape_error"}] * lenient_shape
    return _claim_frame(rows)


@pytest.mark.parametrize(
    ("frame", "facts", "verdict", "evidence"),
    [
        # the wrong verdict: strict trials on data without inconsistent bands were "refuted"
        (_channel_rows(0, 5, 0), DataFacts(mixed_bands=False), NOT_TESTED, "3b needs images whose band count"),
        (_channel_rows(0, 5, 0), DataFacts(), NOT_TESTED, "the data held no such image"),  # unknown, 0 errors
        (
            _channel_rows(3, 0, 0),  # strict stopped them all; no lenient trial: the layer is not ruled out
            DataFacts(mixed_bands=True),
            "supported as data errors, not as SPP shape errors",
            "3/3 trials stop with data_error",
        ),
        (
            _channel_rows(3, 0, 36),
            DataFacts(mixed_bands=True),
            "supported as data errors; refuted as SPP shape errors",
            "0/36 shape errors [95% CI 0.00, 0.10]",
        ),
        (
            _channel_rows(3, 0, 5),
            DataFacts(mixed_bands=True),
            "supported as data errors, not as SPP shape errors",
            "31 more lenient trials",
        ),
    ],
)
def test_channel_count_claim_branches(frame, facts, verdict, evidence):
    got = _channels(frame, facts)
    assert got.verdict == verdict and evidence in got.evidence


def test_channel_order_is_not_refuted_by_models_that_learned_nothing():
    """Equal accuracies at chance (10 classes) say nothing about the channel order."""
    rows = [{"channel_order": "as_is", "value": v} for v in (0.10, 0.11, 0.10, 0.11)]
    rows += [{"channel_order": "normalize", "value": v} for v in (0.11, 0.10, 0.11, 0.10)]
    assert _channel_order(_claim_frame(rows), DataFacts()).verdict == REFUTED  # chance unknown: equivalent
    got = _channel_order(_claim_frame(rows), DataFacts(chance=0.1))
    assert got.verdict == UNKNOWN and "neither learned" in got.evidence


def test_shape_errors_from_sizes_do_not_count_against_the_bands():
    """Lenient trials with variable sizes fail for their layer, not for their bands."""
    frame = _channel_rows(3, 0, 36)
    sized = _claim_frame(
        [{"channel_policy": "pad_missing", "input_policy": "variable_padded", "outcome": "shape_error"}]
    )
    got = _channels(pd.concat([frame, sized], ignore_index=True), DataFacts(mixed_bands=True))
    assert (
        got.verdict == "supported as data errors; refuted as SPP shape errors" and "0/36 shape errors" in got.evidence
    )


def test_channel_order_claim_is_not_tested_without_bgr_images():
    rows = [{"channel_order": "as_is", "value": 0.5}] * 3 + [{"channel_order": "normalize", "value": 0.5}] * 3
    assert _channel_order(_claim_frame(rows), DataFacts(declared_bgr=False)).verdict == NOT_TESTED


def test_memory_claim_is_not_tested_without_an_out_of_memory_trial():
    rows = _mem_rows("fixed", "floor_ceil", "ok", 3)
    assert _memory(pd.DataFrame(rows), DataFacts()).verdict == NOT_TESTED


def test_data_facts_from_a_study_config(tmp_path):
    assert facts_of({"data": {"source": "synthetic"}}) == DataFacts(False, False, 0.25)
    corrupt = {"data": {"source": "digits", "corruption": {"grayscale": 0.1, "swapped_channels": 0.2}}}
    assert facts_of(corrupt) == DataFacts(True, True, 0.1)
    (tmp_path / "a").mkdir()
    folder = {"data": {"source": str(tmp_path), "bands": 3}}
    assert facts_of(folder, [1, 3]) == DataFacts(True, False)
    assert facts_of(folder, [3], classes=4).chance == 0.25
    assert facts_of(folder, [3]) == DataFacts(False, False)
    assert facts_of(folder) == DataFacts(None, False)  # a study from before data checks
    (tmp_path / "channel_order.json").write_text('{"a/x.png": "bgr"}')
    assert facts_of(folder, [3]).declared_bgr is True
    gone = {"data": {"source": str(tmp_path / "moved"), "bands": 3}}
    assert facts_of(gone, [3]) == DataFacts(False, None)


@pytest.mark.parametrize(
    ("as_is", "normalize", "verdict"),
    [
        # normalising clearly helps: the claim holds, as an accuracy loss
        ([0.30, 0.32, 0.31, 0.29], [0.60, 0.62, 0.61, 0.59], "supported as silent accuracy loss, not as failures"),
        # the same accuracy, tightly: the interval of the difference is inside +-0.05 -> refuted
        ([0.60, 0.61, 0.60, 0.61], [0.61, 0.60, 0.61, 0.60], REFUTED),
        # not significant but noisy: a large loss is still possible -> cannot conclude, not refuted
        ([0.30, 0.50, 0.20], [0.60, 0.25, 0.45], UNKNOWN),
    ],
)
def test_channel_order_verdict_needs_equivalence_to_refute(as_is, normalize, verdict):
    rows = [{"channel_order": "as_is", "value": v} for v in as_is]
    rows += [{"channel_order": "normalize", "value": v} for v in normalize]
    assert _channel_order(_claim_frame(rows), DataFacts()).verdict == verdict


def _mem_rows(policy, impl, outcome, n, batch=1024, size=32, head="spp"):
    row = {"input_policy": policy, "spp_impl": impl, "head": head, "outcome": outcome}
    return [{**row, "batch_size": batch, "image_size": size, "channel_policy": "pad_missing"}] * n


@pytest.mark.parametrize(
    ("rows", "verdict"),
    [
        # padded OOMs under one layer, fixed-size trials of other layers fit: not comparable -> unknown
        (
            _mem_rows("variable_padded", "floor_ceil", "oom_host", 3)
            + _mem_rows("fixed", "round_bins", "ok", 3, size=96)
            + _mem_rows("fixed", "floor_ceil", "ok", 3, size=96, head="flatten"),
            UNKNOWN,
        ),
        # the same load and policy: every layer runs out, Flatten too -> memory is the load's
        (
            _mem_rows("variable_padded", "floor_ceil", "oom_host", 3)
            + _mem_rows("variable_padded", "round_bins", "oom_host", 3)
            + _mem_rows("variable_padded", "crop_split", "oom_host", 2)
            + _mem_rows("variable_padded", "crop_split", "ok", 1),
            REFUTED,
        ),
        # one layer runs out where another, at the same load, never does -> that layer's problem
        (
            _mem_rows("fixed", "round_bins", "oom_host", 3) + _mem_rows("fixed", "floor_ceil", "ok", 3),
            f"{SOME} (round_bins)",
        ),
    ],
    ids=["other_policy_is_no_control", "every_layer", "one_layer"],
)
def test_memory_verdict_compares_layers_at_equal_load_and_policy(rows, verdict):
    frame = _claim_frame(rows)
    got = _memory(frame, DataFacts())
    assert got.verdict == verdict, got.evidence


def test_a_log_uniform_factor_is_binned_on_its_log_scale():
    """qcut on the raw values gave a learning-rate bin like (-0.0000999, 0.00056]: a negative edge,
    and three of four bins crammed into the top decade's neighbourhood."""
    import numpy as np
    import pandas as pd

    from spp_search.results.stats import levels_of

    values = pd.Series(10 ** np.linspace(-4, -1, 9))  # log10: -4, -3.625, ..., -1
    levels = levels_of(values, log=True)
    assert list(levels.cat.categories) == [
        "[0.0001, 0.000562)",
        "[0.000562, 0.00316)",
        "[0.00316, 0.0178)",
        "[0.0178, 0.1]",
    ]
    assert levels.value_counts(sort=False).tolist() == [2, 2, 2, 3]
    assert levels_of(values).cat.categories[0] == "[0.0001, 0.000562)"  # a 1000x span: log by itself
    linear = levels_of(pd.Series(np.arange(9.0)), log=False)
    assert list(linear.cat.categories) == ["[0, 2)", "[2, 4)", "[4, 6)", "[6, 8]"]
    assert levels_of(pd.Series([1, 2, 1, 2])).tolist() == ["1", "2", "1", "2"]  # few values: as they are
