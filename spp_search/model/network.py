"""The trial model: a small conv backbone, an SPP (or other) head, and a dense classifier.

Kept small on purpose (~50-350k parameters): a study compares configurations, and hundreds of
trials must fit on two CPU cores. ``width`` scales every conv layer.
"""

from __future__ import annotations

import keras
from keras import ops

from spp_search.model.variants import spp_head


class BatchLoss(keras.metrics.Metric):
    """The loss of the last batch, as a metric: Keras logs only the epoch's running mean per step.

    Divergence must be caught at the step it happens, on every backend, without a backend-specific
    ``train_step``: the metric recomputes the batch's cross-entropy (cheap next to the network).
    """

    def __init__(self, name: str = "batch_loss", from_logits: bool = False, **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.from_logits = from_logits  # a user's model may end in logits (model/user.py)
        self.last = self.add_variable(shape=(), initializer="zeros", name="last")

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        y_pred = ops.cast(y_pred, "float32")
        loss = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits)
        self.last.assign(ops.cast(ops.mean(loss), self.dtype))

    def result(self):
        return ops.convert_to_tensor(self.last)

    def reset_state(self) -> None:
        self.last.assign(0.0)


def with_grad_norm(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """``optimizer`` that also keeps the global gradient norm of its last step in a variable.

    In the manner of Keras' ``LossScaleOptimizer``: the norm is optimizer state (``grad_norm``), so
    it is updated in TensorFlow's stateful step and in JAX's stateless one alike, and read after
    each step with ``backends.runtime().read``. Under ``mixed_float16`` Keras wraps this optimizer
    in a ``LossScaleOptimizer``, which hands it unscaled gradients: the norm is the true one (a
    step the loss scaler skips for non-finite gradients leaves the previous norm).
    """
    base = type(optimizer)

    class GradNorm(base):
        def build(self, variables) -> None:
            super().build(variables)
            self.grad_norm = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="grad_norm")

        def apply(self, grads, trainable_variables=None):
            squares = [ops.sum(ops.square(ops.cast(g, "float32"))) for g in grads if g is not None]
            norm = ops.sqrt(ops.sum(ops.stack(squares))) if squares else ops.convert_to_tensor(0.0)
            result = super().apply(grads, trainable_variables)
            self.grad_norm.assign(norm)
            return result

    GradNorm.__name__ = GradNorm.__qualname__ = f"GradNorm{base.__name__}"
    return GradNorm.from_config(optimizer.get_config())


def grad_norm_variable(model: keras.Model):
    """The ``grad_norm`` variable of a model compiled with ``make_optimizer`` (under a loss scaler too)."""
    optimizer = model.optimizer
    return getattr(optimizer, "inner_optimizer", optimizer).grad_norm


def backbone(inputs: keras.KerasTensor, width: int) -> keras.KerasTensor:
    """Three 3x3 conv blocks, two 2x2 'same' max-pools: a map 1/4 of the input, never empty."""
    x = inputs
    for i, filters in enumerate((width, 2 * width, 4 * width)):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        if i < 2:
            x = keras.layers.MaxPooling2D(2, padding="same", name=f"pool{i}")(x)
    return x


def build_model(
    *,
    bands: int,
    num_classes: int,
    levels: tuple[int, ...],
    pooling: str,
    input_size: tuple[int, int] | None = None,
    width: int = 16,
    dense_units: int = 64,
    spp_impl: str = "floor_ceil",
    head: str = "spp",
    preprocess: keras.layers.Layer | None = None,
) -> keras.Model:
    """Backbone + SPP (or Flatten) + dense head. ``input_size=None``: a ``(None, None, bands)`` input.

    An exported model's ``preprocess`` layer (value scaling) makes it take raw pixel values.
    """
    height, width_px = input_size if input_size is not None else (None, None)
    inputs = keras.Input((height, width_px, bands), name="image")
    features = backbone(inputs if preprocess is None else preprocess(inputs), width)
    if head == "flatten":
        pooled = keras.layers.Flatten(name="flatten")(features)
    else:
        pooled = spp_head(features, spp_impl, levels, pooling)
    hidden = keras.layers.Dense(dense_units, activation="relu", name="hidden")(pooled)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classes", dtype="float32")(hidden)
    return keras.Model(inputs, outputs, name="spp_net")


def model_input_size(factors: dict, policy_size: tuple[int, int] | None) -> tuple[int, int] | None:
    """The model's declared input size: the ``input_shape`` factor, or the policy's (``auto``)."""
    choice = factors["input_shape"]
    if choice == "explicit":
        return (int(factors["image_size"]),) * 2
    return None if choice == "none" else policy_size


def build_trial_model(
    factors: dict,
    bands: int,
    num_classes: int,
    input_size: tuple[int, int] | None,
    preprocess: keras.layers.Layer | None = None,
) -> keras.Model:
    """The model for a trial's resolved factors (``levels``, ``pooling``, ``spp_impl``, ``head``, ...)."""
    return build_model(
        bands=bands,
        num_classes=num_classes,
        levels=tuple(factors["levels"]),
        pooling=factors["pooling"],
        input_size=input_size,
        width=int(factors["width"]),
        dense_units=int(factors["dense_units"]),
        spp_impl=factors["spp_impl"],
        head=factors["head"],
        preprocess=preprocess,
    )


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """The trial's optimizer, recording its gradient norm; SGD gets Nesterov momentum 0.9."""
    if name == "sgd":
        return with_grad_norm(keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True))
    return with_grad_norm(keras.optimizers.Adam(learning_rate))
