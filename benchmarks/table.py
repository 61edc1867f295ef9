"""The benchmark results as one markdown table per benchmark, with the targets they check."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import RESULTS
from spp_search.model.impls import SPP_IMPLS
from spp_search.results.markdown import table_lines


def _load(name: str, folder: Path = RESULTS) -> dict | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _ms(v) -> str:
    """Milliseconds: one decimal, two below 1 ms (GPU timings)."""
    return "n/a" if v is None else f"{v:.2f}" if v < 1 else f"{v:.1f}"


def spp_section(data: dict) -> list[str]:
    impls = ["global_floor", *SPP_IMPLS]
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
        cells += [_ms(r["ms"].get(i)) for i in impls]
        cells += [f"{r['ratio_vs_floor']:.2f}", f"{paper:.2f}" if paper else "-", f"{rb:.1f}" if rb else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def pipeline_section(data: dict) -> list[str]:
    lines = [
        "## Input pipeline + training step (images/s over every epoch but the first; equal mean pixel count)",
        "",
        f"Mean native pixels {data['mean_native_pixels']:.0f}; fixed side {data['fixed_side']}, "
        f"multi-size sides {data['multi_sides']}.",
        "",
        "| policy | images/s | vs fixed | traced shapes | compile s |",
        "|---|---|---|---|---|",
    ]
    for name, row in data["policies"].items():
        lines.append(
            f"| {name} | {row['images_per_s_median']:.0f} | {data['ratio_vs_fixed'][name]:.2f} | "
            f"{row['traced_shapes']:.0f} | {_num(row.get('compile_s_median'), 1)} |"
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
        "## Failures fed back to the sampler (failure-modes study, same budget, several seeds per arm)",
        "",
        "| feedback | seed | failures after trial 20 | repeats within 1 / 2 / 3 parameters | outcomes |",
        "|---|---|---|---|---|",
    ]
    for r in data["runs"]:
        repeats = " / ".join(str(v) for v in r["repeats_after"].values())
        lines.append(
            f"| {'on' if r['feedback'] else 'off (stock Optuna)'} | {r.get('seed', 0)} | {r['failures_after']} | "
            f"{repeats} | {r['outcomes']} |"
        )
    if "summary" in data:
        lines += ["", *feedback_summary(data)]
    return lines


def feedback_summary(data: dict) -> list[str]:
    """Means with 95% intervals per arm, and the difference (the README's figure)."""
    s = data["summary"]
    cell = lambda v: f"{v[0]:.1f} [{v[1]:.1f}, {v[2]:.1f}]"  # noqa: E731
    return [
        f"| sampler told about failures ({s['seeds_per_arm']} seeds per arm, {data['trials']} trials) "
        "| failures after trial 20, mean [95% CI] | repeats of a failure within 3 parameters |",
        "|---|---|---|",
        f"| yes (spp-search) | {cell(s['failures_after']['on'])} | {cell(s['repeats_r3']['on'])} |",
        f"| no (stock Optuna: FAIL) | {cell(s['failures_after']['off'])} | {cell(s['repeats_r3']['off'])} |",
        f"| difference, no - yes | {cell(s['failures_after']['off_minus_on'])} | "
        f"{cell(s['repeats_r3']['off_minus_on'])} |",
    ]


def _check(name: str, value: float | None, target: float, higher_is_better: bool = False) -> list[str]:
    """One target row: the measured value, the target and whether it is met."""
    if value is None:
        return [name, "not measured", f"{target:g}", "-"]
    met = value >= target if higher_is_better else value <= target
    return [name, f"{value:.2f}", f"{'>=' if higher_is_better else '<='} {target:g}", "met" if met else "MISSED"]


def _spp_ratio(rows: list, dynamic_only: bool, keep, key: str, pick=max) -> float | None:
    values = [r[key] for r in rows if keep(r) and (r["mode"] == "dynamic" or not dynamic_only) and r[key]]
    return pick(values) if values else None


def targets_section(results: dict, gpu_runs: dict | None = None) -> list[str]:
    """Every target of the performance issues, checked against the JSON files (worst case)."""
    rows = []
    spp = (results.get("spp_op") or {}).get("rows", [])
    divisible = lambda r: all(side % lvl == 0 for side in r["shape"][1:3] for lvl in r["levels"])  # noqa: E731
    anywhere = lambda r: not divisible(r)  # noqa: E731
    rows.append(
        _check(
            "SPP divisible sizes, dynamic: ours / paper window (worst)",
            _spp_ratio(spp, True, divisible, "ratio_vs_paper_window"),
            1.1,
        )
    )
    rows.append(
        _check(
            "SPP divisible sizes, dynamic: ours / global-pool floor (worst)",
            _spp_ratio(spp, True, divisible, "ratio_vs_floor"),
            1.5,
        )
    )
    rows.append(
        _check("SPP any size, dynamic: ours / floor (worst)", _spp_ratio(spp, True, anywhere, "ratio_vs_floor"), 3.0)
    )
    first = lambda r: tuple(r["shape"]) == (64, 32, 32, 128) and tuple(r["levels"]) == (1, 2, 4)  # noqa: E731
    rows.append(
        _check(
            "SPP (64,32,32,128) (1,2,4): speed-up over one slice per bin (worst)",
            _spp_ratio(spp, False, first, "speedup_vs_round_bins", min),
            5.0,
            True,
        )
    )
    pipe = results.get("pipeline")
    rows.append(
        _check(
            "variable_bucketed images/s / fixed",
            pipe["ratio_vs_fixed"]["variable_bucketed"] if pipe else None,
            0.8,
            True,
        )
    )
    over = results.get("overhead")
    rows.append(_check("isolated / inline trial wall time", over["ratio_process_vs_inline"] if over else None, 1.10))
    study = results.get("study")
    pruned = next((r for r in study["runs"] if r["pruner"] != "none"), None) if study else None
    wall = pruned["wall_s"] / 60 if pruned else None
    rows.append(_check("CPU TensorFlow: default 50-trial study, pruning on (minutes)", wall, 1.5))  # issue 23
    rows.append(
        _check("driver memory growth over the study (MB)", pruned["driver_rss_mb"]["growth"] if pruned else None, 50)
    )
    port = results.get("spp_port")
    rows.append(
        _check("CPU TensorFlow: keras.ops SPP / the layer it replaced (median)", port and port["median_ratio"], 1.1)
    )
    start = results.get("startup")
    rows.append(_check("export-best start-up (s)", start["export_best_s_median"] if start else None, 1.0))
    rows.append(_check("report start-up, its imports (s)", start["report_imports_s_median"] if start else None, 1.0))
    rows.append(_check("check-data start-up (s)", start.get("check_data_s_median") if start else None, 1.0))
    rows += _backend_targets(results, gpu_runs or {})
    lines = ["## Targets", "", "| target | measured | target | |", "|---|---|---|---|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows] + [""]


def _backend_targets(results: dict, gpu_runs: dict) -> list[list[str]]:
    """The targets of the backends issue: CPU per backend, and the GPU run (JAX)."""
    rows = []
    port = results.get("study_port")
    ratio = port["ratio_now_vs_before"] if port else None
    rows.append(_check("CPU TensorFlow: default 50-trial study, now / before the port (side by side)", ratio, 1.0))
    for suffix, label in (("", "TensorFlow"), ("-jax", "JAX")):
        if suffix:
            study = results.get("study" + suffix)
            pruned = next((r for r in study["runs"] if r["pruner"] != "none"), None) if study else None
            rows.append(_check(f"CPU {label}: default 50-trial study (minutes)", pruned and pruned["wall_s"] / 60, 3.0))
        pipe = results.get("pipeline" + suffix)
        head = (pipe or {}).get("spp_vs_global_pool_step")
        rows.append(_check(f"CPU {label}: SPP train step / global-pool head", head, 1.10))
        if suffix:
            ratio = pipe["ratio_vs_fixed"]["variable_bucketed"] if pipe else None
            rows.append(_check(f"CPU {label}: variable_bucketed images/s / fixed", ratio, 0.8, True))
    gpu = gpu_runs.get("gpu-jax") or {}
    study, step, spp = gpu.get("study") or {}, gpu.get("train_step") or {}, gpu.get("spp_op") or {}
    prec = (gpu.get("precision") or {}).get("float32") or {}
    oom = gpu.get("oom_boundary") or {}
    rows.append(_check("GPU JAX: default 50-trial study (minutes)", study.get("wall_min"), 2.0))
    rows.append(_check("GPU JAX: SPP train step / global-pool head (fixed)", step.get("ratio_fixed"), 1.10))
    rows.append(
        _check("GPU JAX: variable_bucketed images/s / fixed", step.get("bucketed_vs_fixed_images_per_s"), 0.8, True)
    )
    rows.append(_check("GPU JAX: SPP any size ours / floor (worst)", spp.get("worst_ratio_vs_floor_any_size"), 3.0))
    rows.append(_check("GPU JAX: GPU busy during a fit (%)", prec.get("gpu_busy_percent"), 70, True))
    same = oom.get("same_boundary_both_times")
    rows.append(
        _check("GPU JAX: OOM boundary the same twice (1 = yes)", None if same is None else float(same), 1, True)
    )
    return rows


def gpu_section(data: dict) -> list[str]:
    """``benchmarks/gpu.py``: the five measurements of one run on one device."""
    env = data["environment"]
    where = f"{env['device']} {', '.join(env.get('gpus') or [])}".strip()
    lines = [
        f"## {where}, Keras on {env['backend']}{' (quick: code path only, not speed)' if data['quick'] else ''}",
        "",
    ]
    spp = data.get("spp_op") or {}
    if "rows" in spp:
        lines += ["SPP op, forward+backward, static shapes (median ms):", ""]
        lines += spp_section({"rows": spp["rows"]})[2:]
        lines += ["", f"Our layer exact against the NumPy reference on this device: {spp['all_exact']}.", ""]
    step = data.get("train_step") or {}
    if "ratio_fixed" in step:
        lines += [
            "| train step | SPP ms | global-pool head ms | SPP / global pool |",
            "|---|---|---|---|",
            *(
                f"| {p} | {step[f'spp_{p}_step_ms']:.2f} | {step[f'global_pool_{p}_step_ms']:.2f} | "
                f"{step[f'ratio_{p}']:.2f} |"
                for p in ("fixed", "variable_bucketed")
            ),
            "",
            f"Bucketed variable sizes / fixed size, images/s: {step['bucketed_vs_fixed_images_per_s']:.2f}.",
            "",
        ]
    prec = data.get("precision") or {}
    if "float32" in prec:
        lines += [
            "| dtype policy | images/s | step ms | compile s | peak GPU MB | GPU busy % |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in prec.items():
            if not isinstance(r, dict):
                continue
            lines.append(
                f"| {name} | {_num(r.get('images_per_s'), 0)} | {_num(r.get('step_ms'), 2)} | "
                f"{_num(r.get('compile_s'), 1)} | {_num(r.get('peak_gpu_mb'), 0)} | "
                f"{_num(r.get('gpu_busy_percent'), 0)} |"
            )
        lines += ["", f"Building one training batch on the host: {_num(prec.get('host_batch_ms'), 1)} ms.", ""]
    oom = data.get("oom_boundary") or {}
    if "sequences" in oom:
        runs = [" -> ".join(f"{s['batch_size']}:{s['outcome']}" for s in q["steps"]) for q in oom["sequences"]]
        lines += [
            f"Out-of-memory boundary under a {oom['budget']} budget, {oom['image_size']} px: first failing batch "
            f"size {oom['first_oom_batch_size']}, the same both times: {oom['same_boundary_both_times']} "
            f"({'; '.join(runs)}).",
            "",
        ]
    compile_probe = data.get("compile") or {}
    if "autotune_off" in compile_probe:
        lines += ["| one cold trial of the default study | compile s | step ms | trial wall s |", "|---|---|---|---|"]
        for name, r in compile_probe.items():
            lines.append(
                f"| {name} | {_num(r['compile_s'], 2)} | {_num(r['step_ms'], 2)} | {_num(r['trial_wall_s'], 1)} |"
            )
        lines.append("")
    studies = [(k, v) for k, v in data.items() if k.startswith("study") and isinstance(v, dict) and "wall_s" in v]
    if studies:
        lines += [
            "| study (50 trials, default config) | XLA_FLAGS | workers | state | wall min | trials | "
            "compile s / trial | trial wall s | best val acc | outcomes |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for key, study in studies:
            mean = study.get("per_trial_mean") or {}
            state = "finished" if study.get("finished") else f"stopped at {study['wall_s']:.0f} s"
            lines.append(
                f"| {key} | {study.get('xla_flags', '') or '(default: autotune off)'} | "
                f"{study.get('workers')} | {state} | {study['wall_s'] / 60:.2f} | {study.get('trials_done')} | "
                f"{_num(mean.get('compile_s'), 1)} | "
                f"{_num(mean.get('trial_wall_s'), 1)} | {study.get('best_val_accuracy')} | {study.get('outcomes')} |"
            )
        lines.append("")
    if data.get("sources"):
        lines += ["Sections from runs: " + "; ".join(f"{k}: {v}" for k, v in data["sources"].items()) + ".", ""]
    lines += [f"Note: {note}" for note in data.get("notes") or []]
    return lines


def _num(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _footer(env: dict) -> str:
    versions = env["versions"]
    backend = env.get("backend", "tensorflow")
    framework = f"JAX {versions.get('jax')}" if backend == "jax" else f"TF {versions.get('tensorflow')}"
    gpus = f" ({', '.join(env['gpus'])})" if env.get("gpus") else ""
    return (
        f"_{env['when']}, {env['device']}{gpus}, {env['cpu_count']} cores, {env['memory_gib']} GiB, "
        f"{framework}, Keras {versions.get('keras')}_"
    )


def port_section(data: dict) -> list[str]:
    lines = [
        f"## SPP layer: keras.ops port vs the TensorFlow layer it replaced (git {data['before']}), side by side",
        "",
        "| shape | levels | pool | shapes | before ms | keras.ops ms | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {tuple(r['shape'])} | {tuple(r['levels'])} | {r['pooling']} | {r['mode']} | {r['old_ms']:.2f} | "
            f"{r['new_ms']:.2f} | {r['ratio_new_vs_old']:.2f} |"
        )
    return [*lines, "", f"Median ratio {data['median_ratio']:.2f}, worst {data['worst_ratio']:.2f}."]


def study_port_section(data: dict) -> list[str]:
    runs = data["runs"]
    order = " / ".join(f"{k} {r['wall_s'] / 60:.2f}" for k in ("before", "now") for r in runs[k])
    return [
        f"## Default study on TensorFlow: now vs before the backends port (git {data['before']}), side by side",
        "",
        f"Median wall time now {data['wall_s_median']['now'] / 60:.2f} min, before "
        f"{data['wall_s_median']['before'] / 60:.2f} min: ratio **{data['ratio_now_vs_before']:.2f}** "
        f"(runs, minutes: {order}).",
    ]


def chaos_section(data: dict) -> list[str]:
    """``tests/test_chaos.py`` runs recorded with ``SPP_CHAOS_RESULTS`` (per storage)."""
    lines = [
        "## Chaos suite (tests/test_chaos.py): a driver and 3 workers, 40 trials, kills, a stop and an outage",
        "",
        "| storage | run | counted / trials | re-queued | by a dead driver | stale while training | "
        "duplicate configs | outages | wall s | exit codes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, runs in data.items():
        if kind == "environment":
            continue
        for i, r in enumerate(runs, 1):
            lines.append(
                f"| {kind} | {i} | {r['counted']} / {r['trials']} | {r['requeued']} | {r['lost_driver']} | "
                f"{r['stale_while_training']} | {r['duplicates']} | {r['outages']} | {r['wall_s']:.0f} | "
                f"{sorted(set(r['exit_codes'].values()))} |"
            )
    return lines


def mlflow_overhead_section(data: dict) -> list[str]:
    """``benchmarks/mlflow_overhead.py``: the default study with and without system metrics."""
    runs = ", ".join(f"{k} {[round(v / 60, 2) for v in vs]}" for k, vs in data["runs"].items())
    return [
        "## MLflow system metrics: the default 50-trial study with them on (0.5 s) and off, side by side",
        "",
        f"Median wall time on {data['wall_s_median']['on'] / 60:.2f} min vs off "
        f"{data['wall_s_median']['off'] / 60:.2f} min: ratio **{data['ratio_on_vs_off']:.2f}** "
        f"(runs, minutes: {runs}).",
    ]


def startup_section(data: dict) -> list[str]:
    return [
        "## Start-up of the commands that only read results (median of fresh processes)",
        "",
        "| command | seconds | backends imported |",
        "|---|---|---|",
        f"| export-best (whole command) | {data['export_best_s_median']:.2f} | {data['backends_imported']} |",
        f"| report (its imports) | {data['report_imports_s_median']:.2f} | {data['backends_imported']} |",
        *(
            f"| {label} (whole command) | {data[key]:.2f} | {data['backends_imported']} |"
            for label, key in (("report", "report_s_median"), ("check-data", "check_data_s_median"))
            if key in data
        ),
    ]


def step_budget_section(data: dict) -> list[str]:
    """``benchmarks/step_budget.py``: the default study with 3 epochs and with the step budget."""
    names = {"texture_photos": "texture photos", "built_in": "built-in"}
    rows = []
    for s in data["studies"]:
        o = s["outcomes"]
        diverged = o.get("diverged_explosion", 0) + o.get("diverged_nan", 0)
        budget = "3 epochs" if s["budget"] == "epochs_3" else s["budget_line"].split(" per trial")[0].split(": ")[1]
        rows.append(
            [
                names.get(s["data"], s["data"]),
                s["trials"],
                budget.replace(" optimizer", ""),
                f"{s['best']:.3f}",
                f"{s['top5_mean']:.3f}",
                f"{s['ok_median']:.3f}",
                s["at_chance"],
                f"{o.get('ok', 0)} / {o.get('pruned', 0)} / {diverged}",
                f"{s['wall_s']:.1f}",
            ]
        )
    header = ["data", "trials", "budget", "best", "mean of best 5", "median ok", "at chance"]
    header += ["ok / pruned / diverged", "wall s"]
    title = "## Training budget: the default study with 3 epochs and with 36 optimizer steps, side by side"
    return [title, "", *table_lines(header, rows)]


SECTIONS = {
    "spp_op": spp_section,
    "pipeline": pipeline_section,
    "overhead": overhead_section,
    "study": study_section,
    "sampler_feedback": feedback_section,
    "startup": startup_section,
    "spp_port": port_section,
    "study_port": study_port_section,
    "chaos": chaos_section,
    "mlflow_overhead": mlflow_overhead_section,
    "step_budget": step_budget_section,
}


def write_table(folder: Path = RESULTS) -> Path:
    """``summary.md`` in ``folder`` from every result file there: targets first, then one section
    per benchmark (per backend where one ran on several), then the GPU runs."""
    lines = ["# Benchmark results", ""]
    results = {name + suffix: _load(name + suffix, folder) for name in SECTIONS for suffix in ("", "-jax")}
    lines += targets_section(results, _gpu_runs(folder))
    for name, section in SECTIONS.items():
        for suffix, label in (("", ""), ("-jax", " (JAX)")):
            data = _load(name + suffix, folder)
            if data is None:
                continue
            body = section(data)
            body[0] = body[0] + label
            footer = [_footer(data["environment"])] if "environment" in data else []
            lines += [*body, "", *footer, ""]
    for data in _gpu_runs(folder).values():
        lines += ["", *gpu_section(data), _footer(data["environment"]), ""]
    path = folder / "summary.md"
    path.write_text("\n".join(lines))
    return path


def _gpu_runs(folder: Path) -> dict[str, dict]:
    """Results of ``benchmarks/gpu.py`` in ``folder`` (the GPU runs, and CPU quick runs)."""
    paths = sorted([*folder.glob("gpu-*.json"), *folder.glob("cpu-quick-*.json")])
    return {p.stem: json.loads(p.read_text()) for p in paths}
