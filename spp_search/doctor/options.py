"""What a diagnosis is asked to do: its options (the command's, ``diagnose``'s keywords), checked
first, and the user's model as a ``ModelSettings``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from spp_search.config.settings import ModelSettings
from spp_search.infra.errors import ConfigError, must

POLICIES = ("fixed", "multi_size", "variable_bucketed", "variable_padded")
DEFAULT_BATCH, DEFAULT_EPOCHS, DEFAULT_SEEDS, DEFAULT_BUDGET_S = 16, 6, 3, 300.0


@dataclasses.dataclass
class Options:
    """What a diagnosis is asked to do (the command's options, ``diagnose``'s keyword arguments)."""

    input_policy: str | None = None  # default: fixed at the model's static size, else variable_bucketed
    image_size: int | None = None  # default: the model's static size, else 64
    channel_policy: str = "strict"  # as a plain training script would meet the files
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH
    learning_rate: float | None = None  # default: the compiled model's, else spp-search's default
    host_memory_budget: str = "none"
    gpu_memory_budget: str = "none"
    seeds: int = DEFAULT_SEEDS
    time_budget: float = DEFAULT_BUDGET_S
    out: Path = Path("diagnosis")
    tracking_uri: str = "sqlite:///mlflow.db"
    study_name: str | None = None  # default: doctor-<model>-<UTC time>
    storage: str | None = None  # default: sqlite:///<out>/diagnosis.db
    backend: str | None = None
    custom_objects: str = ""
    workers: int = 0
    device: str = "auto"


def model_settings(model, custom_objects: str = "") -> ModelSettings:
    """``--model``: a ``.keras`` file, ``pkg.mod:function``, ``file.py:function``, or (library) a
    function defined in an importable module."""
    if callable(model):
        module = getattr(model, "__module__", "__main__")
        if module in ("__main__", "__mp_main__"):
            fix = "Define the builder in a module (or a file) of its own, and pass 'module:function'."
            raise ConfigError(must("model", "be importable by a worker process", model.__name__, fix))
        return ModelSettings(builder=f"{module}:{model.__qualname__}")
    text = str(model)
    if text.endswith(".keras"):
        return ModelSettings(file=text, custom_objects=custom_objects)
    if ":" not in text:
        fix = "Pass model.keras, pkg.module:function or path/to/file.py:function."
        raise ConfigError(must("model", "name a .keras file or a builder function", text, fix))
    return ModelSettings(builder=text)


def check_options(opts: Options) -> None:
    if opts.input_policy is not None and opts.input_policy not in POLICIES:
        raise ConfigError(must("input-policy", f"be one of {list(POLICIES)}", opts.input_policy, "Pick one."))
    for name in ("epochs", "batch_size", "seeds"):
        value = getattr(opts, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(must(name.replace("_", "-"), "be an integer >= 1", value, "E.g. 3."))
    if not opts.time_budget > 0:
        raise ConfigError(must("time-budget", "be a positive number of seconds", opts.time_budget, "E.g. 300."))
    if opts.image_size is not None and not 4 <= opts.image_size <= 2048:
        raise ConfigError(must("image-size", "be in [4, 2048]", opts.image_size, "E.g. 64."))
