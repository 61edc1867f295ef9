"""``study.py report``: what made SPP training fail, how often, and which configuration to use.

Reads the Optuna storage (outcomes, factors, values) and MLflow (stability metrics, loss
curves), then writes ``report.md``, ``report.html`` and PNG plots (plus Optuna's own HTML plots)
to ``--out``, and logs them as artifacts of the study's parent MLflow run. Works on a running
study, a study of only failures and a single trial, saying what it cannot conclude. MLflow,
SciPy and the plotting libraries are imported where they are used, so that the command starts in
under a second.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from spp_search.config.factors import default_factors, param_text
from spp_search.results.claims import THRESHOLD, DataFacts, facts_of, verdicts
from spp_search.results.markdown import md_table
from spp_search.results.paper import PAPER_ARMS, arm_table, paper_comparison
from spp_search.results.stats import (
    MIN_SUPPORT,
    failure_rules,
    interactions,
    levels_of,
    not_above_chance,
    wilson,
)
from spp_search.study.budget import FINISHED, counted_trials, outcome_of
from spp_search.trial.outcomes import Outcome

STABILITY = ("grad_norm_max", "max_loss_ratio", "images_per_s", "peak_rss_mb", "trial_rss_mb", "train_time_s")


@dataclass
class StudyData:
    """One row per finished trial: every factor, outcome, value and MLflow stability metrics."""

    name: str
    frame: pd.DataFrame
    factors: list[str]
    curves: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    parent_run_id: str | None = None
    run_url: str = ""  # a trial run's MLflow page is run_url + its run id ("" without MLflow)
    running: int = 0
    log_factors: frozenset = frozenset()  # searched on a log scale (binned on it: stats.levels_of)
    facts: DataFacts = field(default_factory=DataFacts)  # what the data held (claims.facts_of)

    def levels(self, frame: pd.DataFrame, factor: str) -> pd.Series:
        """``frame[factor]`` as levels to group by, on the factor's own scale."""
        return levels_of(frame[factor], log=factor in self.log_factors or None)


def _trial_rows(study: optuna.Study) -> list[dict]:
    rows = []
    for t in counted_trials(study):
        if "factors" not in t.user_attrs:
            continue  # lost before it was set up
        # a factor the trial does not record (its study predates the factor) ran at its default
        recorded = {**default_factors(), **t.user_attrs["factors"]}
        factors = {k: param_text(v) if isinstance(v, (list, tuple)) else v for k, v in recorded.items()}
        outcome = outcome_of(t)
        rows.append(
            {
                **factors,
                "number": t.number,
                "arm": t.user_attrs.get("arm"),
                "outcome": outcome,
                "value": t.value,
                "failed": outcome not in (Outcome.OK.value, Outcome.PRUNED.value),
                "run_id": t.user_attrs.get("mlflow_run_id"),
                "duration_s": (t.datetime_complete - t.datetime_start).total_seconds(),
                "epochs_trained": len(t.intermediate_values),  # pruned and Hyperband trials train fewer
                "val_images": t.user_attrs.get("val_images"),
                "val_majority_share": t.user_attrs.get("val_majority_share"),
            }
        )
    return rows


def load_study_data(study: optuna.Study, tracking_uri: str | None) -> StudyData:
    """Join Optuna's trials with their MLflow runs (metrics and loss curves) when reachable."""
    frame = pd.DataFrame(_trial_rows(study))
    running = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
    space = study.user_attrs.get("config", {}).get("space", {})
    searched = list(space)
    log = frozenset(k for k, v in space.items() if isinstance(v, dict) and v.get("log"))
    attrs = study.user_attrs
    facts = facts_of(attrs.get("config", {}), attrs.get("data_bands"), attrs.get("data_classes"))
    data = StudyData(study.study_name, frame, searched, running=running, log_factors=log, facts=facts)
    if frame.empty or not tracking_uri:
        return data
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(study.study_name)
    if experiment is None:
        return data
    runs = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id], max_results=50000)}
    parents = [r for r in runs.values() if r.data.tags.get("spp_search.role") == "study"]
    data.parent_run_id = parents[0].info.run_id if parents else None
    data.run_url = run_base(tracking_uri, experiment.experiment_id)
    for metric in STABILITY:
        frame[metric] = [runs[r].data.metrics.get(metric, np.nan) if r in runs else np.nan for r in frame["run_id"]]
    frame["run_start"] = [runs[r].info.start_time / 1000 if r in runs else np.nan for r in frame["run_id"]]
    frame["run_end"] = [(runs[r].info.end_time or np.nan) / 1000 if r in runs else np.nan for r in frame["run_id"]]
    for number, run_id in zip(frame["number"], frame["run_id"], strict=True):
        if run_id in runs:
            data.curves[number] = [(m.step, m.value) for m in client.get_metric_history(run_id, "batch_loss")]
    return data


def outcome_table(data: StudyData) -> str:
    """Per factor level: trials, share of each observed outcome with Wilson 95% intervals,
    median val accuracy and stability metrics of the successful trials."""
    frame = data.frame
    outcomes = [o.value for o in Outcome if o.value in set(frame["outcome"])]
    header = ["factor", "level", "trials", *outcomes, "median val acc (ok)", "median trial RSS MB (ok)"]
    rows = []
    for factor in data.factors:
        for level, group in frame.groupby(data.levels(frame, factor), sort=True, observed=True):
            n = len(group)
            shares = []
            for o in outcomes:
                k = int((group["outcome"] == o).sum())
                low, high = wilson(k, n)
                shares.append(f"{k}/{n} ({k / n:.0%}, [{low:.0%}, {high:.0%}])" if k else "0")
            ok = group[group["outcome"] == "ok"]
            acc = f"{ok['value'].median():.3f}" if len(ok) else "-"
            # a trial's own memory (above its worker's at the start) where recorded, else the worker's peak
            memory = "trial_rss_mb" if ok.get("trial_rss_mb", pd.Series(dtype=float)).notna().any() else "peak_rss_mb"
            rss = f"{ok[memory].median():.0f}" if len(ok) and memory in ok else "-"
            rows.append([factor, level, n, *shares, acc, rss])
    return md_table(header, rows)


IMPORTANCE = "PED-ANOVA"  # Optuna's default evaluator, and the one optuna-dashboard shows
RELIABLE_AT = 30  # trials: PED-ANOVA compares the best 10% to the rest, 3 trials at 30


def importances(study: optuna.Study, data: StudyData) -> tuple[dict, dict]:
    """Factor importances (``IMPORTANCE``) for failure (a derived study whose value is 1 for a
    failed trial) and for accuracy (the study itself), computed as optuna-dashboard computes its
    chart (a maximised value enters as its negative), so that the two agree."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line
    failure, accuracy = {}, {}
    frame = data.frame
    searched = [t for t in study.get_trials(deepcopy=False, states=FINISHED) if t.number in set(frame["number"])]
    failed = dict(zip(frame["number"], frame["failed"], strict=True))
    if len(searched) >= MIN_SUPPORT and 0 < sum(failed.values()) < len(failed):
        derived = optuna.create_study()
        for t in searched:
            derived.add_trial(
                optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=float(failed[t.number]))
            )
        failure = param_importances(derived)
    complete = [t for t in searched if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    if len(complete) >= MIN_SUPPORT and len({t.value for t in complete}) > 1:
        accuracy = param_importances(study)
    return failure, accuracy


def param_importances(study: optuna.Study) -> dict:
    """``IMPORTANCE`` of each factor for a higher value (optuna-dashboard's own call)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PED-ANOVA's note that it ranks for low targets: hence the minus
        return optuna.importance.get_param_importances(
            study, target=lambda t: -t.value, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
        )


def importance_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def build_markdown(study: optuna.Study, data: StudyData, plots: list[str]) -> str:
    """The whole report as Markdown."""
    frame, n = data.frame, len(data.frame)
    lines = [f"# spp-search report: `{data.name}`", ""]
    counts = frame["outcome"].value_counts().to_dict() if n else {}
    lines += [
        f"{n} finished trials ({data.running} still running). Outcomes: "
        + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none")
        + ".",
        "",
    ]
    if n < MIN_SUPPORT:
        lines += [
            f"**Too few trials to conclude anything** (need at least {MIN_SUPPORT}); "
            "the tables below only list what happened.",
            "",
        ]
    if n:
        lines += ["## Outcomes per factor level", "", outcome_table(data), ""]
        failure, accuracy = importances(study, data)
        lines += ["## What drives failure and accuracy", ""]
        complete = importance_count(study)
        lines += [
            f"Importance: {IMPORTANCE} (Optuna's default, the method optuna-dashboard shows, so the two agree), "
            f"on {n} finished trials for failure and {complete} complete ones for accuracy.",
            "",
            _importance_line("failure (failed / not failed)", failure),
            _importance_line("validation accuracy", accuracy),
            "",
        ]
        if min(n, complete) < RELIABLE_AT:
            lines += [
                f"**Unreliable at this count**: {IMPORTANCE} compares the best 10% of trials with the rest, "
                f"which needs at least {RELIABLE_AT} trials (here {min(n, complete)}); read it as a hint.",
                "",
            ]
        pairs = interactions(frame.assign(failed=frame["failed"].astype(float)), data.factors, "failed")
        if pairs:
            lines += [
                "Strongest two-factor interactions on failure (share of variance beyond main effects): "
                + "; ".join(f"{a} x {b} {s:.2f}" for a, b, s in pairs),
                "",
            ]
        rules = failure_rules(frame, data.factors)
        lines += ["## Failing regions", ""]
        lines += [f"- {r.text()}" for r in rules] or [f"No rule reaches 80% with support >= {MIN_SUPPORT}."]
        lines += ["", "## The blog post's claims, judged by this study", ""]
        lines += [
            md_table(
                ["claim", "verdict", "evidence"],
                [[v.claim, f"**{v.verdict}**", v.evidence] for v in verdicts(frame, data.facts)],
            ),
            "",
            f"A claim is refuted for an implementation only when the 95% upper bound of its failure rate "
            f"under the claim's condition is below {THRESHOLD:.0%}; it fails when the lower bound is at "
            f"least {THRESHOLD:.0%}. Not tested: the study never met the claim's condition.",
            "",
        ]
        if frame["arm"].notna().any():
            lines += ["## Ablation arms", "", arm_table(frame[frame["arm"].notna()]), ""]
            if set(PAPER_ARMS) <= set(frame["arm"].dropna()):
                lines += ["## The SPP paper's comparison", "", *paper_comparison(frame), ""]
        ok = frame[frame["outcome"] == "ok"].sort_values("value", ascending=False)
        if len(ok):
            best = ok.iloc[0]
            lines += [
                "## Best configuration",
                "",
                *chance_lines(best),
                f"Trial {best['number']}, val accuracy {best['value']:.4f}: "
                + ", ".join(f"{f}={best[f]}" for f in data.factors),
                "",
            ]
    if n:
        lines += ["## Trials", "", trial_table(data), ""]
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots if p.endswith(".png")]
    lines += [f"- [{p}]({p})" for p in plots if p.endswith(".html")]
    return "\n".join(lines) + "\n"


MODEL_TRAINING = "workflowType=machine_learning"  # MLflow 3's Model training pages, not GenAI's


def chance_lines(best: pd.Series) -> list[str]:
    """The warning of ``stats.not_above_chance`` for the best trial (nothing for trials recorded
    without their validation split: older studies)."""
    n, chance = best.get("val_images"), best.get("val_majority_share")
    if n is None or chance is None or pd.isna(n) or pd.isna(chance):
        return []
    interval = not_above_chance(float(best["value"]), int(n), float(chance))
    if interval is None:
        return []
    return [
        f"**The best trial is not above chance**: val accuracy {best['value']:.4f} on {int(n)} validation images "
        f"(95% interval {interval[0]:.3f}-{interval[1]:.3f}) does not exclude {chance:.3f}, what predicting the "
        "largest class scores. The comparisons in this report are between models that did not learn: train "
        "longer (`study.steps`) or add images.",
        "",
    ]


def run_base(tracking_uri: str, experiment_id: str) -> str:
    """The MLflow UI address of a trial run, less its id (``runs_view.runs_url``'s server)."""
    from spp_search.study.runs_view import runs_url

    return runs_url(tracking_uri, experiment_id).split("/runs?")[0] + "/runs/"


def trial_table(data: StudyData) -> str:
    """One row per trial: outcome, value, the searched factors, a link to its MLflow run."""
    frame = data.frame.sort_values("number")
    header = ["trial", "outcome", "val acc", *data.factors, "MLflow run"]
    rows = []
    for _, row in frame.iterrows():
        value = f"{row['value']:.4f}" if pd.notna(row["value"]) and row["outcome"] in ("ok", "pruned") else "-"
        run = row.get("run_id")
        link = f"[{run[:8]}]({data.run_url}{run}?{MODEL_TRAINING})" if data.run_url and isinstance(run, str) else "-"
        factors = [f"{row[f]:.3g}" if isinstance(row[f], float) else str(row[f]) for f in data.factors]
        rows.append([row["number"], row["outcome"], value, *factors, link])
    return md_table(header, rows)


CSS = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1, h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; display: block; margin: 1em 0; }
code { background: #f3f3f3; padding: 0 3px; }
"""


def _importance_line(label: str, values: dict) -> str:
    if not values:
        return f"- {label}: cannot compute (needs >= {MIN_SUPPORT} trials with varying results)"
    return f"- {label}: " + ", ".join(f"{k} {v:.2f}" for k, v in values.items())


def engine_of(study: optuna.Study) -> str:
    settings = study.user_attrs.get("config", {}).get("study", {})
    engine = settings.get("engine", "optuna")
    return (
        f"{engine} {settings.get('tuner')}" if engine == "keras-tuner" else f"optuna {settings.get('sampler', 'tpe')}"
    )


def comparison_rows(studies: list[tuple[optuna.Study, StudyData]]) -> list[dict]:
    """Studies side by side: engine, trials, rounds trained (the compute budget: pruning and
    Hyperband stop trials early; a round is an epoch, or ``steps / evaluations`` steps of a step
    budget; the key stays ``epochs_trained`` for the results recorded before steps), best accuracy
    and when it was reached, outcomes, wall time."""
    rows = []
    for study, data in studies:
        frame = data.frame.sort_values("number")
        ok = frame["value"].where(frame["outcome"] == "ok")
        best_so_far = ok.cummax()
        best = best_so_far.max()
        reached = int(np.argmax(best_so_far.to_numpy() >= 0.95 * best)) + 1 if best == best else None
        wall = (frame["run_end"].max() - frame["run_start"].min()) if "run_start" in frame else np.nan
        rows.append(
            {
                "study": data.name,
                "engine": engine_of(study),
                "trials": len(frame),
                "epochs_trained": int(frame["epochs_trained"].sum()),
                "best_val_accuracy": float(best) if best == best else None,
                "trials_to_95pct": reached,
                "ok": int((frame["outcome"] == "ok").sum()),
                "pruned": int((frame["outcome"] == "pruned").sum()),
                "failed": int(frame["failed"].sum()),
                "wall_min": round(float(wall) / 60, 2) if wall == wall else None,
            }
        )
    return rows


def comparison(studies: list[tuple[optuna.Study, StudyData]]) -> str:
    """``comparison_rows`` as a Markdown table."""
    header = [
        "study",
        "engine",
        "trials",
        "rounds trained (validations)",
        "best val acc",
        "trials to 95% of best",
        "ok / pruned / failed",
        "wall min",
    ]
    rows = [
        [
            r["study"],
            r["engine"],
            r["trials"],
            r["epochs_trained"],
            f"{r['best_val_accuracy']:.4f}" if r["best_val_accuracy"] is not None else "-",
            r["trials_to_95pct"] or "-",
            f"{r['ok']} / {r['pruned']} / {r['failed']}",
            f"{r['wall_min']:.1f}" if r["wall_min"] is not None else "-",
        ]
        for r in comparison_rows(studies)
    ]
    return md_table(header, rows)


def write_report(study: optuna.Study, tracking_uri: str | None, out: Path, compare: list | None = None) -> Path:
    """Write report.md/.html and plots to ``out``; log them to the parent run. Returns report.md.

    ``compare``: other studies (same storage) to put side by side with this one.
    """
    import markdown

    from spp_search.results.plots import best_so_far, optuna_plots, study_plots

    out.mkdir(parents=True, exist_ok=True)
    data = load_study_data(study, tracking_uri)
    plots = study_plots(data, out) + optuna_plots(study, out) if len(data.frame) else []
    text = build_markdown(study, data, plots)
    if compare:
        studies = [(study, data)] + [(other, load_study_data(other, tracking_uri)) for other in compare]
        plot = best_so_far([d for _, d in studies], out)
        text += f"\n## Studies side by side\n\n{comparison(studies)}\n\n![{plot}]({plot})\n"
    (out / "report.md").write_text(text)
    html = markdown.markdown(text, extensions=["tables"])
    (out / "report.html").write_text(
        f"<html><head><meta charset='utf-8'><title>{data.name}</title><style>{CSS}</style></head>"
        f"<body>{html}</body></html>"
    )
    if data.parent_run_id and tracking_uri:
        from mlflow import MlflowClient

        MlflowClient(tracking_uri).log_artifacts(data.parent_run_id, str(out), "report")
    return out / "report.md"
