"""The report on fabricated studies with known counts: full, single-trial, failures only."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from spp_search.config.factors import default_factors
from spp_search.results.report import write_report

DIST = {
    "spp_impl": CategoricalDistribution(["floor_ceil", "round_bins"]),
    "image_size": CategoricalDistribution([16, 64]),
    "learning_rate": FloatDistribution(1e-4, 1.0, log=True),
}


def _study(tmp_path, rows, name: str = "fab", epochs: int = 0, split: dict | None = None) -> optuna.Study:
    """rows: (spp_impl, image_size, learning_rate, outcome, value); ``epochs`` reported per trial;
    ``split``: the validation split's attributes every trial records (``val_images``, ...)."""
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path}/o.db", direction="maximize")
    study.set_user_attr("config", {"space": {k: {} for k in DIST}})
    for impl, size, lr, outcome, value in rows:
        factors = {**default_factors(), "spp_impl": impl, "image_size": size, "learning_rate": lr}
        factors = {k: list(v) if isinstance(v, tuple) else v for k, v in factors.items()}
        ok = outcome == "ok"
        study.add_trial(
            create_trial(
                params={"spp_impl": impl, "image_size": size, "learning_rate": lr},
                distributions=DIST,
                value=value if ok else None,
                state=TrialState.COMPLETE if ok else TrialState.FAIL,
                user_attrs={"factors": factors, "outcome": outcome, **(split or {})},
                intermediate_values={e: 0.5 for e in range(epochs)},
            )
        )
    return study


ROWS = (
    [("round_bins", 16, 0.01, "diverged_nan", None)] * 4
    + [("round_bins", 64, 0.01, "ok", 0.8)] * 4
    + [("floor_ceil", 16, 0.001 * (i + 1), "ok", 0.9) for i in range(8)]
)


def test_report_on_known_counts(tmp_path):
    path = write_report(_study(tmp_path, ROWS), None, tmp_path / "out")
    text = path.read_text()
    assert "16 finished trials" in text and "diverged_nan 4" in text
    # round_bins: 4 of 8 diverged, Wilson [0.2152, 0.7848]
    assert "| spp_impl | round_bins | 8 | 4/8 (50%, [22%, 78%])" in text
    assert "| spp_impl | floor_ceil | 8 | 8/8 (100%, [68%, 100%]) | 0 |" in text
    assert (
        sum(line.startswith("| learning_rate |") for line in text.splitlines()) == 3
    )  # quartile bins (two merge: 8 equal values), not 10 rows
    assert "spp_impl = round_bins and image_size = 16 -> diverged_nan in 4/4 trials" in text
    assert "- failure (failed / not failed): learning_rate" in text  # confounded here: lr 0.01 <=> round_bins
    assert "Importance: PED-ANOVA" in text and "on 16 finished trials" in text  # the method and its count
    assert "**Unreliable at this count**" in text  # 16 < 30
    assert "| trial | outcome | val acc | spp_impl | image_size | learning_rate | MLflow run |" in text
    for name in ("report.html", "outcome_shares.png", "accuracy_per_level.png", "loss_curves.png"):
        assert (path.parent / name).stat().st_size > 0
    html = (path.parent / "report.html").read_text()
    assert "<table>" in html and "<style>" in html and "border-collapse" in html


@pytest.mark.parametrize(
    "rows",
    [[("floor_ceil", 64, 0.01, "ok", 0.7)], [("round_bins", 16, 0.01, "diverged_nan", None)] * 3],
    ids=["single_trial", "only_failures"],
)
def test_report_says_what_it_cannot_conclude(tmp_path, rows):
    text = write_report(_study(tmp_path, rows), None, tmp_path / "out").read_text()
    assert "**not tested**" in text  # the built-in data held no inconsistent bands, no BGR images
    row = next(line for line in text.splitlines() if line.startswith("| 3b."))
    assert "**not tested**" in row and "3b needs images whose band count differs" in row
    if len(rows) == 1:
        assert "Too few trials to conclude anything" in text
    else:
        assert "validation accuracy: cannot compute" in text


def test_a_trial_recorded_before_a_factor_existed_is_read_at_its_default(tmp_path):
    """A trial whose recorded factors lack one the report reads (a study from before that factor
    was added) made ``report`` stop with ``KeyError: 'spp_impl'``."""
    study = optuna.create_study(study_name="old", storage=f"sqlite:///{tmp_path}/o.db", direction="maximize")
    for value in (0.5, 0.7):
        trial = study.ask()
        trial.set_user_attr("outcome", "ok")
        trial.set_user_attr("factors", {"levels": [1, 2]})
        study.tell(trial, value)
    text = write_report(study, None, tmp_path / "out").read_text()
    assert "2 finished trials" in text


def test_studies_side_by_side_count_trials_and_epochs(tmp_path):
    """The engine comparison: trials, epochs trained (the compute budget), best and outcomes."""
    main = _study(tmp_path, ROWS, epochs=3)
    other = _study(tmp_path, [("floor_ceil", 16, 0.01, "ok", 0.95)] * 2 + [ROWS[0]], name="other", epochs=1)
    text = write_report(main, None, tmp_path / "out", compare=[other]).read_text()
    assert "| fab | optuna tpe | 16 | 48 | 0.9000 | 9 | 12 / 0 / 4 |" in text
    assert "| other | optuna tpe | 3 | 3 | 0.9500 | 1 | 2 / 0 / 1 |" in text
    assert (tmp_path / "out" / "best_so_far.png").stat().st_size > 0


def test_paper_comparison_gives_intervals_and_the_seeds_a_1_point_difference_needs():
    """Hand-computed: arms 2 points apart, each with SD 2 points over 3 seeds. Welch: se 1.633,
    df 4, t 2.776 -> +2.00 [-2.53, +6.53]; a 1-point difference at SD 2 is effect size 0.5,
    which needs the textbook 64 seeds per arm for 80% power at 5%."""
    from spp_search.results.paper import paper_comparison

    def arm(name, errors):
        return [{"arm": name, "outcome": "ok", "value": 1 - e} for e in errors]

    frame = pd.DataFrame(
        arm("no_spp", [0.38, 0.40, 0.42])
        + arm("spp_single_size", [0.36, 0.38, 0.40])
        + arm("spp_multi_size", [0.35, 0.37, 0.39])
        + arm("global_pool", [0.58, 0.60, 0.62])
    )
    text = "\n".join(paper_comparison(frame))
    assert "| no_spp | 3 | 40.00 [35.03, 44.97] | 35.99 |" in text
    assert "| global_pool | 3 | 60.00" in text and "not in the paper" in text
    assert "error(no_spp) - error(spp_single_size) = +2.00 points [95% CI -2.53, +6.53] (includes 0)" in text
    assert "paper +1.01 points; resolving a 1-point difference (80% power) needs 64 seeds per arm" in text
    assert "error(global_pool) - error(spp_single_size) = +22.00 points" in text
    assert "**Ordering reproduced** on this data: no_spp 40.00 > spp_single_size 38.00 > spp_multi_size 37.00" in text


def test_a_best_trial_not_above_chance_is_called_so_with_its_interval(tmp_path):
    """Issue 25: 0.5 on 18 validation images (3 classes of 6) is within chance (1/3): Wilson's
    95% interval of 9/18 is [0.29, 0.71]. 0.9 on 18 is not (its lower bound is 0.69)."""
    split = {"val_images": 18, "val_majority_share": 1 / 3}
    rows = [("floor_ceil", 16, 0.001 * (i + 1), "ok", 0.5) for i in range(3)]
    text = write_report(_study(tmp_path, rows, split=split), None, tmp_path / "out").read_text()
    assert "**The best trial is not above chance**: val accuracy 0.5000 on 18 validation images" in text
    assert "(95% interval 0.290-0.710) does not exclude 0.333" in text
    rows = [("floor_ceil", 16, 0.001, "ok", 0.9)]
    text = write_report(_study(tmp_path, rows, name="good", split=split), None, tmp_path / "good").read_text()
    assert "not above chance" not in text
    text = write_report(_study(tmp_path, rows, name="old"), None, tmp_path / "old").read_text()
    assert "not above chance" not in text  # recorded without its split: no verdict
