"""``spp-search doctor``: why does THIS model fail to train on THIS folder? One culprit, with evidence.

1. The data check (``data.datacheck``) and the static probe of the model (``probe.py``, in a
   worker): its pooling head on every size the data will give, unknown spatial sizes, memory.
2. The user's own setup, reproduced as an ablation arm (``baseline``) over seeds: isolated
   trials, classified by the outcome taxonomy, tracked in MLflow like any study.
3. The suspects (``culprits.CULPRITS``: those whose symptoms match and that the findings point
   at), one change per arm, over the same seeds; a learning rate is range-tested (/10, /100,
   /1000), a memory blow-up tried at a quarter of the batch then half the image size, each next
   step only while the previous one did not train and the time budget lasts.
4. The verdict (``verdict.decide``), a fix as a config ``spp-search train --config`` accepts,
   ``diagnosis.json`` and ``diagnosis.md`` in ``--out``, the same on the study's MLflow parent run.

The arms run through the study machinery unchanged (an ablation config, ``study.loop.run_study``):
the diagnosis is one more consumer of the trial loop, the taxonomy and tracking. One class holds
a diagnosis' state through its stages (about 350 lines with them).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from spp_search import backends
from spp_search.backends.devices import resolve_device
from spp_search.config.settings import ModelSettings, StudyConfig, build_config
from spp_search.data import datacheck
from spp_search.data.preprocessing import PAPER_RATIO, bucket_sides_of
from spp_search.doctor import writeup
from spp_search.doctor.culprits import CULPRITS, Findings, every_arm
from spp_search.doctor.options import Options, check_options, model_settings
from spp_search.doctor.verdict import Arm, Seed, decide, symptom
from spp_search.doctor.writeup import fix_config
from spp_search.infra.errors import ConfigError, must
from spp_search.infra.process import quiet_libraries
from spp_search.infra.storage import load_study
from spp_search.study import budget
from spp_search.study.loop import run_study
from spp_search.trial.placement import make_runners

VAL_FRACTION = 0.25


def diagnose(model, data, **options) -> dict:
    """Diagnose ``model`` (see ``model_settings``) on the image folder ``data``; the record
    ``diagnosis.json`` holds. Options: the fields of :class:`Options`."""
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(Options)})
    if unknown:
        names = [f.name for f in dataclasses.fields(Options)]
        raise ConfigError(must("option", f"be one of {names}", unknown[0], "Check the spelling."))
    opts = Options(**{**options, "out": Path(options.get("out", Options.out))})
    quiet_libraries()
    return Diagnosis(model_settings(model, opts.custom_objects), Path(data), opts).run()


class Diagnosis:
    """One diagnosis: its data, model, study, runners and arms (see the module docstring)."""

    def __init__(self, model: ModelSettings, data: Path, opts: Options) -> None:
        check_options(opts)
        self.model, self.data, self.opts = model, data, opts
        self.start = time.perf_counter()
        self.check = datacheck.check_folder(data)
        datacheck.require(self.check, "keep")
        self.classes = len([c for c in self.check.classes if self.check.usable(c)])
        self.chance = 1.0 / self.classes
        self.n_val = sum(max(1, round(len(self.check.usable(c)) * VAL_FRACTION)) for c in self.check.classes)
        self.declared_bgr = _declared_bgr(data)
        opts.out.mkdir(parents=True, exist_ok=True)
        self.name = opts.study_name or f"doctor-{_stem(model)}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        self.log = (opts.out / "trials.log").open("w")

    # -- set-up ----------------------------------------------------------------------------------
    def run(self) -> dict:
        backend = backends.require(backends.resolve(self.opts.backend))
        device, gpus = resolve_device(self.opts.device, backend)
        base = self._config({}, backend)
        runners = make_runners(base, device, gpus, backend)
        try:
            findings = self._probe(runners[0], base)
            config = self._config(findings.probe, backend, every_arm(findings))
            return self._diagnose(config, findings, runners, device)
        finally:
            for runner in runners:
                runner.close()
            self.log.close()

    def _setup(self, probe: dict) -> dict:
        """The user's own training setup as factor values (the baseline arm)."""
        probe = probe or {}
        static = probe.get("static_size")
        size = self.opts.image_size or (static[0] if static else 64)
        policy = self.opts.input_policy or ("fixed" if static else "variable_bucketed")
        setup = {
            **probe.get("builder_defaults", {}),  # the user's model as they wrote it
            "input_policy": policy,
            "image_size": size,
            "channel_policy": self.opts.channel_policy,
            "batch_size": self.opts.batch_size,
            "jit_compile": "auto",
        }
        learning_rate = self.opts.learning_rate or probe.get("learning_rate")  # given, else the compiled model's
        if learning_rate is not None:
            setup["learning_rate"] = float(learning_rate)
        return setup

    def _config(self, probe: dict, backend: str, arms: dict | None = None) -> StudyConfig:
        """The diagnosis as an ablation config: the baseline (the user's setup) and ``arms``."""
        o = self.opts
        raw = {
            "study": {
                "name": self.name,
                "epochs": o.epochs,
                "seed": 0,
                "storage": o.storage or f"sqlite:///{(o.out / 'diagnosis.db').resolve()}",
                "tracking_uri": o.tracking_uri,
                "device": o.device,
                "backend": backend,
                "workers": o.workers or min(os.cpu_count() or 1, 2),
                "host_memory_budget": o.host_memory_budget,
                "gpu_memory_budget": o.gpu_memory_budget,
                "trial_timeout": max(30.0, o.time_budget / 2),
                "max_retries": 0,
                "failure_feedback": True,
            },
            "data": {
                "source": str(self.data),
                "on_unreadable": "keep",
                "val_fraction": VAL_FRACTION,
                "bands": int((probe or {}).get("bands") or 3),  # the model's input bands
            },
            "model": {k: v for k, v in dataclasses.asdict(self.model).items() if v},
            "defaults": self._setup(probe),
            "ablation": {"repeats": o.seeds, "arms": {"baseline": {}, **(arms or {})}},
        }
        return build_config(raw)

    def _probe(self, runner, config: StudyConfig) -> Findings:
        """The static probe, in a worker: the model on every size the data will give."""
        probe = runner.call(
            "spp_search.doctor.probe:probe",
            {
                "model": config.model_for_trial(),
                "factors": config.defaults,
                "bands": config.data.bands,
                "num_classes": self.classes,
                "sizes": [[8, 8]],
                "batch_size": self.opts.batch_size,
            },
        )
        setup = self._setup(probe)
        budget_bytes = _bytes(self.opts.host_memory_budget)
        probe = runner.call(
            "spp_search.doctor.probe:probe",
            {
                "model": config.model_for_trial(),
                "factors": {**config.defaults, **setup},
                "bands": config.data.bands,
                "num_classes": self.classes,
                "sizes": self._sizes(setup),
                "batch_size": self.opts.batch_size,
                "budget_bytes": budget_bytes,
            },
        )
        bands = sorted({r.bands for r in self.check.usable()})
        return Findings(
            symptom="",
            factors={**config.defaults, **setup},
            probe=probe,
            bands=bands,
            unreadable=len(self.check.unreadable()),
            declared_bgr=self.declared_bgr,
            model_bands=int(probe.get("bands") or 3),
        )

    def _sizes(self, setup: dict) -> list[list[int]]:
        """The input sizes the data will give under ``setup``'s policy (smallest first)."""
        size, policy = int(setup["image_size"]), setup["input_policy"]
        if policy == "fixed":
            return [[size, size]]
        if policy == "multi_size":
            return sorted([[size, size], [round(size * PAPER_RATIO)] * 2])
        usable = self.check.usable()
        import numpy as np

        sides = bucket_sides_of(np.array([s for r in usable for s in (r.height, r.width)]))
        if policy == "variable_padded":
            sides = tuple(sorted({*sides, max(max(r.height, r.width) for r in usable)}))
        return sorted([[h, w] for h in sides for w in sides], key=lambda s: s[0] * s[1])

    # -- arms ------------------------------------------------------------------------------------
    def _diagnose(self, config: StudyConfig, findings: Findings, runners: list, device: str) -> dict:
        baseline = self._stage(config, runners, device, [Arm("baseline", {})])[0]
        findings.symptom = symptom(baseline, self.chance, self.n_val)
        findings.errors = [s.error for s in baseline.seeds if s.error]
        ladders = self._suspects(findings)
        tried: list[Arm] = []
        step = 0
        while ladders and not self._over_budget():
            stage = [Arm(f"{n}:{step}", ladder[step], n) for n, ladder in ladders.items() if step < len(ladder)]
            if not stage:
                break
            tried += self._stage(config, runners, device, stage)
            if any(a.trains(self.chance, self.n_val) for a in tried):
                break
            step += 1
        verdict = decide(baseline, tried, self.chance, self.n_val)
        record = self._record(config, findings, baseline, tried, verdict)
        writeup.write(record, self.opts.out, config)
        return record

    def _suspects(self, findings: Findings) -> dict[str, list[dict]]:
        """Per culprit whose symptoms match, its ladder of arms; the findings' suspects only,
        unless none is suspected (then every culprit of the symptom)."""
        sick = findings.symptom
        matching = {n: c for n, c in CULPRITS.items() if sick in c.symptoms}
        if sick == "ok":
            matching = {n: c for n, c in matching.items() if c.suspected(findings)}
        suspected = {n: c for n, c in matching.items() if c.suspected(findings)} or matching
        return {name: culprit.arms(findings) for name, culprit in suspected.items()}

    def _stage(self, config: StudyConfig, runners: list, device: str, arms: list[Arm]) -> list[Arm]:
        """Run ``arms`` (declared in ``config``'s ablation) over the seeds, as trials of the
        diagnosis' study; each stage tops the study up by its trials."""
        import optuna
        from rich.console import Console

        from spp_search.study.lifecycle import open_study

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = open_study(config)
        existing = len(study.get_trials(deepcopy=False))
        parsed = tuple(a for a in config.arms if a.name in {arm.name for arm in arms})
        budget.enqueue_arms(study, parsed, self.opts.seeds, config.defaults, config.space.names)
        total = existing + len(parsed) * self.opts.seeds
        config = dataclasses.replace(config, study=dataclasses.replace(config.study, trials=total))
        run_study(config, runners, device, Console(file=self.log, width=120), None)
        study = load_study(config.study.name, config.study.storage)
        return [self._results(study, a, config) for a in arms]

    def _results(self, study, arm: Arm, config: StudyConfig) -> Arm:
        for trial in budget.counted_trials(study):
            if trial.user_attrs.get("arm") != arm.name:
                continue
            outcome = budget.outcome_of(trial)
            arm.seeds.append(
                Seed(
                    outcome,
                    trial.value if outcome == "ok" else None,
                    trial.user_attrs.get("error_message", ""),
                    trial.user_attrs.get("failed_step"),
                    _last_loss(config.study.tracking_uri, trial.user_attrs.get("mlflow_run_id")),
                )
            )
        return arm

    def _over_budget(self) -> bool:
        return time.perf_counter() - self.start > self.opts.time_budget

    def _record(self, config, findings: Findings, baseline: Arm, tried: list[Arm], verdict: dict) -> dict:
        chance, n_val = self.chance, self.n_val
        culprit = verdict["culprit"]
        arm = next((a for a in tried if a.name == verdict["arm"]), None)
        fix = None
        if arm is not None:
            fix = fix_config(config, self._setup(findings.probe), arm.overrides)
        failing = next((s for s in baseline.seeds if s.failed_step is not None), None)
        return {
            "culprit": culprit,
            "symptom": findings.symptom,
            "confidence": verdict["confidence"],
            "p_value": verdict["p_value"],
            "backend": config.study.backend,
            "model": config.model.builder or config.model.file,
            "data": str(self.data),
            "evidence": {
                "probe": findings.probe,
                "data": {
                    "classes": self.classes,
                    "usable": len(self.check.usable()),
                    "unreadable": [r.path for r in self.check.unreadable()],
                    "bands": findings.bands,
                    "declared_bgr": self.declared_bgr,
                    "validation_images": n_val,
                    "chance": round(chance, 4),
                },
                "arms": [a.summary(chance, n_val) for a in (baseline, *tried)],
                "first_failure": None
                if failing is None
                else {
                    "step": failing.failed_step,
                    "loss": failing.loss,
                    "outcome": failing.outcome,
                    "error": failing.error,
                },
                "errors": sorted({s.error for s in baseline.seeds if s.error})[:3],
            },
            "fix": fix,
            "why": CULPRITS[culprit].fix if culprit in CULPRITS else None,
            "note": "the change removes the failure, but the model stays near chance on some seeds in "
            f"{config.study.epochs} epochs: train longer"
            if verdict.get("slow")
            else None,
            "setup": self._setup(findings.probe),
            "study": config.study.name,
            "seconds": round(time.perf_counter() - self.start, 1),
            "tried": [a.name for a in tried],
        }


def _last_loss(tracking_uri: str, run_id: str | None) -> float | None:
    """The last training-batch loss a trial logged (its failing step's, for a divergence)."""
    if not run_id:
        return None
    from mlflow import MlflowClient

    try:
        history = MlflowClient(tracking_uri).get_metric_history(run_id, "batch_loss")
    except Exception:  # noqa: BLE001 - evidence is a bonus
        return None
    return float(history[-1].value) if history else None


def _declared_bgr(root: Path) -> int:
    sidecar = root / "channel_order.json"
    if not sidecar.is_file():
        return 0
    try:
        return sum(v == "bgr" for v in json.loads(sidecar.read_text()).values())
    except (OSError, ValueError, AttributeError):
        return 0


def _stem(model: ModelSettings) -> str:
    text = model.builder.rpartition(":")[2] if model.builder else Path(model.file).stem
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)[:40]


def _bytes(text: str) -> int | None:
    from spp_search.config.settings import parse_bytes

    return parse_bytes("host_memory_budget", text)


def command(args: dict) -> int:
    """The ``doctor`` command: the diagnosis, its console verdict, exit 0 (a culprit or ``none``),
    1 (``unknown``); ``args`` are the command's options by name."""
    from spp_search.doctor.writeup import verdict_lines

    names = {f.name for f in dataclasses.fields(Options)}
    options = {k: v for k, v in args.items() if k in names and v is not None}
    record = diagnose(args["model"], args["data"], **options)
    for line in verdict_lines(record):
        print(line)
    out = Path(options.get("out", Options.out))
    print(f"wrote {out / 'diagnosis.md'} and diagnosis.json; MLflow experiment {record['study']}")
    if args.get("json") is not None:
        Path(args["json"]).write_text(json.dumps(record, indent=1, default=str))
    return 1 if record["culprit"] == "unknown" else 0
