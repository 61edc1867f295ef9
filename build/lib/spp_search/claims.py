"""The blog post's claims (../shared/seed/), each judged against a study's trials.

A verdict is one of ``supported``, ``refuted``, ``true only for some implementations`` or
``cannot conclude``, with the numbers behind it. Each claim that says "X makes SPP fail" is
judged per implementation (the ``spp_impl`` and ``head`` factors), because the post's claims are
true of some SPP layers and false of others:

* a group *fails* when at least half of its n >= 2 trials under X end in the claimed failure
  (one trial is an anecdote);
* a group is *safe* when none of its n >= 3 trials under X does;
* all groups with data fail -> supported; no trial fails and one group is safe -> refuted; some fail and
  some are safe -> true only for the failing ones; otherwise -> cannot conclude.

The channel-order claim is about accuracy, not failure: supported when normalising the order is
significantly better, refuted only when the 95% interval of the difference lies within
``EQUIVALENCE_MARGIN`` (an equivalence test: "not significant" alone settles nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from spp_search.stats import diff_interval, mean_interval, welch, wilson

EQUIVALENCE_MARGIN = 0.05  # accuracy: a channel-order effect smaller than this counts as none

SUPPORTED, REFUTED, SOME, UNKNOWN = (
    "supported",
    "refuted",
    "true only for some implementations",
    "cannot conclude",
)


@dataclass(frozen=True)
class Verdict:
    claim: str
    verdict: str
    evidence: str


def _impl(frame: pd.DataFrame) -> pd.Series:
    """The implementation a trial used: its SPP variant, or ``flatten`` for a Flatten head."""
    return frame["spp_impl"].where(frame["head"] == "spp", "flatten")


def judge_failure(frame: pd.DataFrame, under: pd.Series, outcomes: set[str], claim: str) -> Verdict:
    """Judge "trials under ``under`` end in ``outcomes``" per implementation.

    Only trials whose data loaded count (a ``data_error`` never reached the model).
    """
    under = under & (frame["outcome"] != "data_error")
    rows, failing, safe, any_failure = [], [], [], False
    for impl, group in frame[under].groupby(_impl(frame[under])):
        k, n = int(group["outcome"].isin(outcomes).sum()), len(group)
        low, high = wilson(k, n)
        rows.append(f"{impl} {k}/{n} [{low:.2f}, {high:.2f}]")
        any_failure = any_failure or k > 0
        if n >= 2 and k / n >= 0.5:
            failing.append(impl)
        elif n >= 3 and k == 0:
            safe.append(impl)
    if not rows:
        return Verdict(claim, UNKNOWN, "no trials under this condition")
    evidence = f"{'/'.join(sorted(outcomes))} rate under it, per implementation: " + "; ".join(rows)
    if failing and len(failing) == len(rows):
        verdict = SUPPORTED
    elif failing and safe:
        verdict = f"{SOME} ({', '.join(failing)})"
    elif safe and not any_failure:
        verdict = REFUTED
    else:
        verdict = UNKNOWN
    return Verdict(claim, verdict, evidence)


def _undefined_shape(frame: pd.DataFrame) -> Verdict:
    under = (frame["input_shape"] == "none") | (frame["input_policy"] != "fixed")
    return judge_failure(
        frame,
        under,
        {"shape_error"},
        "1. An SPP layer needs an explicit input shape; (None, None, C) gives shape errors.",
    )


def _variable_sizes(frame: pd.DataFrame) -> Verdict:
    return judge_failure(
        frame,
        frame["input_policy"] != "fixed",
        {"shape_error"},
        "3a. Images of inconsistent sizes cause shape mismatches; resize to one size.",
    )


def _small_maps(frame: pd.DataFrame) -> Verdict:
    smallest = frame["image_size"].astype(float) / 4 < frame["levels"].map(lambda v: max(_levels(v)))
    fixed = frame["input_policy"].isin(["fixed", "multi_size"])
    return judge_failure(
        frame,
        smallest & fixed & (frame["head"] == "spp"),
        {"diverged_nan", "shape_error"},
        "1b. SPP binning breaks when the feature map is smaller than a pyramid level.",
    )


def _memory(frame: pd.DataFrame) -> Verdict:
    """OOM as a problem of one SPP layer, or of batch x image size whatever the layer.

    Implementations are compared at equal load within one input policy: ``variable_padded``
    batches grow to their largest image, so its nominal ``image_size`` understates the load and
    its OOMs say nothing about a fixed-size trial of the same nominal size. Several layers (the
    Flatten head counts) running out at the same load refute "the layer's memory problem".
    """
    claim = "2. Custom SPP layers fail at scale through memory problems of the layer."
    is_oom = frame["outcome"].isin(["oom_host", "oom_gpu"])
    if not is_oom.any():
        return Verdict(claim, UNKNOWN, f"no out-of-memory trial among {len(frame)}")
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


def _channels(frame: pd.DataFrame) -> Verdict:
    claim = "3b. Inconsistent channel counts (missing bands) cause shape mismatches in the SPP layer."
    strict = frame["channel_policy"] == "strict"
    k, n = int((frame[strict]["outcome"] == "data_error").sum()), int(strict.sum())
    lenient = frame[~strict & (frame["channel_policy"] == "pad_missing")]
    shape = int((lenient["outcome"] == "shape_error").sum())
    if n == 0:
        return Verdict(claim, UNKNOWN, "no trial used channel_policy strict")
    if k == 0:
        return Verdict(claim, REFUTED if n >= 3 else UNKNOWN, f"strict policy: 0/{n} data errors")
    evidence = (
        f"strict policy: {k}/{n} trials stop with data_error before training (the data, not the "
        f"layer); pad_missing: {shape}/{len(lenient)} shape errors"
    )
    return Verdict(claim, "supported as data errors, not as SPP shape errors", evidence)


def _channel_order(frame: pd.DataFrame) -> Verdict:
    claim = "3c. Inconsistent channel order (RGB vs BGR) breaks training."
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
    # refuted only when the interval rules out a loss larger than the margin (equivalence),
    # not merely because the difference is not significant
    if d[1] == d[1] and -EQUIVALENCE_MARGIN < d[1] and d[2] < EQUIVALENCE_MARGIN:
        return Verdict(claim, REFUTED, evidence + f"; within +-{EQUIVALENCE_MARGIN} accuracy")
    return Verdict(claim, UNKNOWN, evidence + f"; the interval allows a loss over {EQUIVALENCE_MARGIN}")


def _levels(value) -> tuple[int, ...]:
    return tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else str(value).split(",")))


CLAIMS: list[Callable[[pd.DataFrame], Verdict]] = [
    _undefined_shape,
    _small_maps,
    _memory,
    _variable_sizes,
    _channels,
    _channel_order,
]


def verdicts(frame: pd.DataFrame) -> list[Verdict]:
    """Every claim's verdict on ``frame`` (one row per finished trial, every factor a column)."""
    return [claim(frame) for claim in CLAIMS]
