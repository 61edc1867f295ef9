"""The search space, declared once as data and translated to Optuna (KerasTuner later).

A space maps factor names to parameters, in order::

    levels:        {choices: [[1], [1, 2], [1, 2, 4]]}
    learning_rate: {low: 1.0e-4, high: 0.3, log: true}
    preprocessing: {choices: [resize, letterbox], when: {input_policy: [fixed, multi_size]}}

``choices`` makes a categorical parameter (values may be lists, like pyramid levels); ``low`` and
``high`` a numeric one, integer when the factor is (``step`` and ``log`` optional). ``when`` makes
a parameter conditional on factors declared before it. Every value is checked by its factor.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from spp_search.config.factors import FACTORS, check_factor, param_text, require_factor
from spp_search.infra.errors import ConfigError, must

PARAM_KEYS = ("choices", "low", "high", "log", "step", "when")


@dataclass(frozen=True)
class Param:
    """One searched factor: categorical (``choices``) or numeric (``low``..``high``)."""

    name: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False
    when: dict[str, tuple] = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, ...]:
        """Optuna needs primitive choices: each choice is known by its ``param_text`` label."""
        return tuple(param_text(c) for c in self.choices or ())

    def active(self, factors: dict) -> bool:
        return all(factors.get(k) in allowed for k, allowed in self.when.items())

    def distribution(self):
        """The Optuna distribution of this parameter (choices are known by their labels)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices is not None:
            return CategoricalDistribution(list(self.labels))
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def to_dict(self) -> dict:
        out: dict = {}
        if self.choices is not None:
            out["choices"] = [list(c) if isinstance(c, tuple) else c for c in self.choices]
        else:
            out.update(low=self.low, high=self.high)
            if self.log:
                out["log"] = True
            if self.step is not None:
                out["step"] = self.step
        if self.when:
            out["when"] = {k: list(v) for k, v in self.when.items()}
        return out


def _param(name: str, spec: object, earlier: list[str]) -> Param:
    require_factor(name)
    fix = "Give {choices: [...]} or {low: ..., high: ...}."
    if not isinstance(spec, dict):
        raise ConfigError(must(f"space.{name}", "be a mapping", spec, fix))
    unknown = set(spec) - set(PARAM_KEYS)
    if unknown:
        raise ConfigError(must(f"space.{name}", f"use only keys {list(PARAM_KEYS)}", sorted(unknown), fix))
    when = {}
    for parent, allowed in (spec.get("when") or {}).items():
        if parent not in earlier:
            raise ConfigError(
                must(
                    f"space.{name}.when",
                    "name a factor searched before it",
                    parent,
                    "Declare the parent factor first in `space`.",
                )
            )
        when[parent] = tuple(check_factor(parent, v) for v in allowed)
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(must(f"space.{name}.choices", "be a non-empty list", choices, fix))
        checked = tuple(check_factor(name, c) for c in choices)
        return Param(name, choices=checked, when=when)
    if "low" not in spec or "high" not in spec:
        raise ConfigError(must(f"space.{name}", "have `choices` or both `low` and `high`", spec, fix))
    low, high = check_factor(name, spec["low"]), check_factor(name, spec["high"])
    if not low < high:
        raise ConfigError(must(f"space.{name}.low", "be below high", low, "Swap or widen them."))
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(must(f"space.{name}.low", "be > 0 with log: true", low, "Raise it."))
    integer = isinstance(FACTORS[name].default, int) and not isinstance(FACTORS[name].default, bool)
    return Param(name, low=low, high=high, log=log, step=spec.get("step"), integer=integer, when=when)


@dataclass(frozen=True)
class SearchSpace:
    """Ordered parameters; ``suggest`` turns an Optuna trial into factor values."""

    params: tuple[Param, ...]

    @classmethod
    def from_dict(cls, spec: dict | None) -> SearchSpace:
        spec = spec or {}
        if not isinstance(spec, dict):
            raise ConfigError(must("space", "be a mapping of factor -> parameter", spec, "See README."))
        params: list[Param] = []
        for name, entry in spec.items():
            params.append(_param(name, entry, [p.name for p in params]))
        return cls(tuple(params))

    def to_dict(self) -> dict:
        return {p.name: p.to_dict() for p in self.params}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def suggest(self, trial, defaults: dict) -> dict:
        """Ask an Optuna trial for every active parameter; inactive ones keep their default."""
        factors = dict(defaults)
        for p in self.params:
            if not p.active(factors):
                continue
            if p.choices is not None:
                label = trial.suggest_categorical(p.name, p.labels)
                factors[p.name] = p.choices[p.labels.index(label)]
            elif p.integer:
                step = int(p.step or 1)
                factors[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), step=step, log=p.log)
            else:
                factors[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
        return factors

    def keras_tuner(self, hp) -> None:
        """Declare the space on ``keras_tuner.HyperParameters`` (``when`` becomes a conditional scope)."""
        for p in self.params:
            with contextlib.ExitStack() as scopes:
                for parent, allowed in p.when.items():
                    scopes.enter_context(hp.conditional_scope(parent, [param_text(v) for v in allowed]))
                if p.choices is not None:
                    hp.Choice(p.name, list(p.labels))
                elif p.integer:
                    step = int(p.step or 1)
                    hp.Int(p.name, int(p.low), int(p.high), step=step, sampling="log" if p.log else "linear")
                else:
                    hp.Float(p.name, p.low, p.high, step=p.step, sampling="log" if p.log else "linear")

    def from_keras_tuner(self, hp, defaults: dict) -> tuple[dict, dict]:
        """Factors (and Optuna-style params) of a KerasTuner trial's active hyperparameters."""
        factors, params = dict(defaults), {}
        for p in self.params:
            if not hp.is_active(p.name):
                continue
            value = hp.get(p.name)
            params[p.name] = value
            factors[p.name] = p.choices[p.labels.index(value)] if p.choices is not None else value
        return factors, params

    def enqueued_params(self, entries: object) -> tuple[dict, ...]:
        """Optuna params (labels for categoricals) of the ``enqueue`` section's partial configurations.

        Each entry fixes some searched factors (the sampler picks the rest); a value must be one of
        the parameter's choices or inside its range, so an enqueued trial is one the search could
        have proposed.
        """
        if not isinstance(entries, list):
            raise ConfigError(must("enqueue", "be a list of factor -> value mappings", entries, "See README."))
        by_name = {p.name: p for p in self.params}
        out = []
        for i, entry in enumerate(entries):
            where = f"enqueue[{i}]"
            if not isinstance(entry, dict) or not entry:
                raise ConfigError(must(where, "be a non-empty mapping of factor -> value", entry, "See README."))
            params = {}
            for name, value in entry.items():
                if name not in by_name:
                    fix = f"Use searched factors only: {list(by_name)}."
                    raise ConfigError(must(f"{where}.{name}", "name a factor of `space`", name, fix))
                p, value = by_name[name], check_factor(name, value)
                if p.choices is not None:
                    if param_text(value) not in p.labels:
                        fix = f"Use one of {list(p.labels)}."
                        raise ConfigError(must(f"{where}.{name}", "be one of its choices", value, fix))
                    params[name] = param_text(value)
                else:
                    if not p.low <= value <= p.high:
                        fix = f"Use a value in [{p.low}, {p.high}]."
                        raise ConfigError(must(f"{where}.{name}", "lie in its range", value, fix))
                    params[name] = value
            out.append(params)
        return tuple(out)

    def params_for(self, factors: dict) -> dict:
        """Optuna params (labels for categoricals) that reproduce ``factors``, for enqueueing."""
        out = {}
        for p in self.params:
            if p.active(factors):
                out[p.name] = param_text(factors[p.name]) if p.choices is not None else factors[p.name]
        return out
