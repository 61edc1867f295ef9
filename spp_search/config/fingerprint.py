"""What defines an experiment, so that a study name is only resumed with the same experiment.

A study's *record* is what its trials depend on: the study settings that change results (seed,
epochs, sampler, pruner, failure feedback, engine, tuner), the data settings, every factor's value
(``defaults``), the searched space, the enqueued configurations and the ablation. Not its size,
name, storage, tracking, device, backend, isolation or budgets: workers on a GPU host with JAX
may join a study started with TensorFlow on CPUs.

Upgrade-safe by construction:

* the *fingerprint* hashes only the entries of the record that differ from the built-in defaults,
  so a factor (or setting) added to the code at a default that keeps today's behaviour changes no
  existing fingerprint;
* resuming compares the record with the one the study stored (its ``config`` attribute, which
  every spp-search version wrote), entry by entry: an entry the stored record lacks is accepted
  at its built-in default (a setting added since), every other difference (a searched choice, a
  changed default, another seed) is refused, naming the entries that differ.
"""

from __future__ import annotations

import hashlib
import json

from spp_search.config.settings import StudyConfig, build_config

# study settings that say where and how much a study runs, not what its trials compute
RUN_ONLY = (
    "trials",
    "name",
    "storage",
    "tracking_uri",
    "device",
    "isolation",
    "host_memory_budget",
    "gpu_memory_budget",
    "trial_timeout",
    "max_retries",
    "workers",
    "backend",
)
_MISSING = object()


def record(config: dict) -> dict[str, object]:
    """The experiment's entries, flat (``defaults.levels``, ``data.synthetic.num_images``, ...),
    from a config's ``to_dict()`` or the ``config`` attribute a study stored."""
    data = dict(config.get("data") or {})
    if data.get("source") != "digits":
        data.pop("digits", None)  # the digits task's settings only matter when it is the source
    space = config.get("space") or {}
    entries = {
        "study": {k: v for k, v in (config.get("study") or {}).items() if k not in RUN_ONLY},
        "data": data,
        "defaults": config.get("defaults") or {},
        "space": {**space, "order": list(space)},  # the order carries the `when` conditions
    }
    flat = _flatten(json.loads(json.dumps(entries, default=list)))
    flat["enqueue"] = json.loads(json.dumps(config.get("enqueue") or [], default=list))
    flat["ablation"] = json.loads(json.dumps(config.get("ablation"), default=list))
    flat["model"] = config.get("model")  # the user's own model, if any
    return flat


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """Nested settings as dotted keys; a searched parameter stays one entry (``space.levels``)."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not name.startswith("space."):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def builtin() -> dict[str, object]:
    """The record of a config that sets nothing: every built-in default."""
    return record(build_config({}).to_dict())


def fingerprint(config: StudyConfig) -> str:
    """A short hash of the entries of ``config``'s record that differ from the built-in defaults."""
    base, entries = builtin(), record(config.to_dict())
    changed = {k: v for k, v in entries.items() if base.get(k, _MISSING) != v}
    return hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:16]


def differences(stored: dict, current: StudyConfig) -> list[str]:
    """The entries in which ``current`` differs from the study whose stored config is ``stored``,
    as ``name (old -> new)``; empty when the study may resume."""
    old, new, base = record(stored), record(current.to_dict()), builtin()
    out = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, _MISSING), new.get(key, _MISSING)
        if before == after or (before is _MISSING and after == base.get(key, _MISSING)):
            continue
        out.append(f"{key} ({_short(before)} -> {_short(after)})")
    return out


def _short(value: object) -> str:
    text = "unset" if value is _MISSING else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
