"""A user's own model, in a study or a diagnosis: a builder function or a saved ``.keras`` file.

A config's ``model`` section names it (``config/settings.py``, ``ModelSettings``):

* ``builder: "pkg.module:function"`` or ``builder: "path/to/file.py:function"``: a function that
  returns a Keras model. It receives, as keyword arguments, the trial's factors it declares (for
  example ``levels``, ``pooling``, ``width``, ``image_size``) and ``bands`` and ``num_classes``;
  parameters with defaults it may leave to themselves.
* ``file: model.keras``: a saved model; ``custom_objects: pkg.module`` names the module that
  defines its custom layers. Its architecture and compile settings are used; its weights are
  initialised afresh for each trial's seed (``keras.models.clone_model``), as a builder's are.

A compiled model keeps its optimizer, learning rate and loss (``compile_settings``); a
``learning_rate`` the config sets overrides it. ``user_head: exact_spp`` replaces the model's
pooling head with :class:`~spp_search.model.layers.SpatialPyramidPooling2D` at the ``levels``
factor, and ``user_dtype: float32`` computes it in float32 (``anatomy.py``). Everything here
imports Keras when used (it runs in a trial's worker), except ``split_spec``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

from spp_search.infra.errors import ConfigError, must
from spp_search.model.anatomy import (
    as_float32,
    ends_in_logits,
    head_of,
    input_bands,
    replace_head,
    static_size,
    uses_float16,
)

EXTRAS = ("bands", "num_classes")  # what a builder may declare besides factors
# the factors that shape a network: a user's model takes those its builder declares, no others


MODEL_FACTORS = ("levels", "pooling", "width", "dense_units", "spp_impl", "head", "input_shape")


def split_spec(spec: str) -> tuple[str, str]:
    """``"pkg.mod:fn"`` or ``"file.py:fn"`` -> (module or file, function); a one-line error otherwise."""
    where, _, name = spec.rpartition(":")
    if not where or not name.isidentifier():
        fix = "Write pkg.module:function or path/to/file.py:function."
        raise ConfigError(must("model.builder", "be MODULE:FUNCTION", spec, fix))
    return where, name


def import_builder(spec: str):
    """The builder function ``spec`` names, imported (a file path is loaded as a module of its own)."""
    where, name = split_spec(spec)
    try:
        if where.endswith(".py"):
            path = Path(where).resolve()
            if not path.is_file():
                raise ConfigError(must("model.builder", "name an existing .py file", where, "Check the path."))
            module_name = f"spp_search_user_{abs(hash(str(path)))}"
            loader = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(loader)
            sys.modules[module_name] = module
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module: any error is theirs, said in one line
        fix = "Fix the module, or check that it is importable from here (PYTHONPATH)."
        raise ConfigError(must("model.builder", f"import ({type(exc).__name__}: {exc})", spec, fix)) from None
    builder = getattr(module, name, None)
    if not callable(builder):
        raise ConfigError(must("model.builder", f"name a function of {where}", spec, f"It has no `{name}`."))
    return builder


def accepted(builder, factor_names) -> tuple[str, ...]:
    """The factors (and ``bands``/``num_classes``) ``builder`` declares; a one-line error for a
    required parameter that is neither."""
    known = (*factor_names, *EXTRAS)
    names = []
    for param in inspect.signature(builder).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name in known:
            names.append(param.name)
        elif param.default is param.empty:
            fix = f"Give it a default, or name a factor: {sorted(known)}."
            raise ConfigError(must("model.builder", "take only factors as required arguments", param.name, fix))
    return tuple(names)


def load_file(path: str, custom_objects: str = ""):
    """A saved ``.keras`` model, with the custom layers of module ``custom_objects``; a one-line
    error naming a class Keras cannot find."""
    import keras

    objects = {}
    if custom_objects:
        try:
            module = importlib.import_module(custom_objects)
        except Exception as exc:  # noqa: BLE001
            fix = "Name an importable module that defines the model's custom layers."
            raise ConfigError(
                must("custom_objects", f"import ({type(exc).__name__}: {exc})", custom_objects, fix)
            ) from None
        objects = {k: v for k, v in vars(module).items() if isinstance(v, type) or callable(v)}
    try:
        return keras.saving.load_model(path, custom_objects=objects, compile=True, safe_mode=False)
    except (TypeError, ValueError) as exc:
        missing = _missing_class(str(exc))
        if missing:
            fix = "Pass --custom-objects pkg.module (config: model.custom_objects), the module that defines it."
            raise ConfigError(
                must("model.file", f"load: it uses the custom class `{missing}`, not found", path, fix)
            ) from None
        raise ConfigError(
            must("model.file", f"load ({type(exc).__name__}: {str(exc)[:300]})", path, "Check the file.")
        ) from None


def _missing_class(message: str) -> str | None:
    import re

    match = re.search(r"Could not locate (?:class|function) '([\w.>]+)'", message) or re.search(
        r"Unknown (?:layer|object): '?([\w.>]+)'?", message
    )
    return match.group(1) if match else None


@dataclass(frozen=True)
class Compiled:
    """What a compiled user model was compiled with (None fields: not compiled, or not known)."""

    optimizer: dict | None = None  # keras.optimizers.serialize(...)
    learning_rate: float | None = None
    loss: dict | str | None = None
    from_logits: bool = False


def compile_settings(model) -> Compiled:
    """The optimizer, learning rate and loss a user's model was compiled with."""
    import keras

    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return Compiled()
    loss = getattr(model, "loss", None)
    from_logits = bool(getattr(loss, "from_logits", False)) or bool(
        isinstance(loss, keras.losses.Loss) and loss.get_config().get("from_logits")
    )
    lr = optimizer.learning_rate
    try:
        learning_rate = float(f"{float(keras.ops.convert_to_numpy(lr)):.7g}")  # 0.001, not float32 noise
    except Exception:  # noqa: BLE001 - a schedule: no one number
        learning_rate = None
    serialized_loss = loss if isinstance(loss, str) or loss is None else keras.losses.serialize(loss)
    return Compiled(keras.optimizers.serialize(optimizer), learning_rate, serialized_loss, from_logits)


def build(model: dict, factors: dict, bands: int, num_classes: int):
    """The user's model for one trial (its weights fresh for the trial's seed), with the head
    replaced when ``user_head`` says so; ``model`` is ``ModelSettings.for_trial``."""
    import keras

    if model.get("builder"):
        builder = import_builder(model["builder"])
        values = {**factors, "bands": bands, "num_classes": num_classes}
        given = set(model.get("set_factors", factors)) | set(EXTRAS)
        kwargs = {n: _plain(values[n]) for n in accepted(builder, factors) if n in given or _required(builder, n)}
        built = builder(**kwargs)
        if not isinstance(built, keras.Model):
            fix = "Return a keras.Model (Sequential or functional)."
            raise ConfigError(must("model.builder", "return a keras.Model", type(built).__name__, fix))
    else:
        loaded = load_file(model["file"], model.get("custom_objects", ""))
        built = keras.models.clone_model(loaded)  # fresh weights for this trial's seed
        if getattr(loaded, "optimizer", None) is not None:
            built.compiled_with = compile_settings(loaded)
    if factors.get("user_head") == "exact_spp":
        compiled = getattr(built, "compiled_with", None) or compile_settings(built)
        built = replace_head(built, tuple(factors["levels"]), factors["pooling"])
        built.compiled_with = compiled
    return built


def builder_defaults(model: dict, factor_names) -> dict:
    """The defaults a builder gives the factors it declares (a diagnosis trains the user's model
    as they wrote it: these are its setup, not spp-search's factor defaults)."""
    if not model.get("builder"):
        return {}
    builder = import_builder(model["builder"])
    params = inspect.signature(builder).parameters
    return {
        n: _plain(params[n].default)
        for n in accepted(builder, factor_names)
        if n not in EXTRAS and params[n].default is not inspect.Parameter.empty
    }


def _required(builder, name: str) -> bool:
    return inspect.signature(builder).parameters[name].default is inspect.Parameter.empty


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def for_trial(model: dict, factors: dict, bands: int, num_classes: int):
    """(model, optimizer recording its gradient norm, outputs are logits) for one trial.

    A compiled model keeps its optimizer and its learning rate, unless the config sets or
    searches ``learning_rate`` (``keeps_learning_rate`` false); an uncompiled one trains with the
    ``optimizer`` and ``learning_rate`` factors. ``user_dtype: float32`` recomputes it in float32.
    """
    import keras

    from spp_search.model.network import make_optimizer, with_grad_norm

    built = build(model, factors, bands, num_classes)
    check_output(built, num_classes)
    compiled = getattr(built, "compiled_with", None) or compile_settings(built)
    if factors.get("user_dtype") == "float32":
        built = as_float32(built)  # compiled settings already read
    if compiled.optimizer is None:
        optimizer = make_optimizer(factors["optimizer"], float(factors["learning_rate"]))
    else:
        optimizer = keras.optimizers.deserialize(compiled.optimizer)
        if not (model.get("keeps_learning_rate") and compiled.learning_rate is not None):
            optimizer = keras.optimizers.deserialize(
                {
                    **compiled.optimizer,
                    "config": {**compiled.optimizer["config"], "learning_rate": float(factors["learning_rate"])},
                }
            )
        optimizer = with_grad_norm(optimizer)
    logits = compiled.from_logits if compiled.loss is not None else ends_in_logits(built)
    return built, optimizer, logits


def check_output(model, num_classes: int) -> None:
    """A one-line error when the model's output is not one score per class."""
    shape = model.output_shape if not isinstance(model.output_shape, list) else None
    if shape is None or len(shape) != 2 or shape[-1] != num_classes:
        fix = f"End the model in Dense({num_classes}) (the data has {num_classes} classes)."
        raise ConfigError(must("model", f"output one score per class ({num_classes})", shape, fix))


def describe(model: dict, factors: dict, bands: int, num_classes: int, factor_names: list[str]) -> dict:
    """What a study needs to know of a user's model before its first trial, as plain data (run in
    a worker, on the study's backend): the factors it takes, its input size and bands, how it was
    compiled, its pooling head. A one-line ``ConfigError`` for a model the study cannot train."""
    import keras

    keras.utils.set_random_seed(0)
    accepts = accepted(import_builder(model["builder"]), factor_names) if model.get("builder") else ()
    built = build(model, factors, bands, num_classes)
    check_output(built, num_classes)
    if input_bands(built) not in (None, bands):
        fix = f"Build it with {bands} input bands, or set data.bands."
        raise ConfigError(must("model", f"take the data's {bands} bands", input_bands(built), fix))
    compiled = getattr(built, "compiled_with", None) or compile_settings(built)
    head = head_of(built)
    return {
        "name": built.name,
        "source": model.get("builder") or model.get("file"),
        "accepts": [name for name in accepts if name not in EXTRAS],
        "static_size": static_size(built),
        "compiled": compiled.optimizer is not None,
        "optimizer": (compiled.optimizer or {}).get("class_name"),
        "learning_rate": compiled.learning_rate,
        "params": int(built.count_params()),
        "head": None if head is None else {**head.__dict__},
        "float16": uses_float16(built),
    }
