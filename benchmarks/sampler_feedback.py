"""Does telling the sampler about failures stop it proposing them again?

Runs the same failure-prone study twice, same seed and budget: once with spp-search's feedback
(deterministic failures infeasible, divergence pruned at its step) and once with Optuna's stock
behaviour (every failure a plain FAIL, which TPE ignores). Counts, among the trials after the
20th, the failures, and those that repeat a failure already seen in their region: an earlier
trial failed with the same outcome and differs from it in at most r categorical parameters
(Hamming distance <= r, for r = 1, 2, 3).

    python -m benchmarks.sampler_feedback [--config experiments/failure_modes.yaml] [--trials 40]
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


def run(config: Path, trials: int, feedback: bool, workdir: Path) -> dict:
    raw = yaml.safe_load(config.read_text())
    name = f"feedback-{'on' if feedback else 'off'}"
    raw["study"].update(
        name=name,
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
        "wall_s": time.perf_counter() - start,
        "outcomes": outcomes,
        **summarise(done, 20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("experiments/failure_modes.yaml"))
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run(args.config, args.trials, feedback, Path(tmp)) for feedback in (True, False)]
    path = write("sampler_feedback", {"config": str(args.config), "trials": args.trials, "runs": results})
    for r in results:
        print(
            f"feedback={r['feedback']}: {r['repeats_after']} of {r['failures_after']} failures after "
            f"trial 20 repeat one seen in their region ({r['trials_after']} trials); {r['outcomes']}"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
