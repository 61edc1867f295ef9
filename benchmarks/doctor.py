"""The doctor against its zoo: planted faults and healthy controls (``benchmarks/doctor_zoo``).

    python -m benchmarks.doctor                      # every case, TensorFlow (~30 min on 2 cores)
    python -m benchmarks.doctor --only adam_lr,half_bgr --backend jax

Per case: the culprit a correct diagnosis names against the one named, the symptom, the
confidence, and the seconds it took; the summary: top-1 accuracy on the planted faults, false
alarms on the healthy controls, median and maximum seconds. Writes
``benchmarks/results/doctor.json`` (``doctor-jax.json`` on JAX), from which the docs' table is
generated (``python -m benchmarks.readme``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, environment
from benchmarks.doctor_zoo.cases import CASES


def run_case(case, backend: str, work: Path) -> dict:
    from spp_search.doctor import diagnose

    data = case.folder(work / "data")
    start = time.perf_counter()
    record = diagnose(
        case.builder,
        data,
        out=work / "out",
        tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
        backend=backend,
        **case.options,
    )
    expected = case.expected_on(backend)
    return {
        "case": case.name,
        "fault": case.fault,
        "expected": expected,
        "named": record["culprit"],
        "correct": record["culprit"] == expected,
        "symptom": record["symptom"],
        "confidence": record["confidence"],
        "tried": record["tried"],
        "seconds": round(time.perf_counter() - start, 1),
    }


def summarise(rows: list[dict]) -> dict:
    faults = [r for r in rows if r["expected"] != "none"]
    healthy = [r for r in rows if r["expected"] == "none"]
    seconds = [r["seconds"] for r in rows]
    return {
        "cases": len(rows),
        "faults": len(faults),
        "top1": sum(r["correct"] for r in faults) / len(faults) if faults else None,
        "healthy": len(healthy),
        "false_alarms": sum(r["named"] != "none" for r in healthy),
        "median_s": statistics.median(seconds) if seconds else None,
        "max_s": max(seconds) if seconds else None,
        "missed": [f"{r['case']}: expected {r['expected']}, named {r['named']}" for r in faults if not r["correct"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated case names")
    parser.add_argument("--backend", default="tensorflow", choices=("tensorflow", "jax"))
    parser.add_argument("--out", type=Path, help="result file (default benchmarks/results/doctor[-jax].json)")
    args = parser.parse_args()
    chosen = [c for c in CASES if not args.only or c.name in args.only.split(",")]
    rows = []
    for case in chosen:
        with tempfile.TemporaryDirectory(prefix=f"doctor-{case.name}-") as work:
            rows.append(run_case(case, args.backend, Path(work)))
        r = rows[-1]
        print(
            f"{r['case']:>22}: expected {r['expected']:<18} named {r['named']:<18} {r['symptom']:<18}"
            f" {r['seconds']:6.1f} s"
        )
    result = {"environment": environment(args.backend), "rows": rows, "summary": summarise(rows)}
    suffix = "" if args.backend == "tensorflow" else f"-{args.backend}"
    out = args.out or RESULTS / f"doctor{suffix}.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
