"""The statistics behind the report: intervals, failure rules, interactions, mean comparisons.

Pure functions over plain lists and pandas frames, tested against hand-computed cases. SciPy and
statsmodels are imported inside the functions that use them, so that the read-only commands
start in under a second.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

MIN_SUPPORT = 3


def wilson(successes: int, trials: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when there are no trials."""
    if trials == 0:
        return 0.0, 1.0
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, trials, alpha=alpha, method="wilson")
    return float(low), float(high)


def not_above_chance(accuracy: float, images: int, chance: float) -> tuple[float, float] | None:
    """The 95% Wilson interval of ``accuracy`` on ``images`` validation images when it reaches
    ``chance`` (the largest class's share: what always predicting it scores), else None."""
    low, high = wilson(round(accuracy * images), images)
    return (low, high) if low <= chance else None


def exact(successes: int, trials: int, alpha: float = 0.05) -> tuple[float, float]:
    """Clopper-Pearson (exact binomial) interval; (0, 1) when there are no trials.

    For verdicts on small counts: it never claims more than the binomial allows (1 failure in 1
    trial gives [0.025, 1], where Wilson's approximation gives [0.21, 1]).
    """
    if trials == 0:
        return 0.0, 1.0
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, trials, alpha=alpha, method="beta")
    return float(0.0 if successes == 0 else low), float(1.0 if successes == trials else high)


def mean_interval(values: list[float], alpha: float = 0.05) -> tuple[float, float, float]:
    """Mean and Student-t interval; the interval is (nan, nan) with fewer than two values."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    if len(x) < 2:
        return float(x.mean()), math.nan, math.nan
    from scipy import stats as sps

    half = sps.t.ppf(1 - alpha / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def welch(a: list[float], b: list[float]) -> float:
    """Two-sided Welch t-test p-value that means of ``a`` and ``b`` differ (nan if too few)."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    from scipy import stats as sps

    return float(sps.ttest_ind(a, b, equal_var=False).pvalue)


def levels_of(column: pd.Series, log: bool | None = None) -> pd.Series:
    """A factor's values as levels to group by: numbers with many values are cut into quartile
    bins on their own scale (``log``: a log-uniform factor such as the learning rate; None: log
    when every value is positive and they span 100x or more), labelled ``[low, high)`` with the
    observed extremes as outer edges (never a negative learning rate). Ordered, low to high."""
    if column.dtype.kind not in "if" or column.nunique() <= 6:
        return column.astype(str)
    values = column.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if log is None:
        log = bool(len(finite)) and finite.min() > 0 and finite.max() / finite.min() >= 100
    scale = np.log if log and finite.min() > 0 else (lambda v: v)
    edges = np.unique(np.quantile(scale(finite), [0, 0.25, 0.5, 0.75, 1.0]))
    edges = np.exp(edges) if scale is np.log else edges
    edges[0], edges[-1] = finite.min(), finite.max()  # exact extremes (no round-off past them)
    labels = [
        f"[{lo:.3g}, {hi:.3g}{']' if i == len(edges) - 2 else ')'}"
        for i, (lo, hi) in enumerate(itertools.pairwise(edges))
    ]
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(labels) - 1)
    cut = pd.Categorical.from_codes(np.where(np.isfinite(values), index, -1), categories=labels, ordered=True)
    return pd.Series(cut, index=column.index, name=column.name)


def diff_interval(a: list[float], b: list[float], alpha: float = 0.05) -> tuple[float, float, float]:
    """mean(a) - mean(b) with a Welch (unequal variances) t interval; nan bounds if too few."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    diff = float(x.mean() - y.mean()) if len(x) and len(y) else math.nan
    if len(x) < 2 or len(y) < 2:
        return diff, math.nan, math.nan
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    if vx + vy == 0:
        return diff, diff, diff
    dof = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    from scipy import stats as sps

    half = sps.t.ppf(1 - alpha / 2, dof) * math.sqrt(vx + vy)
    return diff, diff - half, diff + half


@dataclass(frozen=True)
class Rule:
    """A conjunction of conditions and how often it leads to ``outcome``."""

    conditions: tuple[str, ...]
    outcome: str
    hits: int
    support: int

    @property
    def rate(self) -> float:
        return self.hits / self.support

    def text(self) -> str:
        return f"{' and '.join(self.conditions)} -> {self.outcome} in {self.hits}/{self.support} trials"


def conditions(frame: pd.DataFrame, factors: list[str]) -> dict[str, pd.Series]:
    """Boolean masks worth testing: ``factor = level`` for categoricals, quartile cuts for numbers."""
    masks: dict[str, pd.Series] = {}
    for factor in factors:
        column = frame[factor]
        if pd.api.types.is_numeric_dtype(column) and column.nunique() > 4:
            for q in sorted(set(column.quantile([0.25, 0.5, 0.75]).round(6))):
                masks[f"{factor} <= {q:.3g}"] = column <= q
                masks[f"{factor} > {q:.3g}"] = column > q
        else:
            for level in column.dropna().unique():
                masks[f"{factor} = {level}"] = column == level
    return masks


def failure_rules(
    frame: pd.DataFrame,
    factors: list[str],
    outcome_col: str = "outcome",
    *,
    max_terms: int = 2,
    min_support: int = MIN_SUPPORT,
    min_rate: float = 0.8,
    top: int = 10,
) -> list[Rule]:
    """Readable rules ``A and B -> outcome in k/n`` for the failure outcomes.

    Candidates are conjunctions of up to ``max_terms`` conditions on distinct factors with support
    >= ``min_support`` and rate >= ``min_rate``. Per outcome they are taken greedily, best rate
    then support then fewest terms first, and a candidate is kept only if it explains failed trials
    that the rules kept before it do not (a set cover): no rule restates another's trials.
    """
    masks = conditions(frame, factors)
    found: list[Rule] = []
    for outcome in [o for o in frame[outcome_col].unique() if o not in ("ok", "pruned")]:
        hit = (frame[outcome_col] == outcome).to_numpy()
        candidates = []
        for size in range(1, max_terms + 1):
            for combo in itertools.combinations(masks, size):
                if len({c.split(" ")[0] for c in combo}) < size:
                    continue  # two conditions on one factor
                mask = np.logical_and.reduce([masks[c].to_numpy() for c in combo])
                support, hits = int(mask.sum()), int((mask & hit).sum())
                if support >= min_support and hits / support >= min_rate:
                    candidates.append((Rule(combo, outcome, hits, support), mask & hit))
        covered = np.zeros(len(frame), dtype=bool)
        for rule, rule_hits in sorted(candidates, key=lambda c: (-c[0].rate, -c[0].support, len(c[0].conditions))):
            if (rule_hits & ~covered).any():
                found.append(rule)
                covered |= rule_hits
    return sorted(found, key=lambda r: (-r.rate, -r.support, len(r.conditions)))[:top]


def interactions(frame: pd.DataFrame, factors: list[str], target: str, top: int = 5) -> list[tuple]:
    """Strongest two-factor interactions on a 0/1 ``target`` (e.g. failed).

    Strength = the share of the target's variance the pair's cell means explain beyond the two
    main effects (a two-way ANOVA's interaction sum of squares over the total), cells with fewer
    than two trials left out. Numeric factors are cut at their median.
    """
    data = frame.copy()
    for f in factors:
        if pd.api.types.is_numeric_dtype(data[f]) and data[f].nunique() > 4:
            data[f] = np.where(data[f] <= data[f].median(), "low", "high")
    total = float(((data[target] - data[target].mean()) ** 2).sum())
    if total == 0:
        return []
    out = []
    for a, b in itertools.combinations(factors, 2):
        grand = data[target].mean()
        main_a = data.groupby(a)[target].transform("mean")
        main_b = data.groupby(b)[target].transform("mean")
        cell = data.groupby([a, b])[target].transform("mean")
        count = data.groupby([a, b])[target].transform("size")
        residual = (cell - main_a - main_b + grand)[count >= 2]
        out.append((a, b, float((residual**2).sum() / total)))
    return sorted(out, key=lambda r: -r[2])[:top]
