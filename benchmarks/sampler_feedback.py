"""Does telling the sampler about failures stop it proposing them again?

Runs the same failure-prone study with spp-search's feedback (deterministic failures
infeasible, divergence pruned at its step) and with Optuna's stock behaviour (every failure a
plain FAIL, which TPE ignores), at the same budget, over several sampler seeds per arm (one run
is an anecdote: TPE's path depends on its seed). Counts, among the trials after the
20th, the failures, and those that repeat a failure already seen in their region: an earlier
trial failed with the same outcome and differs from it in at most r categorical parameters
(Hamming distance <= r, for r = 1, 2, 3).

    python -m benchmarks.sampler_feedback [--config experiments/failure_modes.yaml] [--trials 40] [--seeds 5]

Per arm: the mean failures after trial 20 with a 95% t interval, and the difference between
the arms with a 95% Welch interval (``summary`` in the JSON).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna
import yaml

from benchmarks.common import write
from spp_search.cli import main as cli

FAILED_OK = ("ok", "pruned")


def repeats_after(trials: list, start: int, radius: int) -> int:
    """Failures after trial ``start`` that repeat an earlier failure (same outcome) within
    ``radius`` differing categorical parameters: the same failure, in its region."""
    categorical = [
        k for k, d in trials[0].distributions.items() if isinstance(d, optuna.distributions.CategoricalDistribution)
    ]

    def near(a, b) -> bool:
        return sum(a.params.get(k) != b.params.get(k) for k in categorical) <= radius

    repeats = 0
    for i, t in enumerate(trials[start:], start):
        outcome = t.user_attrs.get("outcome")
        if outcome not in FAILED_OK:
            repeats += any(u.user_attrs.get("outcome") == outcome and near(u, t) for u in trials[:i])
    return repeats


def summarise(trials: list, start: int = 20) -> dict:
    """Trials and failures after ``start``, and repeats at each radius."""
    failed = [t for t in trials[start:] if t.user_attrs.get("outcome") not in FAILED_OK]
    return {
        "trials_after": len(trials) - start,
        "failures_after": len(failed),
        "repeats_after": {f"radius_{r}": repeats_after(trials, start, r) for r in (1, 2, 3)},
    }


def run(config: Path, trials: int, feedback: bool, workdir: Path, seed: int = 0) -> dict:
    raw = yaml.safe_load(config.read_text())
    name = f"feedback-{'on' if feedback else 'off'}-seed{seed}"
    raw["study"].update(
        name=name,
        seed=seed,
        trials=trials,
        failure_feedback=feedback,
        storage=f"sqlite:///{workdir}/optuna.db",
        tracking_uri=f"sqlite:///{workdir}/mlflow.db",
    )
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    start = time.perf_counter()
    assert cli(["--config", str(path)]) == 0
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{workdir}/optuna.db")
    done = sorted((t for t in study.trials if t.state.is_finished()), key=lambda t: t.number)
    outcomes: dict[str, int] = {}
    for t in done:
        outcomes[t.user_attrs["outcome"]] = outcomes.get(t.user_attrs["outcome"], 0) + 1
    return {
        "feedback": feedback,
        "seed": seed,
        "wall_s": time.perf_counter() - start,
        "outcomes": outcomes,
        **summarise(done, 20),
    }


def summary(runs: list[dict]) -> dict:
    """Per arm the mean failures (and radius-3 repeats) after trial 20 with 95% t intervals, and
    off - on with a 95% Welch interval."""
    from spp_search.results.stats import diff_interval, mean_interval

    arms = {"on": [r for r in runs if r["feedback"]], "off": [r for r in runs if not r["feedback"]]}
    out: dict = {}
    for key, pick in (
        ("failures_after", lambda r: r["failures_after"]),
        ("repeats_r3", lambda r: r["repeats_after"]["radius_3"]),
    ):
        values = {arm: [pick(r) for r in rs] for arm, rs in arms.items()}
        out[key] = {arm: [round(v, 2) for v in mean_interval(vs)] for arm, vs in values.items()}
        out[key]["off_minus_on"] = [round(v, 2) for v in diff_interval(values["off"], values["on"])]
    out["seeds_per_arm"] = min(len(rs) for rs in arms.values())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("experiments/failure_modes.yaml"))
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=5, help="sampler seeds per arm (default 5)")
    args = parser.parse_args()
    results = []
    for seed in range(args.seeds):
        for feedback in (True, False):
            with tempfile.TemporaryDirectory() as tmp:
                results.append(run(args.config, args.trials, feedback, Path(tmp), seed))
    totals = summary(results)
    payload = {"config": str(args.config), "trials": args.trials, "summary": totals, "runs": results}
    path = write("sampler_feedback", payload)
    for arm in ("on", "off"):
        mean, low, high = totals["failures_after"][arm]
        print(f"feedback {arm}: {mean:.1f} [{low:.1f}, {high:.1f}] failures after trial 20 ({args.seeds} seeds)")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
