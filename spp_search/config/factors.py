"""The factors of a trial: every knob a study may search or hold fixed, with default and check.

One registry serves the config loader (unknown names and bad values fail before training), the
search space (every choice is checked), tracking (each factor is an MLflow param by its name) and
export (a best configuration names every factor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from spp_search.data.channels import CHANNEL_ORDERS, CHANNEL_POLICIES
from spp_search.data.preprocessing import INPUT_POLICIES, PAPER_RATIO, PREPROCESSING, VALUE_SCALINGS
from spp_search.infra.errors import ConfigError, must
from spp_search.model.bins import POOLINGS, validate_levels
from spp_search.model.impls import SPP_IMPLS

# The options of a factor come from the module that implements them, each importable without a
# deep learning backend (the layers, models and pipelines import one when they are used); those
# with no such module are here.
HEADS = ("spp", "flatten")
INPUT_SHAPES = ("auto", "explicit", "none")
OPTIMIZERS = ("adam", "sgd")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
JIT_COMPILE = ("auto", True, False)
FAULTS = ("none", "raise", "allocate", "hang", "sigkill", "sigsegv", "sigfpe")
USER_HEADS = ("keep", "exact_spp")  # a user model (model/user.py): its pooling head, or the exact SPP layer
USER_DTYPES = ("keep", "float32")  # a user model: its layers' dtype policies, or float32 everywhere


@dataclass(frozen=True)
class Factor:
    """A factor's default, a one-line reason, and how a value is checked and normalised."""

    default: object
    why: str
    check: Callable[[str, object], object]


def one_of(options: tuple[str, ...]) -> Callable[[str, object], object]:
    def check(name: str, value: object) -> object:
        if value not in options:
            raise ConfigError(must(name, f"be one of {list(options)}", value, "Pick one of them."))
        return value

    return check


def number(kind: type, low: float, high: float) -> Callable[[str, object], object]:
    def check(name: str, value: object) -> object:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or (kind is int and int(value) != value) or not low <= value <= high:
            rule = f"be {'an integer' if kind is int else 'a number'} in [{low}, {high}]"
            raise ConfigError(must(name, rule, value, "Fix the value in the config."))
        return kind(value)

    return check


def jit_choice(name: str, value: object) -> object:
    """``auto`` (Keras decides: JAX always compiles with XLA, TensorFlow on GPUs), true or false
    (under JAX, false runs each training step eagerly, op by op)."""
    if value not in JIT_COMPILE or (value != "auto" and not isinstance(value, bool)):
        raise ConfigError(must(name, "be auto, true or false", value, "Write auto, true or false."))
    return value


def precision(name: str, value: object) -> object:
    """A Keras dtype policy; ``true``/``false`` of older configs mean mixed_float16/float32."""
    if isinstance(value, bool):
        return "mixed_float16" if value else "float32"
    if value not in PRECISIONS:
        raise ConfigError(must(name, f"be one of {list(PRECISIONS)}", value, "E.g. mixed_bfloat16 on a GPU."))
    return value


def levels(name: str, value: object) -> object:
    try:
        return validate_levels(tuple(value) if isinstance(value, list) else value)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("`levels`", f"`{name}`", 1)) from None


def sides(name: str, value: object) -> object:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(must(name, "be null or a list of sides", value, "E.g. [48, 64, 96]."))
    return tuple(sorted(number(int, 4, 4096)(name, v) for v in value))


FACTORS: dict[str, Factor] = {
    "levels": Factor((1, 2, 4), "the SPP paper's small-net pyramid", levels),
    "pooling": Factor("max", "the paper pools with max", one_of(POOLINGS)),
    "input_policy": Factor("fixed", "the common baseline", one_of(INPUT_POLICIES)),
    "preprocessing": Factor("resize", "what most pipelines do", one_of(PREPROCESSING)),
    "value_scaling": Factor("unit", "pixels / 255", one_of(VALUE_SCALINGS)),
    "image_size": Factor(64, "mid-range of the built-in 32-96 px", number(int, 4, 2048)),
    "multi_size_ratio": Factor(PAPER_RATIO, "the paper's 180/224", number(float, 0.1, 4.0)),
    "bucket_sides": Factor(None, "null: 3 quantiles of the train sizes", sides),
    "learning_rate": Factor(3e-3, "Adam's sweet spot for this net", number(float, 1e-7, 100.0)),
    "batch_size": Factor(32, "fits any trial in ~1 GB on CPU", number(int, 1, 4096)),
    "optimizer": Factor("adam", "robust default", one_of(OPTIMIZERS)),
    "width": Factor(16, "filters of the first conv; x2, x4 after", number(int, 1, 512)),
    "dense_units": Factor(64, "hidden units of the head", number(int, 1, 8192)),
    "jit_compile": Factor("auto", "XLA: JAX always; TensorFlow on GPUs (2-3x slower on CPUs)", jit_choice),
    "mixed_precision": Factor("float32", "mixed float16/bfloat16: a GPU option (slow on CPU)", precision),
    "spp_impl": Factor("floor_ceil", "ours: Appendix A bins, any size", one_of(tuple(SPP_IMPLS))),
    "head": Factor("spp", "spp, or flatten (needs a fixed size)", one_of(HEADS)),
    "input_shape": Factor("auto", "explicit for fixed sizes, None otherwise", one_of(INPUT_SHAPES)),
    "channel_policy": Factor("strict", "bad bands are errors, not silent", one_of(CHANNEL_POLICIES)),
    "channel_order": Factor("as_is", "what most pipelines do", one_of(CHANNEL_ORDERS)),
    "fault": Factor("none", "testing aid: fail on purpose (trial.inject_fault)", one_of(FAULTS)),
    "user_head": Factor("keep", "a user's model keeps its pooling head (exact_spp: ours)", one_of(USER_HEADS)),
    "user_dtype": Factor("keep", "a user's model keeps its layers' dtypes (float32: all float32)", one_of(USER_DTYPES)),
}


def require_factor(name: str) -> Factor:
    """The factor called ``name``; an unknown name fails with the list of valid ones."""
    if name not in FACTORS:
        raise ConfigError(must("factor", f"be one of {sorted(FACTORS)}", name, "Check the spelling."))
    return FACTORS[name]


def check_factor(name: str, value: object) -> object:
    """Validate and normalise one factor value."""
    return require_factor(name).check(name, value)


def default_factors() -> dict[str, object]:
    return {name: factor.default for name, factor in FACTORS.items()}


def resolved(factors: dict) -> dict[str, object]:
    """A trial's complete factors: ``factors`` with every factor it leaves out at its default.

    Every value is checked and normalised (``levels`` as a tuple, ``mixed_precision`` as a dtype
    policy). Code that uses factors indexes the result (``f["width"]``) instead of repeating a default
    beside each use; a factor added to ``FACTORS`` reaches every trial through here.
    """
    return {**default_factors(), **{name: check_factor(name, value) for name, value in factors.items()}}


def param_text(value: object) -> str:
    """A factor value as MLflow param / Optuna label text: lists become ``1,2,4``."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
