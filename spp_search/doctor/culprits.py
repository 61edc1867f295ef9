"""The culprits a diagnosis can name: one table, each with the symptoms it explains, what points
at it before any training, and the one change (an arm) that must make the model train.

A culprit is named only when the user's own setup fails over seeds and its arm trains over seeds
(``verdict.py``). The table's order is the order of preference when several arms train: the
culprits with specific evidence first (a float16 layer before a learning rate, which any
divergence suggests). ``Findings`` is what the diagnosis knows before the arms run: the data check,
the static probe of the model (``probe.py``) and the symptom of the user's own setup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# symptoms: an outcome of the taxonomy (trial.outcomes), or `at_chance` (trained, but no better
# than guessing), or `ok` (trains above chance)
DIVERGED = ("diverged_nan", "diverged_explosion")
SHAPE = ("shape_error", "crash")  # a shape error inside a user's own layer code can be a crash


@dataclass
class Findings:
    """What the diagnosis knows when it chooses the arms to run."""

    symptom: str  # the user's setup, over its seeds: the commonest outcome, or at_chance / ok
    factors: dict  # the user's setup, as resolved factors
    probe: dict = field(default_factory=dict)  # probe.probe's record
    bands: list[int] = field(default_factory=list)  # band counts in the folder (data check)
    unreadable: int = 0  # unreadable files in the folder
    declared_bgr: int = 0  # files the folder declares BGR (channel_order.json)
    model_bands: int = 3
    errors: list[str] = field(default_factory=list)  # the user's setup's error messages

    @property
    def head(self) -> dict | None:
        return self.probe.get("head")


@dataclass(frozen=True)
class Culprit:
    """One culprit of the vocabulary (the JSON ``culprit`` of a diagnosis)."""

    symptoms: tuple[str, ...]  # what it can explain
    suspected: Callable[[Findings], bool]  # the findings point at it (before any arm runs)
    arms: Callable[[Findings], list[dict]]  # the one change(s) that must make it train, in order
    fix: str  # the change, in words, for the verdict
    typical: str  # its typical symptom, in words


def _lr(findings: Findings) -> list[dict]:
    """A short range test: the learning rate / 10, / 100, / 1000."""
    lr = float(findings.probe.get("learning_rate") or findings.factors["learning_rate"])
    return [{"learning_rate": float(f"{lr / 10**k:.7g}")} for k in (1, 2, 3)]


def _exact_spp(findings: Findings) -> list[dict]:
    levels = tuple((findings.head or {}).get("levels") or (1, 2, 4))
    return [{"user_head": "exact_spp", "levels": levels}]


def _smaller(findings: Findings) -> list[dict]:
    """A quarter of the batch, then a sixteenth, then half the image size (at one fixed size)."""
    batch, size = int(findings.factors["batch_size"]), int(findings.factors["image_size"])
    ladder = [{"batch_size": max(1, batch // 4)}, {"batch_size": max(1, batch // 16)}]
    return [*ladder, {"input_policy": "fixed", "image_size": max(8, size // 2)}]


def _has_head(kind: str) -> Callable[[Findings], bool]:
    return lambda f: (f.head or {}).get("kind") == kind


def _layer_bins(f: Findings) -> bool:
    """The probe saw non-finite pooled features, a length that changes with the size, or a
    failure at some sizes, from a head that is not a plain Flatten."""
    broken = f.probe.get("nonfinite_sizes") or f.probe.get("lengths_vary") or f.probe.get("errors")
    return bool(broken) and (f.head or {}).get("kind") != "flatten"


STATIC_WORDS = ("statically known", "must be static", "fully defined", "should be defined")


def _static(f: Findings) -> bool:
    """The probe, or the user's setup, failed on spatial sizes unknown while tracing."""
    texts = [f.probe.get("static_shape_error") or "", *f.errors]
    return any(w in text.lower() for text in texts for w in STATIC_WORDS)


CULPRITS: dict[str, Culprit] = {
    "layer_bins": Culprit(
        (*DIVERGED, *SHAPE),
        _layer_bins,
        _exact_spp,
        "replace the pooling head with the exact SPP layer (model.user_head: exact_spp)",
        "-inf/NaN or an output length that changes on small or odd feature maps",
    ),
    "layer_static_shape": Culprit(
        SHAPE,
        _static,
        lambda f: [*_exact_spp(f), {"input_policy": "fixed"}],
        "replace the pooling head with the exact SPP layer, or train at one fixed size",
        "the head needs spatial sizes known while tracing (None height/width fails)",
    ),
    "head_fixed_size": Culprit(
        SHAPE,
        _has_head("flatten"),
        lambda f: [{"input_policy": "fixed"}, *_exact_spp(f)],
        "train at one fixed size (input_policy: fixed), or use an SPP head",
        "a Flatten/Dense head meets a second input size",
    ),
    "precision": Culprit(
        DIVERGED,
        lambda f: bool(f.probe.get("float16")) or f.factors["mixed_precision"] == "mixed_float16",
        lambda f: [{"user_dtype": "float32", "mixed_precision": "float32"}],
        "compute in float32",
        "inf/NaN only under float16",
    ),
    "learning_rate": Culprit(
        DIVERGED,
        lambda f: True,
        _lr,
        "a smaller learning rate",
        "the loss explodes or becomes NaN in the first epochs",
    ),
    "channel_count": Culprit(
        ("data_error",),
        lambda f: len(set(f.bands)) > 1 or any(b != f.model_bands for b in f.bands),
        lambda f: [{"channel_policy": "pad_missing"}],
        "reconcile the band counts (channel_policy: pad_missing)",
        "a batch of mixed 1/3/4-band images",
    ),
    "unreadable_data": Culprit(
        ("data_error",),
        lambda f: f.unreadable > 0,
        lambda f: [{"channel_policy": "skip_unreadable"}],
        "leave the unreadable files out (channel_policy: skip_unreadable, or data.on_unreadable: skip)",
        "a file that cannot be decoded",
    ),
    "channel_order": Culprit(
        ("at_chance", "ok"),
        lambda f: f.declared_bgr > 0 and f.factors["channel_order"] != "normalize",
        lambda f: [{"channel_order": "normalize"}],
        "make the channel order consistent (channel_order: normalize)",
        "accuracy low, no crash; part of the data stored BGR",
    ),
    "memory": Culprit(
        ("oom_host", "oom_gpu"),
        lambda f: True,
        _smaller,
        "a smaller batch (a quarter, a sixteenth), or half the image size",
        "the worker runs out of memory (or past its budget)",
    ),
}
VERDICTS = (*CULPRITS, "none", "unknown")


def every_arm(findings: Findings) -> dict[str, dict]:
    """Every arm a diagnosis might run, named ``culprit:step``: declared up front, so that the
    study's derived space (and its fingerprint) is the same at every stage."""
    return {f"{name}:{i}": arm for name, c in CULPRITS.items() for i, arm in enumerate(c.arms(findings))}
