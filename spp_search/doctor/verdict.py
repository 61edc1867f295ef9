"""From arms to a verdict: how each arm fared over its seeds, and which culprit that names.

An arm *fails* a seed when the trial did not end ``ok``, or ended ``ok`` with a validation
accuracy whose exact (Clopper-Pearson) 95% interval includes chance (``at_chance``). The user's
own setup is the ``baseline`` arm. A culprit is named when the baseline fails and its arm trains:
every seed of the arm ``ok`` and above chance; the confidence is Fisher's exact test of the
baseline's failures against the arm's (one-sided): ``high`` at p <= 0.05 (3 of 3 seeds against 0
of 3), ``medium`` at p <= 0.25, else ``low``. When no arm trains on every seed
but some end ``ok`` on every seed (the baseline's failure gone, the model slow to leave chance in
the epochs given), the one with the best accuracy names the culprit at ``medium`` confidence. A
healthy model (the baseline trains on every seed) is ``none``; no arm that trains is ``unknown``,
with what was tried.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scipy.stats import fisher_exact

from spp_search.results.stats import exact, mean_interval


@dataclass
class Seed:
    """One trial of an arm."""

    outcome: str
    value: float | None = None
    error: str = ""
    failed_step: int | None = None
    loss: float | None = None  # the failing step's loss (a divergence's)


@dataclass
class Arm:
    """One arm: a name, its one change, its seeds."""

    name: str
    overrides: dict
    culprit: str | None = None  # the culprit it tests (None for the baseline)
    seeds: list[Seed] = field(default_factory=list)

    def failures(self, chance: float, n_val: int) -> int:
        return sum(not trains(s, chance, n_val) for s in self.seeds)

    def trains(self, chance: float, n_val: int) -> bool:
        return bool(self.seeds) and self.failures(chance, n_val) == 0

    def accuracy(self) -> tuple[float, float, float] | None:
        values = [s.value for s in self.seeds if s.value is not None]
        return mean_interval(values) if values else None

    def summary(self, chance: float, n_val: int) -> dict:
        counts: dict[str, int] = {}
        for s in self.seeds:
            key = s.outcome if s.outcome != "ok" or trains(s, chance, n_val) else "at_chance"
            counts[key] = counts.get(key, 0) + 1
        k, n = self.failures(chance, n_val), len(self.seeds)
        low, high = exact(k, n) if n else (0.0, 1.0)
        acc = self.accuracy()
        return {
            "arm": self.name,
            "change": self.overrides,
            "culprit": self.culprit,
            "seeds": n,
            "outcomes": counts,
            "failures": k,
            "failure_rate_95ci": [round(low, 3), round(high, 3)],
            "val_accuracy": None if acc is None else [round(v, 4) for v in acc],
        }


def at_chance(value: float | None, chance: float, n_val: int) -> bool:
    """The accuracy's exact 95% interval (over ``n_val`` validation images) includes chance."""
    if value is None or n_val <= 0:
        return True
    low, _ = exact(round(value * n_val), n_val)
    return low <= chance


def trains(seed: Seed, chance: float, n_val: int) -> bool:
    return seed.outcome == "ok" and not at_chance(seed.value, chance, n_val)


def symptom(baseline: Arm, chance: float, n_val: int) -> str:
    """The baseline's symptom: its commonest failure (an outcome, or ``at_chance``), else ``ok``."""
    kinds = [
        s.outcome if s.outcome != "ok" else ("ok" if trains(s, chance, n_val) else "at_chance") for s in baseline.seeds
    ]
    failing = [k for k in kinds if k != "ok"]
    if not failing or len(failing) * 2 < len(kinds):
        return "ok"
    return max(sorted(set(failing)), key=failing.count)


def confidence(baseline: Arm, arm: Arm, chance: float, n_val: int) -> tuple[str, float]:
    """(high | medium | low, p) of "the arm fails less than the baseline" (Fisher, one-sided)."""
    b, a = baseline.failures(chance, n_val), arm.failures(chance, n_val)
    table = [[b, len(baseline.seeds) - b], [a, len(arm.seeds) - a]]
    p = float(fisher_exact(table, alternative="greater").pvalue)
    return ("high" if p <= 0.05 + 1e-9 else "medium" if p <= 0.25 + 1e-9 else "low"), p


def improves(baseline: Arm, arm: Arm) -> bool:
    """The arm's accuracy is above the baseline's, their 95% intervals apart (an accuracy culprit
    when neither fails: channel order)."""
    a, b = arm.accuracy(), baseline.accuracy()
    return a is not None and b is not None and a[1] > b[2]


def decide(baseline: Arm, arms: list[Arm], chance: float, n_val: int) -> dict:
    """The culprit (or ``none`` / ``unknown``), the arm that showed it, the confidence."""
    sick = symptom(baseline, chance, n_val)
    for arm in arms:
        if not arm.trains(chance, n_val):
            continue
        if sick != "ok":
            level, p = confidence(baseline, arm, chance, n_val)
            return {"culprit": arm.culprit, "arm": arm.name, "confidence": level, "p_value": round(p, 4)}
        if improves(baseline, arm):
            return {"culprit": arm.culprit, "arm": arm.name, "confidence": "medium", "p_value": None}
    if sick == "ok":
        return {"culprit": "none", "arm": "baseline", "confidence": _healthy(baseline), "p_value": None}
    clean = [a for a in arms if a.seeds and all(s.outcome == "ok" for s in a.seeds)]
    if sick != "at_chance" and clean:  # the failure is gone, the model learns slowly: the best of them
        best = max(clean, key=lambda a: (a.accuracy() or (0.0,))[0])
        return {"culprit": best.culprit, "arm": best.name, "confidence": "medium", "p_value": None, "slow": True}
    return {"culprit": "unknown", "arm": None, "confidence": "low", "p_value": None}


def _healthy(baseline: Arm) -> str:
    return "high" if len(baseline.seeds) >= 3 else "medium"
