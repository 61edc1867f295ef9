"""Ablation mode: fixed configurations, each repeated over seeds, through the same engine.

The ``ablation`` section of a config gives the configurations in one of three ways (overrides of
``defaults``), plus ``repeats`` (seeds per configuration)::

    ablation:
      repeats: 3
      arms:                       # named configurations
        no_spp: {levels: [1]}
        spp_multi_size: {input_policy: multi_size}
      vary:                       # one factor at a time from the baseline (= defaults)
        levels: [[1], [1, 2]]
      factorial:                  # every combination
        spp_impl: [floor_ceil, round_bins]
        image_size: [16, 64]

Every configuration becomes an Optuna trial enqueued ``repeats`` times (``engines.budget.enqueue_arms``;
trial n trains with seed ``seed + n``), so isolation, the outcome taxonomy, tracking, resume and the report work as in a
search. The search space is derived: one categorical parameter per factor that varies.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from spp_search.config.factors import check_factor, param_text
from spp_search.infra.errors import ConfigError, must

KEYS = ("repeats", "arms", "vary", "factorial")


@dataclass(frozen=True)
class Arm:
    """One configuration of an ablation: a name and its factor overrides."""

    name: str
    overrides: dict


def _overrides(where: str, values: object) -> dict:
    if not isinstance(values, dict):
        raise ConfigError(must(where, "be a mapping of factor -> value", values, "See README."))
    return {k: check_factor(k, v) for k, v in values.items()}


def _value_lists(where: str, values: object) -> dict[str, list]:
    if not isinstance(values, dict) or not all(isinstance(v, list) and v for v in values.values()):
        raise ConfigError(must(where, "map each factor to a non-empty list of values", values, "See README."))
    return {k: [check_factor(k, v) for v in vs] for k, vs in values.items()}


def arms(spec: dict) -> tuple[list[Arm], int]:
    """The ablation's configurations and its repeats, validated."""
    if not isinstance(spec, dict):
        raise ConfigError(must("ablation", "be a mapping", spec, "See README."))
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        raise ConfigError(must(f"ablation.{unknown[0]}", f"be one of {list(KEYS)}", unknown[0], "Remove it."))
    repeats = spec.get("repeats", 3)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(must("ablation.repeats", "be an integer >= 1", repeats, "E.g. 3."))
    named = spec.get("arms") or {}
    out = [Arm(str(name), _overrides(f"ablation.arms.{name}", o)) for name, o in named.items()]
    if spec.get("vary"):
        out.append(Arm("baseline", {}))
        for factor, values in _value_lists("ablation.vary", spec["vary"]).items():
            out += [Arm(f"{factor}={param_text(v)}", {factor: v}) for v in values]
    if spec.get("factorial"):
        grid = _value_lists("ablation.factorial", spec["factorial"])
        for combo in itertools.product(*grid.values()):
            overrides = dict(zip(grid, combo, strict=True))
            out.append(Arm(" ".join(f"{k}={param_text(v)}" for k, v in overrides.items()), overrides))
    if not out:
        raise ConfigError(must("ablation", "define arms, vary or factorial", spec, "See README."))
    return out, repeats


def space_for(configs: list[Arm], defaults: dict) -> dict:
    """A search-space dict with one categorical parameter per factor the arms change."""
    varied: dict[str, dict] = {}
    for arm in configs:
        for factor in arm.overrides:
            varied.setdefault(factor, {})
    for factor, seen in varied.items():
        for arm in configs:
            value = arm.overrides.get(factor, defaults[factor])
            seen[param_text(value)] = list(value) if isinstance(value, tuple) else value
    return {factor: {"choices": list(seen.values())} for factor, seen in varied.items()}
