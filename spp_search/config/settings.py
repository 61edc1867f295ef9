"""One frozen, validated ``StudyConfig`` from an experiment YAML file plus command-line overrides.

A config file has these sections, each optional; unknown keys fail with the list of valid ones::

    study:    {name, trials, seed, steps, evaluations, epochs, sampler, pruner, storage, tracking_uri, device}
    data:     {source, val_fraction, split_seed, synthetic: {num_images, num_classes, ...}}
    defaults: {<factor>: value}      # every factor not searched; see factors.py
    space:    {<factor>: parameter}  # the searched factors; see space.py
    enqueue:  [{<factor>: value}]    # configurations tried first (the sampler fills the rest)

An exported best configuration has the same sections plus ``result`` (what it achieved), so it
can be given back to ``--config``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from spp_search.backends import AUTO, BACKENDS
from spp_search.config.ablation import arms, space_for
from spp_search.config.choices import DEVICES, ENGINES, ISOLATIONS, PRUNERS, SAMPLERS, TUNERS
from spp_search.config.factors import check_factor, default_factors
from spp_search.config.schedule import DEFAULT_EVALUATIONS, DEFAULT_STEPS, Budget, check_epochs, one_budget
from spp_search.config.space import SearchSpace
from spp_search.data.corruption import CorruptionSpec
from spp_search.data.datacheck import ON_UNREADABLE
from spp_search.data.digits import DigitsSpec
from spp_search.data.images import class_folders
from spp_search.data.loading import BUILT_IN
from spp_search.data.synthetic import SyntheticSpec
from spp_search.infra.checks import SEED_MAX, check_numbers, numeric
from spp_search.infra.errors import ConfigError, must
from spp_search.model.user import split_spec

TRIALS_MAX = 10_000  # a study's total: each trial is a row in the storage and a run in MLflow
WORKERS_MAX = 64  # per driver; placement also allows at most WORKERS_PER_CORE per CPU core
NAME_MAX = 100  # a study name is a folder of the report, an MLflow experiment and an Optuna study
UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
SECTIONS = ("study", "data", "model", "defaults", "space", "enqueue", "ablation", "result")


def parse_bytes(name: str, text: str) -> int | None:
    """``"4GiB"`` -> 4294967296; ``"none"`` -> None. Units: B, KB, MB, GB, KiB, MiB, GiB."""
    if text.strip().lower() in ("none", "off", "0"):
        return None
    number = text.strip().rstrip("bBiIkKmMgG")
    unit = text.strip()[len(number) :].lower()
    try:
        value = float(number) * UNITS[unit]
    except (ValueError, KeyError):
        value = -1
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(must(name, "be a size like 4GiB or 512MiB, or none", text, "Fix the value."))
    return int(value)


def check_study_name(name: object) -> str:
    """A study name every store accepts: Optuna and MLflow names, and the report's folder name
    (``reports/<name>``) on any file system: at most ``NAME_MAX`` printable characters, no path
    separators, not starting with a dot or a space. Quotes are fine: no name enters a query."""
    fix = f"Use letters, digits, '-', '_' or '.', at most {NAME_MAX} characters, e.g. spp-default."
    ok = isinstance(name, str) and 0 < len(name) <= NAME_MAX and name.isprintable()
    ok = ok and not any(c in name for c in "/\\") and not name.startswith((".", " ")) and not name.endswith(" ")
    if not ok:
        shown = name if not isinstance(name, str) or len(name) <= 40 else f"{name[:40]}... ({len(name)} characters)"
        rule = f"be 1-{NAME_MAX} printable characters without '/' or '\\', not starting with '.'"
        raise ConfigError(must("study-name", rule, shown, fix))
    return name


@dataclass(frozen=True)
class StudySettings:
    """How the study runs. ``trials`` is the study's total, not this invocation's."""

    name: str = "spp-default"
    trials: int = numeric(50, 1, TRIALS_MAX, f"Use e.g. 50 trials (at most {TRIALS_MAX}).")
    seed: int = numeric(0, 0, SEED_MAX, "Use a seed like 0.")
    steps: int = numeric(DEFAULT_STEPS, 1, 10_000_000, f"Use e.g. {DEFAULT_STEPS} optimizer steps per trial.")
    evaluations: int = numeric(DEFAULT_EVALUATIONS, 1, 1000, "Use e.g. 3 validations per trial.")
    epochs: int | None = None  # set: a budget of that many passes instead of ``steps``
    sampler: str = "tpe"
    pruner: str = "median"
    storage: str = "sqlite:///optuna.db"
    tracking_uri: str = "sqlite:///mlflow.db"
    device: str = "auto"
    isolation: str = "process"
    host_memory_budget: str = "none"
    gpu_memory_budget: str = "none"
    trial_timeout: float = numeric(1800.0, 0, None, "Use seconds, e.g. 1800 (0 = off).")
    max_retries: int = numeric(2, 0, 10, "E.g. 2 (0 = no retries); a configuration that crashed 10 times will again.")
    workers: int = numeric(0, 0, WORKERS_MAX, f"Use 0 (auto) or a count up to {WORKERS_MAX}.")
    failure_feedback: bool = True
    engine: str = "optuna"
    tuner: str = "bayesian"
    backend: str = "auto"

    @property
    def budget(self) -> Budget:
        """Each trial's training budget: ``steps`` (validated ``evaluations`` times), or
        ``epochs`` passes when that is set (``config/schedule.py``)."""
        return Budget.of_epochs(self.epochs) if self.epochs else Budget(self.steps, self.evaluations)

    def to_dict(self) -> dict:
        """The settings, with only the budget in use: ``steps`` and ``evaluations``, or ``epochs``."""
        unused = ("steps", "evaluations") if self.epochs else ("epochs",)
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in unused}

    def __post_init__(self) -> None:
        check_numbers(self)
        check_epochs(self.epochs)
        parse_bytes("host_memory_budget", self.host_memory_budget)
        parse_bytes("gpu_memory_budget", self.gpu_memory_budget)
        if self.isolation == "inline" and self.workers > 1:
            raise ConfigError(
                must(
                    "workers",
                    "be >= 0 (0 = auto), and 1 with isolation inline",
                    self.workers,
                    "Use --isolation process for several workers.",
                )
            )
        if self.isolation == "inline" and self.host_memory_budget != "none":
            raise ConfigError(
                must(
                    "host_memory_budget",
                    "be none with isolation inline",
                    self.host_memory_budget,
                    "Use --isolation process to enforce it.",
                )
            )
        checks = (
            ("sampler", SAMPLERS),
            ("pruner", PRUNERS),
            ("device", DEVICES),
            ("isolation", ISOLATIONS),
            ("engine", ENGINES),
            ("tuner", TUNERS),
            ("backend", (AUTO, *BACKENDS)),
        )
        for name, options in checks:
            if getattr(self, name) not in options:
                raise ConfigError(must(name, f"be one of {list(options)}", getattr(self, name), "Pick one."))
        check_study_name(self.name)


@dataclass(frozen=True)
class DataSettings:
    """Where images come from: ``synthetic`` (generated), ``digits`` (real handwritten digits,
    ``digits.py``) or a folder path; what to do with unreadable files; how they are split."""

    source: str = "synthetic"
    on_unreadable: str = "skip"
    val_fraction: float = 0.25
    split_seed: int = numeric(0, 0, SEED_MAX, "Use a seed like 0.")
    bands: int = numeric(3, 1, None, "Use 3 for RGB.")
    cache_dir: str = ".spp_cache"
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)
    digits: DigitsSpec = field(default_factory=DigitsSpec)
    corruption: CorruptionSpec = field(default_factory=CorruptionSpec)

    def __post_init__(self) -> None:
        check_numbers(self)
        ok = isinstance(self.val_fraction, float) and math.isfinite(self.val_fraction)
        if not ok or not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(must("val_fraction", "be between 0 and 1", self.val_fraction, "Use 0.25."))
        if self.on_unreadable not in ON_UNREADABLE:
            fix = "Use skip (leave them out, with a warning), error (stop first) or keep (the channel policy decides)."
            raise ConfigError(must("on_unreadable", f"be one of {list(ON_UNREADABLE)}", self.on_unreadable, fix))
        if self.source not in BUILT_IN:
            class_folders(Path(self.source))  # fails now, not in the first trial

    def for_trial(self) -> dict:
        """The plain dict a trial process needs to load the data."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelSettings:
    """The user's own model (``model/user.py``), or none: spp-search's network (``model/network.py``).

    ``builder``: ``pkg.module:function`` or ``path/to/file.py:function``; ``file``: a saved
    ``.keras`` model, with ``custom_objects``, the module that defines its custom layers.
    """

    builder: str = ""
    file: str = ""
    custom_objects: str = ""

    def __post_init__(self) -> None:
        if self.builder and self.file:
            fix = "Give one of them: a builder function or a .keras file."
            raise ConfigError(must("model", "name a builder or a file, not both", self.builder, fix))
        if self.builder:
            split_spec(self.builder)
        if self.file and (not self.file.endswith(".keras") or not Path(self.file).is_file()):
            fix = "Point it at a model saved with model.save('model.keras')."
            raise ConfigError(must("model.file", "be an existing .keras file", self.file, fix))
        if self.custom_objects and not self.file:
            fix = "A builder's module imports its own layers; custom_objects goes with model.file."
            raise ConfigError(must("model.custom_objects", "go with model.file", self.custom_objects, fix))

    @property
    def given(self) -> bool:
        return bool(self.builder or self.file)

    def for_trial(self, set_factors: tuple[str, ...]) -> dict | None:
        """What a trial needs to build the model (None: spp-search's own). ``set_factors``: the
        factors the config sets (defaults, space, arms): a builder's parameter with a default of
        its own gets a factor only when the config sets it, and a compiled model keeps its own
        learning rate unless the config sets one."""
        if not self.given:
            return None
        return {
            **dataclasses.asdict(self),
            "set_factors": list(set_factors),
            "keeps_learning_rate": "learning_rate" not in set_factors,
        }


@dataclass(frozen=True)
class StudyConfig:
    """A validated experiment: how it runs, its data, every factor's value, the searched space.

    ``ablation`` is the section as written (kept for ``to_dict``); ``arms`` and ``repeats`` are
    what it means, parsed once (``ablation.arms``), and ``space`` is then derived from the arms.
    """

    study: StudySettings
    data: DataSettings
    defaults: dict
    space: SearchSpace
    ablation: dict | None = None
    enqueue: tuple[dict, ...] = ()
    arms: tuple = ()
    repeats: int = 0
    model: ModelSettings = field(default_factory=ModelSettings)
    set_factors: tuple[str, ...] = ()  # the factors the config sets: defaults, space, ablation arms

    @property
    def lr_given(self) -> bool:
        """The config sets or searches ``learning_rate`` (it overrides a compiled model's)."""
        return "learning_rate" in self.set_factors

    def model_for_trial(self) -> dict | None:
        return self.model.for_trial(self.set_factors)

    def to_dict(self) -> dict:
        defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in self.defaults.items()}
        return {
            "study": self.study.to_dict(),
            "data": {**dataclasses.asdict(self.data)},
            "defaults": defaults,
            "space": self.space.to_dict(),
            **({"model": dataclasses.asdict(self.model)} if self.model.given else {}),
            **({"enqueue": [dict(e) for e in self.enqueue]} if self.enqueue else {}),
            **({"ablation": self.ablation} if self.ablation else {}),
        }


def _section(cls, values: object, where: str):
    """Build dataclass ``cls`` from a mapping, failing on unknown keys or wrong types."""
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise ConfigError(must(where, "be a mapping", values, "Indent its keys under it."))
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            must(
                f"{where}.{unknown[0]}",
                f"be one of the keys {sorted(fields)}",
                unknown[0],
                "Remove or rename it.",
            )
        )
    kwargs = {}
    defaults = cls()
    for key, value in values.items():
        expected = type(getattr(defaults, key))
        if expected is type(None):  # an optional setting (``study.epochs``): its class checks it
            pass
        elif dataclasses.is_dataclass(expected):
            value = _section(expected, value, f"{where}.{key}")
        elif expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise ConfigError(must(f"{where}.{key}", f"be of type {expected.__name__}", value, "Fix the value."))
        kwargs[key] = value
    return cls(**kwargs)


def read_file(path: Path) -> dict:
    """Parse a YAML (or JSON) config safely; a clear error for a missing or broken file."""
    if not path.is_file():
        raise ConfigError(must("config", "be an existing file", str(path), "Check the path."))
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        fix = "Pass a YAML file (e.g. experiments/default.yaml), not a binary one."
        raise ConfigError(
            must("config", "be UTF-8 text (YAML)", f"{path} (byte {exc.start} is not text)", fix)
        ) from None
    except OSError as exc:
        raise ConfigError(must("config", "be readable", str(path), f"{exc.strerror}: check its permissions.")) from None
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"`config` {path} is not valid YAML: {_yaml_problem(exc)}. Fix the file.") from None
    if raw is None:
        fix = "Write at least a `study:` section (see experiments/default.yaml), or leave --config out for the default."
        raise ConfigError(must("config", "hold a mapping of sections", f"{path} (empty)", fix))
    if not isinstance(raw, dict):
        raise ConfigError(must("config", "hold a mapping of sections", type(raw).__name__, "See README."))
    return raw


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's complaint in one line, with the line it points at."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem is None:
        return " ".join(str(exc).split())
    return f"{problem} (line {mark.line + 1})" if mark is not None else problem


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML says keys are unique;
    PyYAML keeps the last silently, so a second ``study:`` block would replace the first)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges, it does not repeat a key
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping: keep one", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def build_config(raw: dict, overrides: dict | None = None) -> StudyConfig:
    """Merge ``overrides`` (CLI values, None = not given) into ``raw`` and validate everything."""
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(must("config section", f"be one of {list(SECTIONS)}", unknown[0], "Remove it."))
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    one_budget(raw.get("study"), overrides or {})
    for key, value in (overrides or {}).items():
        if value is not None:
            section, name = key.split(".")
            raw.setdefault(section, {})
            raw[section][name] = value
    study = _section(StudySettings, raw.get("study"), "study")
    data = _section(DataSettings, raw.get("data"), "data")
    given = raw.get("defaults") or {}
    if not isinstance(given, dict):
        raise ConfigError(must("defaults", "be a mapping of factor -> value", given, "See README."))
    defaults = default_factors()
    for name, value in given.items():
        defaults[name] = check_factor(name, value)
    ablation, configs, repeats = raw.get("ablation"), [], 0
    if ablation is not None:
        configs, repeats = arms(ablation)
        derived = space_for(configs, defaults)
        if raw.get("space") and raw["space"] != derived:  # a stored config holds the derived space
            raise ConfigError(must("space", "be absent in an ablation (it is derived)", "space", "Remove it."))
        study = dataclasses.replace(study, trials=len(configs) * repeats, pruner="none")
        raw = {**raw, "space": derived}
    space = SearchSpace.from_dict(raw.get("space"))
    enqueue = raw.get("enqueue")
    if enqueue is not None:
        space.enqueued_params(enqueue)  # validates; the config keeps the entries as written
    enqueue = tuple(dict(e) for e in enqueue or ())
    if enqueue and (ablation is not None or study.engine != "optuna"):
        fix = "Remove it: an ablation lists its own configurations, and KerasTuner cannot enqueue."
        used = "an ablation" if ablation is not None else f"engine {study.engine}"
        raise ConfigError(must("enqueue", "go with a search on the optuna engine", used, fix))
    if len(enqueue) > study.trials:
        fix = f"List at most {study.trials} or raise study.trials."
        raise ConfigError(must("enqueue", f"hold at most study.trials = {study.trials} entries", len(enqueue), fix))
    model = _section(ModelSettings, raw.get("model"), "model")
    set_factors = tuple(sorted({*given, *space.names, *(k for a in configs for k in a.overrides)}))
    return StudyConfig(study, data, defaults, space, ablation, enqueue, tuple(configs), repeats, model, set_factors)


def load_config(path: Path | None, overrides: dict | None = None) -> StudyConfig:
    """The study's config: the file at ``path`` (or built-in defaults) plus CLI overrides."""
    return build_config(read_file(path) if path else {}, overrides)


CHECKOUT_EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def shipped_experiment(name: str = "default.yaml") -> Path | None:
    """An experiment shipped with spp-search: from the installed package (``spp_search.experiments``,
    the wheel's copy of ``experiments/``), else from the source checkout (an editable install)."""
    from importlib.resources import files

    try:
        path = Path(str(files("spp_search.experiments") / name))
    except ModuleNotFoundError:
        path = CHECKOUT_EXPERIMENTS / name
    return path if path.is_file() else None
