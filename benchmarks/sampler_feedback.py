"""Does telling the sampler about failures stop it proposing them again?

Runs the same failure-prone study twice, same seed and budget: once with spp-search's feedback
(deterministic failures infeasible, divergence pruned at its step) and once with Optuna's stock
behaviour (every failure a plain FAIL, which TPE ignores). Counts, among the trials after the
20th, those that repeat a failure already seen in their region: a trial repeats a failure when
an earlier trial failed with the same outcome and differs from it in at most one categorical
parameter (Hamming distance <= 1).

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


def repeats_after(trials: list, start: int) -> dict:
    """Failures after trial ``start`` and how many repeat an earlier failure in their region."""
    categorical = [
        k for k, d in trials[0].distributions.items() if isinstance(d, optuna.distributions.CategoricalDistribution)
    ]

    def near(a, b) -> bool:
        return sum(a.params.get(k) != b.params.get(k) for k in categorical) <= 1

    failures = repeats = 0
    for i, t in enumerate(trials):
        outcome = t.user_attrs.get("outcome")
        if i < start or outcome in FAILED_OK:
            continue
        failures += 1
        repeats += any(u.user_attrs.get("outcome") == outcome and near(u, t) for u in trials[:i])
    return {"failures_after": failures, "repeats_after": repeats, "trials_after": len(trials) - start}


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
        **repeats_after(done, 20),
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
