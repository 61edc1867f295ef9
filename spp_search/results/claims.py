"""The blog post's claims (../shared/seed/), each judged against a study's trials.

A verdict is one of ``not tested``, ``supported``, ``refuted``, ``true only for some
implementations`` or ``cannot conclude``, with the numbers behind it. Each claim that says
"X makes SPP fail" is judged per implementation (the ``spp_impl`` and ``head`` factors), because
the post's claims are true of some SPP layers and false of others. Per implementation, with
``k`` of ``n`` trials under X ending in the claimed failure and the exact (Clopper-Pearson) 95%
interval of k/n:

* it *fails* when the interval's lower bound is at least ``THRESHOLD`` (10%);
* it is *safe* when the interval's upper bound is below ``THRESHOLD`` (0 failures in >= 36
  trials; 3 clean seeds are not enough to call a failure mode absent);
* otherwise it is *open*, and the verdict says how many more failure-free trials would make it
  safe.

Verdict: no trial under X -> not tested (naming what was missing); every implementation fails ->
supported; every one safe -> refuted; some fail -> true only for those (the others named as safe
or open); none fails and some are open -> cannot conclude, with the counts needed.

The channel-order claim is about accuracy, not failure: supported when normalising the order is
significantly better, refuted only when the 95% interval of the difference lies within
``EQUIVALENCE_MARGIN`` (an equivalence test: "not significant" alone settles nothing).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spp_search.data.loading import BUILT_IN
from spp_search.results.stats import diff_interval, exact, mean_interval, welch

THRESHOLD = 0.10  # a failure rate whose 95% upper bound is below this counts as "does not fail"
EQUIVALENCE_MARGIN = 0.05  # accuracy: a channel-order effect smaller than this counts as none
MAX_NEEDED = 10_000

SUPPORTED, REFUTED, SOME, UNKNOWN, NOT_TESTED = (
    "supported",
    "refuted",
    "true only for some implementations",
    "cannot conclude",
    "not tested",
)


@dataclass(frozen=True)
class Verdict:
    claim: str
    verdict: str
    evidence: str


@dataclass(frozen=True)
class DataFacts:
    """What a study's data held, which no trial row says: None when it is not known."""

    mixed_bands: bool | None = None  # images whose band count differs from the model's
    declared_bgr: bool | None = None  # images declared in BGR order
    chance: float | None = None  # accuracy of guessing: 1 / number of classes


def _impl(frame: pd.DataFrame) -> pd.Series:
    """The implementation a trial used: its SPP variant, or ``flatten`` for a Flatten head."""
    return frame["spp_impl"].where(frame["head"] == "spp", "flatten")


def needed_to_refute(k: int, n: int, threshold: float = THRESHOLD) -> int:
    """More failure-free trials after ``k`` failures in ``n`` until the 95% upper bound of the
    failure rate falls below ``threshold`` (``MAX_NEEDED`` if that takes more)."""
    low, high = 0, MAX_NEEDED
    if exact(k, n + high)[1] >= threshold:
        return MAX_NEEDED
    while low < high:  # the upper bound falls as clean trials are added: bisect
        mid = (low + high) // 2
        if exact(k, n + mid)[1] < threshold:
            high = mid
        else:
            low = mid + 1
    return low


def judge_failure(frame: pd.DataFrame, under: pd.Series, outcomes: set[str], claim: str, missing: str = "") -> Verdict:
    """Judge "trials under ``under`` end in ``outcomes``" per implementation (module doc).

    Only trials whose data loaded count (a ``data_error`` never reached the model). ``missing``
    says what a study needs for the condition to occur (the not-tested verdict's evidence).
    """
    under = under & (frame["outcome"] != "data_error")
    rows, failing, safe, open_ = [], [], [], []
    for impl, group in frame[under].groupby(_impl(frame[under])):
        k, n = int(group["outcome"].isin(outcomes).sum()), len(group)
        low, high = exact(k, n)
        rows.append(f"{impl} {k}/{n} [{low:.2f}, {high:.2f}]")
        if low >= THRESHOLD:
            failing.append(impl)
        elif high < THRESHOLD:
            safe.append(impl)
        else:
            open_.append(f"{impl} {needed_to_refute(k, n)}")
    if not rows:
        return Verdict(claim, NOT_TESTED, f"no trial met the condition{': ' + missing if missing else ''}")
    evidence = f"{'/'.join(sorted(outcomes))} rate under it, per implementation, 95% CI: " + "; ".join(rows)
    if open_:
        evidence += f"; more failure-free trials needed for an upper bound under {THRESHOLD:.0%}: " + ", ".join(open_)
    if failing and not safe and not open_:
        verdict = SUPPORTED
    elif failing:
        verdict = f"{SOME} ({', '.join(failing)})"
    elif safe and not open_:
        verdict = REFUTED
    else:
        verdict = UNKNOWN
    return Verdict(claim, verdict, evidence)


def _undefined_shape(frame: pd.DataFrame, facts: DataFacts) -> Verdict:
    under = (frame["input_shape"] == "none") | (frame["input_policy"] != "fixed")
    return judge_failure(
        frame,
        under,
        {"shape_error"},
        "1. An SPP layer needs an explicit input shape; (None, None, C) gives shape errors.",
        "1 needs trials with input_shape none or a variable-size input_policy",
    )


def _variable_sizes(frame: pd.DataFrame, facts: DataFacts) -> Verdict:
    return judge_failure(
        frame,
        frame["input_policy"] != "fixed",
        {"shape_error"},
        "3a. Images of inconsistent sizes cause shape mismatches; resize to one size.",
        "3a needs trials with an input_policy other than fixed",
    )


def _small_maps(frame: pd.DataFrame, facts: DataFacts) -> Verdict:
    smallest = frame["image_size"].astype(float) / 4 < frame["levels"].map(lambda v: max(_levels(v)))
    fixed = frame["input_policy"].isin(["fixed", "multi_size"])
    return judge_failure(
        frame,
        smallest & fixed & (frame["head"] == "spp"),
        {"diverged_nan", "shape_error"},
        "1b. SPP binning breaks when the feature map is smaller than a pyramid level.",
        "1b needs feature maps smaller than a pyramid level (image_size / 4 < the largest level, "
        "e.g. 16 px images with level 8)",
    )


def _memory(frame: pd.DataFrame, facts: DataFacts) -> Verdict:
    """OOM as a problem of one SPP layer, or of batch x image size whatever the layer.

    Implementations are compared at equal load within one input policy: ``variable_padded``
    batches grow to their largest image, so its nominal ``image_size`` understates the load and
    its OOMs say nothing about a fixed-size trial of the same nominal size. Several layers (the
    Flatten head counts) running out at the same load refute "the layer's memory problem".
    """
    claim = "2. Custom SPP layers fail at scale through memory problems of the layer."
    is_oom = frame["outcome"].isin(["oom_host", "oom_gpu"])
    if not is_oom.any():
        return Verdict(
            claim,
            NOT_TESTED,
            f"no out-of-memory trial among {len(frame)}: 2 needs loads past the memory budget "
            "(e.g. batch 1024 of large images under host_memory_budget)",
        )
    load = frame["batch_size"].astype(float) * frame["image_size"].astype(float) ** 2
    per_impl: dict[str, list[int]] = {}
    parts = []
    for policy, group in frame.groupby("input_policy"):
        oom = is_oom[group.index]
        if not oom.any():
            parts.append(f"{policy}: no OOM (batch x pixels up to {load[group.index].max():.3g})")
            continue
        threshold = load[group.index][oom].min()
        heavy = group[(load[group.index] >= threshold) & (group["outcome"] != "data_error")]
        counts = {i: (int(is_oom[g.index].sum()), len(g)) for i, g in heavy.groupby(_impl(heavy))}
        for impl, (k, n) in counts.items():
            per_impl.setdefault(impl, [0, 0])
            per_impl[impl][0] += k
            per_impl[impl][1] += n
        rates = ", ".join(f"{i} {k}/{n}" for i, (k, n) in counts.items())
        parts.append(f"{policy}: OOM rate at batch x pixels >= {threshold:.3g}: {rates}")
    failing = [i for i, (k, _) in per_impl.items() if k > 0]
    safe = [i for i, (k, n) in per_impl.items() if k == 0 and n >= 3]
    if len(failing) >= 2:
        verdict = REFUTED
    elif failing and safe:
        verdict = f"{SOME} ({', '.join(failing)})"
    else:
        verdict = UNKNOWN
    return Verdict(claim, verdict, "; ".join(parts))


def _channels(frame: pd.DataFrame, facts: DataFacts) -> Verdict:
    """3b happens in the data: a strict policy stops such images as ``data_error`` before any
    layer sees them, the lenient ones make every image the model's band count. A study whose data
    held no such image has not tested the claim, whatever its trials' outcomes."""
    claim = "3b. Inconsistent channel counts (missing bands) cause shape mismatches in the SPP layer."
    missing = (
        "3b needs images whose band count differs from the model's (e.g. corruption.missing_bands > 0, "
        "or a folder mixing grayscale and RGB files)"
    )
    strict = frame["channel_policy"] == "strict"
    k, n = int((frame[strict]["outcome"] == "data_error").sum()), int(strict.sum())
    lenient = frame[frame["channel_policy"].isin(["pad_missing", "drop_extra"]) & _sizes_safe(frame)]
    shape = int((lenient["outcome"] == "shape_error").sum())
    if facts.mixed_bands is False or (facts.mixed_bands is None and k == 0):
        return Verdict(claim, NOT_TESTED, f"the data held no such image: {missing}")
    if n == 0 and lenient.empty:
        return Verdict(claim, NOT_TESTED, "no trial used channel_policy strict, pad_missing or drop_extra")
    low, high = exact(shape, len(lenient))
    evidence = (
        f"strict policy: {k}/{n} trials stop with data_error before training (the data, not the layer); "
        f"pad_missing/drop_extra at one fixed size with maps no smaller than a level (where only bands could "
        f"cause one): {shape}/{len(lenient)} shape errors [95% CI {low:.2f}, {high:.2f}]"
    )
    if k == 0:
        return Verdict(claim, UNKNOWN, evidence)
    if high < THRESHOLD:
        return Verdict(claim, "supported as data errors; refuted as SPP shape errors", evidence)
    more = needed_to_refute(shape, len(lenient))
    evidence += f"; {more} more lenient trials without shape errors would rule the layer out"
    return Verdict(claim, "supported as data errors, not as SPP shape errors", evidence)


def _sizes_safe(frame: pd.DataFrame) -> pd.Series:
    """Trials where no shape error can come from image sizes: one fixed size, and a feature map
    (a quarter of it) no smaller than the largest level. A shape error there comes from the bands."""
    largest = frame["levels"].map(lambda v: max(_levels(v))) if "levels" in frame else 1
    size = frame["image_size"].astype(float) if "image_size" in frame else 64.0
    return (frame["input_policy"] == "fixed") & (size / 4 >= largest)


def _channel_order(frame: pd.DataFrame, facts: DataFacts) -> Verdict:
    claim = "3c. Inconsistent channel order (RGB vs BGR) breaks training."
    if facts.declared_bgr is False:
        return Verdict(
            claim,
            NOT_TESTED,
            "no image was declared BGR: 3c needs some (corruption.swapped_channels > 0, or a folder's "
            "channel_order.json)",
        )
    ok = frame[frame["outcome"] == "ok"]
    as_is = ok[ok["channel_order"] == "as_is"]["value"].tolist()
    norm = ok[ok["channel_order"] == "normalize"]["value"].tolist()
    if len(as_is) < 2 or len(norm) < 2:
        return Verdict(claim, UNKNOWN, f"too few successful trials ({len(as_is)} as_is, {len(norm)} normalize)")
    a, b = mean_interval(as_is), mean_interval(norm)
    p = welch(as_is, norm)
    d = diff_interval(norm, as_is)
    evidence = (
        f"val accuracy as_is {a[0]:.3f} [{a[1]:.3f}, {a[2]:.3f}] (n={len(as_is)}) vs normalize "
        f"{b[0]:.3f} [{b[1]:.3f}, {b[2]:.3f}] (n={len(norm)}); normalize - as_is {d[0]:+.3f} "
        f"[{d[1]:+.3f}, {d[2]:+.3f}], Welch p={p:.3g}; no failure outcome"
    )
    if p < 0.05 and b[0] > a[0]:
        return Verdict(claim, "supported as silent accuracy loss, not as failures", evidence)
    if facts.chance is not None and max(a[2], b[2]) < facts.chance + EQUIVALENCE_MARGIN:
        # two models that learned nothing are "equivalent" whatever the channel order does
        return Verdict(
            claim,
            UNKNOWN,
            evidence + f"; neither learned: accuracy within {EQUIVALENCE_MARGIN} of chance ({facts.chance:.3f})",
        )
    # refuted only when the interval rules out a loss larger than the margin (equivalence),
    # not merely because the difference is not significant
    if d[1] == d[1] and -EQUIVALENCE_MARGIN < d[1] and d[2] < EQUIVALENCE_MARGIN:
        return Verdict(claim, REFUTED, evidence + f"; within +-{EQUIVALENCE_MARGIN} accuracy")
    return Verdict(claim, UNKNOWN, evidence + f"; the interval allows a loss over {EQUIVALENCE_MARGIN}")


def _levels(value) -> tuple[int, ...]:
    return tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else str(value).split(",")))


CLAIMS: list[Callable[[pd.DataFrame, DataFacts], Verdict]] = [
    _undefined_shape,
    _small_maps,
    _memory,
    _variable_sizes,
    _channels,
    _channel_order,
]


def verdicts(frame: pd.DataFrame, facts: DataFacts | None = None) -> list[Verdict]:
    """Every claim's verdict on ``frame`` (one row per finished trial, every factor a column)."""
    return [claim(frame, facts or DataFacts()) for claim in CLAIMS]


BAND_KINDS = ("missing_bands", "extra_bands", "grayscale", "sixteen_bit")


def facts_of(config: dict, data_bands: list[int] | None = None, classes: int | None = None) -> DataFacts:
    """What a study's data held, from its stored config (corruption rates, source) and, for a
    folder, the band counts and classes its data check found (``data_bands``, ``classes``) and
    its ``channel_order.json``."""
    data = config.get("data") or {}
    corruption = data.get("corruption") or {}
    mixed = any(float(corruption.get(k) or 0) > 0 for k in BAND_KINDS)
    bgr = float(corruption.get("swapped_channels") or 0) > 0
    source = data.get("source", "synthetic")
    if source in BUILT_IN:
        classes = (data.get(source) or {}).get("num_classes", 4 if source == "synthetic" else 10)
        return DataFacts(mixed, bgr, 1 / int(classes))
    bands = int(data.get("bands", 3))
    folder_mixed = None if data_bands is None else any(int(b) != bands for b in data_bands)
    sidecar = Path(source) / "channel_order.json"
    declared = None
    if sidecar.is_file():
        declared = "bgr" in json.loads(sidecar.read_text()).values()
    elif Path(source).is_dir():
        declared = False
    return DataFacts(mixed or folder_mixed, bgr or declared, 1 / classes if classes else None)
