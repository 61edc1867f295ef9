"""Ablation arms in the report: each arm's outcomes and error, and the SPP paper's comparison.

The paper (He et al., TPAMI 2015, ZF-5 on ImageNet) orders top-1 error no SPP > single-size SPP
> multi-size SPP. ``paper_numbers`` tests that ordering on an ablation's arms of those names
with t intervals, and says how many seeds a 1-point difference would need.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from spp_search.results.markdown import md_table
from spp_search.results.stats import diff_interval, mean_interval

PAPER_ARMS = {"no_spp": 35.99, "spp_single_size": 34.98, "spp_multi_size": 34.60}
EXTRA_ARMS = {"global_pool": "not in the paper (levels [1])"}


def arm_table(frame: pd.DataFrame) -> str:
    """Per ablation arm: runs, outcomes, mean validation error of its successful runs with a 95% t CI."""
    rows = []
    for arm, group in frame.groupby("arm", sort=False):
        errors = (1 - group[group["outcome"] == "ok"]["value"]).tolist()
        mean, low, high = mean_interval(errors)
        outcomes = ", ".join(f"{k} {v}" for k, v in group["outcome"].value_counts().items())
        rows.append([arm, len(group), outcomes, f"{mean:.4f} [{low:.4f}, {high:.4f}]" if errors else "-"])
    return md_table(["arm", "runs", "outcomes", "val error (ok runs), mean [95% CI]"], rows)


def seeds_needed(a: list[float], b: list[float], difference: float = 0.01, power: float = 0.8) -> int | None:
    """Seeds per arm a two-sided Welch/t test at 5% needs to detect ``difference`` (a 1-point
    error difference) with ``power``, at the arms' pooled standard deviation (None if unknown)."""
    from statsmodels.stats.power import TTestIndPower

    sd = float(np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)) if min(len(a), len(b)) >= 2 else math.nan
    if not math.isfinite(sd):
        return None
    if sd == 0:
        return 2
    n = TTestIndPower().solve_power(effect_size=difference / sd, alpha=0.05, power=power, alternative="two-sided")
    return int(math.ceil(n))


def paper_numbers(frame: pd.DataFrame) -> dict | None:
    """The paper comparison as numbers (top-1 error in percent): per arm the seeds and mean with
    a 95% t interval beside the paper's ZF-5 figure; per pair the difference, its interval and
    the seeds per arm a 1-point difference needs. None with fewer than two ok runs in a paper arm."""
    arms = [a for a in (*PAPER_ARMS, *EXTRA_ARMS) if a in set(frame["arm"].dropna())]
    errors = {arm: (1 - frame[(frame["arm"] == arm) & (frame["outcome"] == "ok")]["value"]).tolist() for arm in arms}
    if any(len(errors.get(a, [])) < 2 for a in PAPER_ARMS):
        return None
    pct = lambda values: [round(100 * v, 2) + 0.0 for v in values]  # noqa: E731 (+ 0.0: no "-0.00")
    numbers: dict = {"arms": {}, "differences": []}
    for arm in arms:
        mean, low, high = mean_interval(errors[arm])
        numbers["arms"][arm] = {
            "seeds": len(errors[arm]),
            "error": pct([mean, low, high]),
            "paper": PAPER_ARMS.get(arm),
        }
    pairs = [("no_spp", "spp_single_size"), ("spp_single_size", "spp_multi_size")]
    pairs += [("global_pool", "spp_single_size")] if "global_pool" in errors else []
    for high, low in pairs:
        diff, lo, hi = diff_interval(errors[high], errors[low])
        paper = round(PAPER_ARMS[high] - PAPER_ARMS[low], 2) if high in PAPER_ARMS else None
        numbers["differences"].append(
            {
                "pair": [high, low],
                "points": pct([diff, lo, hi]),
                "paper": paper,
                "seeds_needed": seeds_needed(errors[high], errors[low]),
            }
        )
    means = {a: float(np.mean(errors[a])) for a in PAPER_ARMS}
    numbers["ordered"] = bool(means["no_spp"] > means["spp_single_size"] > means["spp_multi_size"])
    return numbers


def paper_comparison(frame: pd.DataFrame) -> list[str]:
    """The SPP paper's ordering (no SPP > single-size > multi-size top-1 error) tested on our arms,
    beside the paper's ZF-5 numbers; the extra ``global_pool`` arm is listed when present."""
    numbers = paper_numbers(frame)
    if numbers is None:
        counts = {a: int(((frame["arm"] == a) & (frame["outcome"] == "ok")).sum()) for a in PAPER_ARMS}
        return [
            "The paper comparison needs at least two successful runs per arm "
            f"({', '.join(f'{a}: {n}' for a, n in counts.items())})."
        ]
    rows = []
    for arm, row in numbers["arms"].items():
        mean, low, high = row["error"]
        paper = f"{row['paper']:.2f}" if row["paper"] is not None else EXTRA_ARMS[arm]
        rows.append([arm, row["seeds"], f"{mean:.2f} [{low:.2f}, {high:.2f}]", paper])
    lines = [
        "Top-1 error in percent, mean of the seeds with a 95% t interval; the paper's ZF-5 on ImageNet beside it.",
        "",
        md_table(["arm", "seeds", "our error, % [95% CI]", "paper ZF-5, %"], rows),
        "",
    ]
    for d in numbers["differences"]:
        (high, low), (diff, lo, hi) = d["pair"], d["points"]
        sure = "excludes 0" if lo > 0 or hi < 0 else "includes 0"
        paper = f"paper {d['paper']:+.2f} points" if d["paper"] is not None else "not in the paper"
        needed = d["seeds_needed"] if d["seeds_needed"] is not None else "an unknown number of"
        lines.append(
            f"- error({high}) - error({low}) = {diff:+.2f} points [95% CI {lo:+.2f}, {hi:+.2f}] ({sure}); "
            f"{paper}; resolving a 1-point difference (80% power) needs {needed} seeds per arm"
        )
    means = {a: numbers["arms"][a]["error"][0] for a in PAPER_ARMS}
    lines += [
        "",
        f"**Ordering {'reproduced' if numbers['ordered'] else 'not reproduced'}** on this data: "
        + " > ".join(f"{a} {means[a]:.2f}" for a in sorted(means, key=means.get, reverse=True))
        + " (error, %).",
    ]
    return lines
