"""A Keras model's anatomy: its pooling head, input size, bands and dtypes, found from its graph,
and the two changes a diagnosis makes to it (the head replaced by the exact SPP layer, every
layer in float32). Works on functional and sequential models (a subclassed one has no graph:
``head_of`` says None). Imports Keras; runs in a worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spp_search.infra.errors import ConfigError, must

CLASSIFIER_LAYERS = ("Dense", "Dropout", "Activation", "BatchNormalization", "LayerNormalization", "ReLU", "Softmax")


@dataclass(frozen=True)
class Head:
    """Where a model's pooling head is: the tensor it pools, its layers, the classifier after it."""

    feature_layer: str  # the layer whose 4-D output the head pools (the last feature map)
    layers: tuple[str, ...]  # the head: from the feature map to the classifier's input
    classifier: tuple[str, ...]  # the layers after the head, a chain (Dense, Dropout, ...)
    kind: str  # flatten | global | spp (a layer that pools to a fixed grid) | other
    levels: tuple[int, ...] | None = None  # the pyramid levels the head's layers declare
    classes: tuple[str, ...] = field(default_factory=tuple)  # the head's layer classes


def _producer(model) -> dict[int, object]:
    return {id(layer.output): layer for layer in model.layers if _has_output(layer)}


def _has_output(layer) -> bool:
    try:
        layer.output  # noqa: B018
    except (AttributeError, ValueError):
        return False
    return True


def _inputs(layer) -> list:
    value = layer.input
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _rank(tensor) -> int:
    return len(tensor.shape)


def _levels_of(layer) -> tuple[int, ...] | None:
    """The pyramid levels a layer declares (``levels``, ``pyramid_levels``, ``pool_list``, ...)."""
    config = layer.get_config()
    for key in ("levels", "pyramid_levels", "pool_list", "bins", "bin_sizes", "num_bins", "output_sizes"):
        value = config.get(key, getattr(layer, key, None))
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
            return tuple(int(v) for v in value)
    size = config.get("output_size")
    if isinstance(size, int):
        return (size,)
    if isinstance(size, (list, tuple)) and size and isinstance(size[0], int):
        return (int(size[0]),)
    return None


def head_of(model) -> Head | None:
    """The pooling head of a functional or sequential model, or None where it cannot be found
    (a subclassed model, no 4-D feature map, a classifier that is not a chain)."""
    layers = [layer for layer in model.layers if _has_output(layer)]
    if not layers or len(layers) != len(model.layers):
        return None
    producer = _producer(model)
    first_dense = next((i for i, layer in enumerate(layers) if type(layer).__name__ == "Dense"), None)
    if first_dense is None:
        return None
    before = layers[:first_dense]
    transitions = [layer for layer in before if any(_rank(t) == 4 for t in _inputs(layer)) and _rank(layer.output) == 2]
    if not transitions:
        return None
    feature = _common_feature_map(transitions, producer)
    if feature is None:
        return None
    start = layers.index(feature) + 1
    head = layers[start:first_dense]
    classifier = layers[first_dense:]
    if any(type(layer).__name__ not in CLASSIFIER_LAYERS for layer in classifier):
        return None
    names = [type(layer).__name__ for layer in head]
    levels = next((lv for lv in (_levels_of(layer) for layer in head) if lv), None)
    if all(n in ("Flatten", "Reshape") for n in names):
        kind = "flatten"
    elif all(n.startswith("Global") for n in names if n not in ("Flatten", "Concatenate")) and "Global" in "".join(
        names
    ):
        kind = "global"
    elif levels or any("Adaptive" in n or "Pyramid" in n or "SPP" in n.upper() for n in names):
        kind = "spp"
    else:
        kind = "other"
    adaptive = sorted({lv for layer in head for lv in (_levels_of(layer) or ())})
    if kind == "spp" and not levels and adaptive:
        levels = tuple(adaptive)
    if kind == "spp" and any(n.startswith("Global") for n in names) and levels and 1 not in levels:
        levels = (1, *levels)
    return Head(feature.name, tuple(layer.name for layer in head), tuple(layer.name for layer in classifier), kind,
                levels, tuple(names))  # fmt: skip


def _common_feature_map(transitions: list, producer: dict):
    """The last 4-D tensor every transition's pooling path starts from (a branch of adaptive
    pooling layers starts from the same feature map as a global pooling beside it)."""
    chains = []
    for layer in transitions:
        chain, current = [], layer
        while True:
            sources = [producer.get(id(t)) for t in _inputs(current) if _rank(t) == 4]
            if len(sources) != 1 or sources[0] is None:
                break
            chain.append(sources[0])
            current = sources[0]
        chains.append(chain)
    if not chains or not all(chains):
        return None
    common = [layer for layer in chains[0] if all(layer in chain for chain in chains[1:])]
    if not common:
        return None
    # the nearest common source that is a feature map, not a pooling-to-grid branch
    for layer in common:
        name = type(layer).__name__
        if "Adaptive" not in name and "Pyramid" not in name:
            return layer
    return None


def static_size(model) -> tuple[int, int] | None:
    """The (height, width) a model's input declares, or None when either is unknown."""
    shape = model.input_shape if not isinstance(model.input_shape, list) else model.input_shape[0]
    height, width = shape[1], shape[2]
    return (int(height), int(width)) if height and width else None


def input_bands(model) -> int | None:
    shape = model.input_shape if not isinstance(model.input_shape, list) else model.input_shape[0]
    return shape[-1]


def replace_head(model, levels: tuple[int, ...], pooling: str):
    """``model`` with its pooling head replaced by the exact SPP layer at ``levels``, taking any
    input size; the classifier after it is rebuilt (fresh weights) for the new feature length."""
    import keras

    from spp_search.model.layers import SpatialPyramidPooling2D

    head = head_of(model)
    if head is None:
        fix = "Give the model a functional or sequential graph: feature maps, a pooling head, then Dense layers."
        raise ConfigError(must("user_head", "find the model's pooling head", model.name, fix))
    bands = input_bands(model)
    inputs = keras.Input((None, None, bands), name="image")
    features = keras.Model(model.inputs[0], model.get_layer(head.feature_layer).output)
    rebuilt = keras.models.clone_model(features, input_tensors=inputs)
    x = SpatialPyramidPooling2D(levels, pooling, name="spp_exact")(rebuilt.output)
    for name in head.classifier:
        layer = model.get_layer(name)
        x = type(layer).from_config(layer.get_config())(x)
    return keras.Model(inputs, x, name=f"{model.name}_exact_spp")


def functional(model):
    """A single-input, single-output functional view of ``model`` (a Sequential one too: it has
    ``inputs`` but no ``input``), sharing its layers; ``clone_model`` can give it new inputs."""
    import keras

    return keras.Model(model.inputs[0], model.outputs[0])


def as_float32(model):
    """``model`` with every layer computing in float32 (for a model whose layers use float16)."""
    import keras

    def float32(layer):
        config = layer.get_config()
        config["dtype"] = "float32"
        return type(layer).from_config(config)

    return keras.models.clone_model(model, clone_function=float32)


def uses_float16(model) -> bool:
    """True when a layer of ``model`` computes in float16 (mixed_float16 or float16)."""
    names = [getattr(getattr(layer, "dtype_policy", None), "name", "") for layer in model.layers]
    return any(name in ("float16", "mixed_float16") for name in names)


def ends_in_logits(model) -> bool:
    """True when the model's last layer applies no softmax (or sigmoid): its outputs are logits."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", str(activation or "")).lower()
    if type(last).__name__ in ("Softmax", "Activation") and ("softmax" in name or type(last).__name__ == "Softmax"):
        return False
    return not any(word in name for word in ("softmax", "sigmoid"))
