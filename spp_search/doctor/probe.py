"""The static probe: a user's model looked at before any training, on the sizes its data will give.

Runs in a worker process, on the diagnosis' backend (``workers.call``). It builds the model as
a trial would, finds its pooling head (``model.anatomy.head_of``), and feeds it a small batch at
every input size the data will produce under the chosen input policy: does the model take the
size, are the pooled features finite, is their length the same at every size? It also builds
the model with unknown spatial dimensions (what variable sizes need) and estimates the memory of
one training batch at the largest size, against the budgets. Plain data out.
"""

from __future__ import annotations

import math


def _error(exc: BaseException) -> str:
    from spp_search.infra.redaction import redact_cut

    text = " ".join(redact_cut(str(exc), 2000).split())
    return f"{type(exc).__name__}: {text[:400]}"


def probe(
    model: dict,
    factors: dict,
    bands: int,
    num_classes: int,
    sizes: list[list[int]],
    batch_size: int,
    budget_bytes: int | None = None,
) -> dict:
    """The probe's record (see the module docstring); ``sizes``: the (height, width) pairs the
    data will produce, smallest first."""
    import keras
    import numpy as np

    from spp_search.model import anatomy, user

    keras.utils.set_random_seed(0)
    record: dict = {"sizes": sizes, "errors": {}, "lengths": {}, "nonfinite_sizes": []}
    record["builder_defaults"] = user.builder_defaults(model, list(factors))
    try:
        built = user.build(model, factors, bands, num_classes)
    except Exception as exc:  # noqa: BLE001 - the model's own failure is a finding
        record["build_error"] = _error(exc)
        record["static_shape_error"] = _static_words(record["build_error"])
        return record
    compiled = getattr(built, "compiled_with", None) or user.compile_settings(built)
    head = anatomy.head_of(built)
    record.update(
        name=built.name,
        params=int(built.count_params()),
        static_size=anatomy.static_size(built),
        bands=anatomy.input_bands(built),
        float16=anatomy.uses_float16(built),
        compiled=compiled.optimizer is not None,
        learning_rate=compiled.learning_rate,
        head=None if head is None else {**head.__dict__},
    )
    pooled = _pooled_model(built, head)
    rng = np.random.default_rng(0)
    for height, width in sizes:
        key = f"{height}x{width}"
        x = rng.uniform(0, 1, size=(2, height, width, bands)).astype("float32")
        try:
            features = keras.ops.convert_to_numpy(pooled(x, training=False))
        except Exception as exc:  # noqa: BLE001
            record["errors"][key] = _error(exc)
            continue
        record["lengths"][key] = int(features.shape[-1])
        if not np.isfinite(features).all():
            record["nonfinite_sizes"].append(key)
    record["lengths_vary"] = len(set(record["lengths"].values())) > 1
    record["static_shape_error"] = _unknown_sizes_error(built, bands)
    record["memory_mb"] = _memory_mb(built, max(sizes, key=lambda s: s[0] * s[1]), bands, batch_size)
    record["over_budget"] = bool(budget_bytes and record["memory_mb"] * 2**20 > budget_bytes)
    return record


def _pooled_model(built, head):
    """The model up to its classifier's input (the pooled features), or the whole model."""
    import keras

    if head is None:
        return built
    return keras.Model(built.inputs[0], built.get_layer(head.classifier[0]).input)


STATIC_WORDS = ("statically known", "must be static", "fully defined", "should be defined", "None values not supported")


def _static_words(text: str) -> str | None:
    return text if any(w.lower() in text.lower() for w in STATIC_WORDS) else None


def _unknown_sizes_error(built, bands: int) -> str | None:
    """The error building the model with unknown height and width gives (variable sizes need
    it), when it is about static shapes; None when it builds, or cannot be rebuilt at all."""
    import keras

    try:
        from spp_search.model.anatomy import functional

        keras.models.clone_model(functional(built), input_tensors=keras.Input((None, None, bands)))
    except Exception as exc:  # noqa: BLE001
        return _static_words(_error(exc))
    return None


def _memory_mb(built, size, bands: int, batch_size: int) -> float:
    """A training batch's memory at ``size``: every layer's output kept for the backward pass,
    its gradient, and the weights with two optimizer slots (float32); an estimate, not a peak."""
    import keras
    import numpy as np

    try:
        taps = keras.Model(built.inputs[0], [layer.output for layer in built.layers if layer.output is not None])
        outputs = taps(np.zeros((1, *size, bands), "float32"), training=False)
        per_image = sum(math.prod(o.shape[1:]) for o in (outputs if isinstance(outputs, list) else [outputs]))
    except Exception:  # noqa: BLE001 - a model that cannot run at this size: no estimate
        return 0.0
    activations = 2 * 4 * per_image * batch_size  # outputs and their gradients
    weights = 4 * 4 * built.count_params()  # weights, gradients, two Adam slots
    return (activations + weights) / 2**20
