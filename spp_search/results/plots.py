"""The report's figures: PNGs with matplotlib (headless), Optuna's own plots as HTML."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402

from spp_search.trial.outcomes import KINDS  # noqa: E402

COLOURS = {name: kind.colour for name, kind in KINDS.items()}


def _grid(count: int):
    cols = min(3, max(1, count))
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.axis("off")
    return fig, list(axes.flat)


def outcome_shares(data, out: Path) -> str:
    """Stacked bars: share of each outcome per level of each searched factor."""
    frame, factors = data.frame, data.factors or ["spp_impl"]
    fig, axes = _grid(len(factors))
    for ax, factor in zip(axes, factors, strict=False):
        levels = data.levels(frame, factor)
        table = frame.groupby(levels, observed=True)["outcome"].value_counts(normalize=True).unstack(fill_value=0)
        left = np.zeros(len(table))
        for outcome in table.columns:
            ax.barh(
                [str(i) for i in table.index],
                table[outcome],
                left=left,
                color=COLOURS.get(outcome),
                label=outcome,
            )
            left += table[outcome].to_numpy()
        ax.set_title(factor)
        ax.set_xlim(0, 1)
    handles = {h.get_label(): h for ax in axes for h in ax.get_legend_handles_labels()[0]}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=6, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, out, "outcome_shares.png")


def accuracy_per_level(data, out: Path) -> str:
    """Validation accuracy of the successful trials per level of each factor."""
    ok = data.frame[data.frame["outcome"] == "ok"]
    factors = data.factors or ["spp_impl"]
    fig, axes = _grid(len(factors))
    for ax, factor in zip(axes, factors, strict=False):
        if _numeric(ok[factor]):  # a number on its own axis (log when searched so), not categories
            ax.scatter(ok[factor].astype(float), ok["value"], alpha=0.6)
            if factor in data.log_factors:
                ax.set_xscale("log")
            ax.set_title(factor)
            ax.set_ylim(0, 1)
            continue
        column = data.levels(ok, factor)
        present = set(column.dropna().unique())
        levels = [c for c in column.cat.categories if c in present] if hasattr(column, "cat") else sorted(present)
        for i, level in enumerate(levels):
            values = ok[column == level]["value"]
            ax.scatter(np.full(len(values), i), values, alpha=0.6)
        ax.set_xticks(range(len(levels)), levels, rotation=30, fontsize=7)
        ax.set_title(factor)
        ax.set_ylim(0, 1)
    fig.tight_layout()
    return _save(fig, out, "accuracy_per_level.png")


def _numeric(column) -> bool:
    """A float factor with more than a handful of values (learning_rate): plotted as a number."""
    values = column.dropna()
    return len(values) > 0 and all(isinstance(v, float) for v in values) and values.nunique() > 4


def loss_curves(data, out: Path) -> str:
    """Training loss per step: diverged trials in red, healthy ones in grey."""
    fig, ax = plt.subplots(figsize=(7, 4))
    outcome = dict(zip(data.frame["number"], data.frame["outcome"], strict=True))
    for number, curve in data.curves.items():
        if not curve:
            continue
        steps, losses = zip(*curve, strict=True)
        losses = np.nan_to_num(np.asarray(losses, float), nan=np.nan, posinf=1e6)
        diverged = outcome.get(number, "").startswith("diverged")
        ax.plot(steps, losses, color="#d62728" if diverged else "#999999", alpha=0.8 if diverged else 0.3)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("batch loss")
    ax.set_title("loss curves: diverged (red) vs healthy (grey)")
    return _save(fig, out, "loss_curves.png")


def memory_boundary(data, out: Path) -> str:
    """Peak worker memory vs batch size x image pixels, out-of-memory trials marked."""
    frame = data.frame[data.frame["outcome"] != "data_error"]  # those never trained
    load = frame["batch_size"].astype(float) * frame["image_size"].astype(float) ** 2
    oom = frame["outcome"].isin(["oom_host", "oom_gpu"])
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = frame["peak_rss_mb"].notna() & load.notna()  # a legend entry only for what is drawn
    if (~oom & drawn).any():
        ax.scatter(load[~oom & drawn], frame["peak_rss_mb"][~oom & drawn], label="trained", alpha=0.6)
    if (oom & drawn).any():
        rss = frame["peak_rss_mb"][oom & drawn]
        ax.scatter(load[oom & drawn], rss, marker="x", color="red", s=60, label="out of memory")
    if oom.any():
        ax.axvline(load[oom].min(), color="red", linestyle="--", label="OOM boundary")
    ax.set_xscale("log")
    ax.set_xlabel("batch size x image pixels")
    ax.set_ylabel("peak worker RSS (MB)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return _save(fig, out, "memory_boundary.png")


def best_so_far(datas: list, out: Path) -> str:
    """Best validation accuracy reached vs trials, one line per study (engine comparison)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for data in datas:
        frame = data.frame.sort_values("number")
        values = frame["value"].where(frame["outcome"] == "ok").cummax().to_numpy()
        ax.plot(np.arange(1, len(values) + 1), values, label=data.name)
    ax.set_xlabel("trials")
    ax.set_ylabel("best val accuracy so far")
    ax.legend()
    return _save(fig, out, "best_so_far.png")


def _save(fig, out: Path, name: str) -> str:
    fig.savefig(out / name, dpi=90)
    plt.close(fig)
    return name


def study_plots(data, out: Path) -> list[str]:
    names = [outcome_shares(data, out), accuracy_per_level(data, out), loss_curves(data, out)]
    if "peak_rss_mb" in data.frame:
        names.append(memory_boundary(data, out))
    return names


def optuna_plots(study: optuna.Study, out: Path) -> list[str]:
    """Optuna's importances, parallel coordinates and timeline as HTML (skipped when too few trials)."""
    from optuna import visualization as vis

    names = []
    for name, make in (
        ("optuna_importances.html", vis.plot_param_importances),
        ("optuna_parallel_coordinate.html", vis.plot_parallel_coordinate),
        ("optuna_timeline.html", vis.plot_timeline),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figure = (
                    make(study, target=lambda t: -t.value, target_name="val_accuracy")
                    if "importances" in name
                    else make(study)
                )
                figure.write_html(out / name, include_plotlyjs="directory")  # offline
            names.append(name)
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
    return names
