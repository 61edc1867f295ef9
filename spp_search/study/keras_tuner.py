"""The KerasTuner engine: the same space, trials, isolation, outcomes and tracking, KerasTuner's search.

``--engine keras-tuner --tuner random|bayesian|hyperband``. The declarative space is declared on
``keras_tuner.HyperParameters`` (``SearchSpace.keras_tuner``; ``when`` becomes a conditional
scope), so there is no second copy of it. Each trial runs through the same runner (worker
process, budgets) and is classified by the same taxonomy; outcomes reach KerasTuner as:

* ``ok``: the validation accuracy; ``diverged_*``: 0.0 (as the Optuna engine's pruned value);
* deterministic failures: ``FailedTrialError`` (KerasTuner does not retry them);
* ``crash`` / ``timeout``: a plain exception, which KerasTuner retries (``max_retries``);
* ``config_error``: ``FatalError``, which stops the search.

``max_consecutive_failed_trials`` is raised to the study's size (KerasTuner's default of 3 would
end a failure-heavy study early). Every trial is also recorded in the Optuna storage (same
attributes as an Optuna trial, ``engine = keras-tuner``), so ``report`` and ``export-best`` work
unchanged. Resume: KerasTuner reloads its project directory (``kt_projects/<study>``).
Hyperband trains each of its trials from scratch for ``tuner/epochs`` validation rounds of the
study's budget (``Budget.first_rounds``; no checkpoint reuse).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras_tuner as kt
import optuna
from optuna.trial import TrialState, create_trial

from spp_search.config.settings import StudyConfig
from spp_search.infra.redaction import redact_cut
from spp_search.infra.storage import exclusive
from spp_search.study import budget
from spp_search.study.lifecycle import StudySummary, close_study, describe, open_study, resumed, start_tracking
from spp_search.study.progress import StudyProgress
from spp_search.study.recording import diverged_at, failure_attrs, recorded_state, wants_retry
from spp_search.study.seeding import trial_seed
from spp_search.study.tracking import Tracker
from spp_search.trial.run import TrialResult, TrialSpec


class _Reporter:
    """Logs epochs to MLflow; KerasTuner has no pruner of its own to consult."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker, self.run_id, self.values = tracker, run_id, {}

    def epoch_end(self, epoch: int, metrics: dict[str, float]) -> bool:
        self.tracker.log_epoch(self.run_id, epoch, metrics)
        self.values[epoch] = metrics["val_accuracy"]
        return False


def make_oracle(config: StudyConfig, hp: kt.HyperParameters) -> kt.Oracle:
    """KerasTuner's oracle for ``--tuner``, stopping at the study's ``trials`` like the others.

    Hyperband has no ``max_trials`` argument: one iteration of it is only a handful of trials
    (6 for 3 epochs), so it runs as many iterations as the budget allows and stops at ``trials``
    through the base oracle's ``max_trials`` check.
    """
    s = config.study
    common = dict(
        objective=kt.Objective("val_accuracy", "max"),
        seed=s.seed,
        hyperparameters=hp,
        max_retries_per_trial=s.max_retries,
        max_consecutive_failed_trials=s.trials + 1,
    )
    if s.tuner == "hyperband":
        oracle = kt.oracles.HyperbandOracle(max_epochs=s.budget.rounds, factor=3, hyperband_iterations=None, **common)
        oracle.max_trials = s.trials
        return oracle
    if s.tuner == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(max_trials=s.trials, **common)
    return kt.oracles.RandomSearchOracle(max_trials=s.trials, **common)


class SppTuner(kt.Tuner):
    """A KerasTuner whose trials are spp-search trials (no hypermodel: ``run_trial`` trains)."""

    def __init__(self, config, study, tracker, runner, device, progress, **kwargs) -> None:
        self.config, self.study, self.tracker = config, study, tracker
        self.runner, self.device, self.progress = runner, device, progress
        self.last_record: dict[str, int] = {}  # KerasTuner trial id -> Optuna number of its last attempt
        super().__init__(**kwargs)

    def run_trial(self, trial, *args, **kwargs):
        config = self.config
        factors, params = config.space.from_keras_tuner(trial.hyperparameters, config.defaults)
        full = config.study.budget  # Hyperband's resource is validation rounds of it
        rounds = int(trial.hyperparameters.values.get("tuner/epochs", full.rounds))
        trial_budget = full.first_rounds(rounds) if rounds != full.rounds else full
        number = len(self.study.get_trials(deepcopy=False))
        seed = trial_seed(config, number)
        run_id = self.tracker.start_trial(
            number,
            factors,
            {
                "seed": seed,
                **trial_budget.params(),
                "device": self.device,
                "backend": config.study.backend,
                "engine": "keras-tuner",
                "kt_trial_id": trial.trial_id,
            },
        )
        reporter = _Reporter(self.tracker, run_id)
        start = time.perf_counter()
        spec = TrialSpec(
            number,
            factors,
            config.data.for_trial(),
            trial_budget,
            seed,
            self.device,
            backend=config.study.backend,
            model=config.model_for_trial(),
        )
        try:
            result = self.runner.run(spec, reporter)
        except BaseException:  # interrupted (Ctrl-C, the worker could not start): close its run
            self.tracker.kill_trial(run_id, budget.INTERRUPTED)
            raise
        attempt = self._attempts(trial.trial_id) + 1
        retried = wants_retry(result, attempt, config.study.max_retries)
        self._record(trial.trial_id, factors, params, result, reporter.values, run_id)
        self.tracker.end_trial(run_id, result, {"engine": "keras-tuner", "retried": str(retried).lower()})
        self.progress.trial_done(number, result, time.perf_counter() - start, describe(factors, config.space.names))
        return self._verdict(result)

    def _attempts(self, trial_id: str) -> int:
        """Attempts of KerasTuner trial ``trial_id`` recorded so far."""
        return sum(t.user_attrs.get("kt_trial_id") == trial_id for t in self.study.get_trials(deepcopy=False))

    @staticmethod
    def _verdict(result: TrialResult) -> dict:
        """The result as KerasTuner understands it, from the outcome's ``record`` (module docstring)."""
        kind = result.outcome.kind
        if kind.record == "complete":
            return {"val_accuracy": float(result.value)}
        if kind.record == "pruned":
            return {"val_accuracy": 0.0}
        message = f"{result.outcome.value}: {redact_cut(result.error_message, 300)}"
        if kind.fatal or kind.host:  # a bad configuration, or the host failing (a full disk): stop
            raise kt.errors.FatalError(message)
        if kind.retry:
            raise RuntimeError(message)  # KerasTuner retries a plain exception
        raise kt.errors.FailedTrialError(message)

    def _record(self, trial_id, factors, params, result, values, run_id) -> None:
        """Mirror the trial into the Optuna storage, so report and export-best read it."""
        attrs = {
            "factors": json.loads(json.dumps(factors, default=list)),
            "mlflow_run_id": run_id,
            "engine": "keras-tuner",
            "kt_trial_id": trial_id,
            budget.ATTEMPT: self._attempts(trial_id) + 1,
        }
        if trial_id in self.last_record:
            attrs[budget.RETRY_OF] = self.last_record[trial_id]
        self.study.add_trial(mirrored_trial(self.config, params, result, values, attrs))
        self.last_record[trial_id] = len(self.study.get_trials(deepcopy=False)) - 1


def mirrored_trial(config: StudyConfig, params: dict, result: TrialResult, values: dict, attrs: dict):
    """A KerasTuner trial as a finished Optuna trial, recorded as the Optuna engine records its own
    (``recorded_state``: the same state, constraint and intermediate values for each outcome), so
    the report and its importances see the same states whichever engine ran."""
    state, constraints = recorded_state(result, config.study.failure_feedback)
    values = dict(values)
    key = diverged_at(result, state, config.study.budget)
    if key is not None:
        values.setdefault(key, 0.0)
    dists = {p.name: p.distribution() for p in config.space.params if p.name in params}
    return create_trial(
        params=params,
        distributions=dists,
        value=result.value if state is TrialState.COMPLETE else None,
        state=state,
        intermediate_values=values,
        user_attrs={**failure_attrs(result), **attrs},
        constraints=constraints or None,
    )


def run_keras_tuner(
    config: StudyConfig, runners: list, device: str, console, project_dir: Path, data_check: dict | None = None
) -> StudySummary:
    """Run (or resume) the study with KerasTuner; trials are tracked and mirrored as with Optuna."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with exclusive(config.study.storage, f"start:{config.study.name}"):  # as the Optuna engine
        study = open_study(config)
        config = resumed(study, config)  # a study made with epochs goes on with them
        extra = {"engine": "keras-tuner", "tuner": config.study.tuner}
        tracker = start_tracking(study, config, device, data_check, extra)
        closed = tracker.close_orphans(set())  # one KerasTuner driver per study: a RUNNING trial run is an orphan
    if closed:
        console.print(f"closed {closed} MLflow run(s) left running by an interrupted run")
    hp = kt.HyperParameters()
    config.space.keras_tuner(hp)
    start, status = time.perf_counter(), "FAILED"
    total = config.study.trials
    try:
        with StudyProgress(
            console,
            total,
            min(budget.counted(study), total),
            f"{config.study.name} (keras-tuner {config.study.tuner}, {device}, {config.study.backend})",
        ) as progress:
            tuner = SppTuner(
                config,
                study,
                tracker,
                runners[0],
                device,
                progress,
                oracle=make_oracle(config, hp),
                directory=str(project_dir),
                project_name=config.study.name,
                overwrite=False,
            )
            tuner.search()
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        summary = close_study(study, tracker, console, config.space.names, status, start, config.study.storage)
    return summary
