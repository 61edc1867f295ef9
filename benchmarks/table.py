"""The benchmark results as one markdown table per benchmark, with the targets they check."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import RESULTS


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _ms(v) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def spp_section(data: dict) -> list[str]:
    impls = ["global_floor", "floor_ceil", "paper_window", "round_bins", "crop_split", "keras_adaptive"]
    header = ["shape", "levels", "pool", "shapes", *impls, "ours / floor", "ours / paper", "round_bins / ours"]
    lines = [
        "## SPP op, forward+backward (median ms; ratios within the run)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for r in data["rows"]:
        paper, rb = r["ratio_vs_paper_window"], r["speedup_vs_round_bins"]
        cells = [str(tuple(r["shape"])), str(tuple(r["levels"])), r["pooling"], r["mode"]]
        cells += [_ms(r["ms"][i]) for i in impls]
        cells += [f"{r['ratio_vs_floor']:.2f}", f"{paper:.2f}" if paper else "-", f"{rb:.1f}" if rb else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def pipeline_section(data: dict) -> list[str]:
    lines = [
        "## Input pipeline + training step (images/s, last epoch; equal mean pixel count)",
        "",
        f"Mean native pixels {data['mean_native_pixels']:.0f}; fixed side {data['fixed_side']}, "
        f"multi-size sides {data['multi_sides']}.",
        "",
        "| policy | images/s | vs fixed | traced shapes | traces |",
        "|---|---|---|---|---|",
    ]
    for name, row in data["policies"].items():
        lines.append(
            f"| {name} | {row['images_per_s_median']:.0f} | {data['ratio_vs_fixed'][name]:.2f} | "
            f"{row['traced_shapes']:.0f} | {row['traces']:.0f} |"
        )
    return lines


def overhead_section(data: dict) -> list[str]:
    i, p = data["inline"], data["process"]
    return [
        "## Trial overhead (10 enqueued configurations, 1 worker)",
        "",
        "| isolation | wall s | median s per trial outside fit |",
        "|---|---|---|",
        f"| inline | {i['wall_s']:.1f} | {i['outside_fit_median_s']:.2f} |",
        f"| process | {p['wall_s']:.1f} | {p['outside_fit_median_s']:.2f} |",
        "",
        f"Ratio process / inline: **{data['ratio_process_vs_inline']:.3f}** (target <= 1.10).",
    ]


def study_section(data: dict) -> list[str]:
    lines = [
        f"## Default study, {data['trials']} trials",
        "",
        "| pruner | wall min | best val acc | outcomes | driver RSS growth MB |",
        "|---|---|---|---|---|",
    ]
    for r in data["runs"]:
        lines.append(
            f"| {r['pruner']} | {r['wall_s'] / 60:.1f} | {r['best_val_accuracy']} | {r['outcomes']} | "
            f"{r['driver_rss_mb']['growth']:.1f} |"
        )
    return lines


def feedback_section(data: dict) -> list[str]:
    lines = [
        "## Failures fed back to the sampler (failure-modes study, same seed and budget)",
        "",
        "| feedback | failures after trial 20 | repeats within 1 / 2 / 3 parameters | outcomes |",
        "|---|---|---|---|",
    ]
    for r in data["runs"]:
        repeats = " / ".join(str(v) for v in r["repeats_after"].values())
        lines.append(
            f"| {'on' if r['feedback'] else 'off (stock Optuna)'} | {r['failures_after']} | "
            f"{repeats} | {r['outcomes']} |"
        )
    return lines


SECTIONS = {
    "spp_op": spp_section,
    "pipeline": pipeline_section,
    "overhead": overhead_section,
    "study": study_section,
    "sampler_feedback": feedback_section,
}


def write_table() -> Path:
    lines = ["# Benchmark results", ""]
    for name, section in SECTIONS.items():
        data = _load(name)
        if data is None:
            continue
        env = data["environment"]
        lines += section(data)
        lines += [
            "",
            f"_{env['when']}, {env['device']}, {env['cpu_count']} cores, {env['memory_gib']} GiB, "
            f"TF {env['versions']['tensorflow']}, Keras {env['versions']['keras']}_",
            "",
        ]
    path = RESULTS / "summary.md"
    path.write_text("\n".join(lines))
    return path
