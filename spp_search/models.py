"""The trial model: a small conv backbone, an SPP (or other) head, and a dense classifier.

Kept small on purpose (~50-350k parameters): a study compares configurations, and hundreds of
trials must fit on two CPU cores. ``width`` scales every conv layer.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from spp_search.variants import spp_head

HEADS = ("spp", "flatten")
INPUT_SHAPES = ("auto", "explicit", "none")


class StabilityModel(keras.Model):
    """A functional model whose train step also returns the batch loss and gradient global norm.

    Keras reports only the epoch's running mean loss per batch; divergence must be caught at the
    step it happens, and gradient-norm spikes need the norm. The Python body of ``train_step`` runs
    once per trace, so ``traced_shapes`` counts the input shapes compiled ``fit`` traced.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.traced_shapes: list[tuple] = []

    def train_step(self, data):
        x, y = data[0], data[1]
        self.traced_shapes.append(tuple(x.shape))
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
            self._loss_tracker.update_state(loss, sample_weight=tf.shape(x)[0])
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.trainable_weights)
        # mixed precision scales the loss: report the true norm (scale_loss(1) is the scale)
        norm = tf.linalg.global_norm(grads) / tf.cast(self.optimizer.scale_loss(1.0), tf.float32)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=False))
        logs = self.compute_metrics(x, y, y_pred)
        return {**logs, "batch_loss": loss, "grad_norm": norm}


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
    model_class: type = StabilityModel,
) -> keras.Model:
    """Backbone + SPP (or Flatten) + dense head. ``input_size=None``: a ``(None, None, bands)`` input.

    Training uses ``StabilityModel``; an exported model is a plain ``keras.Model`` whose
    ``preprocess`` layer (value scaling) makes it take raw pixel values.
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
    return model_class(inputs, outputs, name="spp_net")


def model_input_size(factors: dict, policy_size: tuple[int, int] | None) -> tuple[int, int] | None:
    """The model's declared input size: the ``input_shape`` factor, or the policy's (``auto``)."""
    choice = factors.get("input_shape", "auto")
    if choice == "explicit":
        return (int(factors["image_size"]),) * 2
    return None if choice == "none" else policy_size


def build_trial_model(
    factors: dict, bands: int, num_classes: int, input_size: tuple[int, int] | None, **kwargs
) -> keras.Model:
    """The model for a trial's factors (``levels``, ``pooling``, ``spp_impl``, ``head``, ...)."""
    return build_model(
        **kwargs,
        bands=bands,
        num_classes=num_classes,
        levels=tuple(factors["levels"]),
        pooling=factors["pooling"],
        input_size=model_input_size(factors, input_size),
        width=int(factors.get("width", 16)),
        dense_units=int(factors.get("dense_units", 64)),
        spp_impl=factors.get("spp_impl", "floor_ceil"),
        head=factors.get("head", "spp"),
    )


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """The trial's optimizer; SGD gets Nesterov momentum 0.9, the usual CNN setting."""
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    return keras.optimizers.Adam(learning_rate)
