"""Models written as users write them (blog recipes, Keras layers), each a builder function.

Every function takes the keyword arguments a diagnosis may pass (``num_classes``, ``bands``) and
returns a Keras model. The SPP layers here are faithful to the recipes they come from, bugs
included; nothing in this file imports spp-search except the healthy control that uses its layer.
"""

from __future__ import annotations

import keras
from keras import ops


def _convs(inputs, widths=(16, 32), pool=True):
    x = inputs
    for i, width in enumerate(widths):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        if pool and i < len(widths) - 1:
            x = keras.layers.MaxPooling2D(2)(x)
    return x


def _classifier(x, num_classes, hidden=32, activation="softmax"):
    x = keras.layers.Dense(hidden, activation="relu")(x)
    return keras.layers.Dense(num_classes, activation=activation)(x)


class RoundedSPP(keras.layers.Layer):
    """The classic blog SPP layer: bin edges round(i * size / n), one slice per bin."""

    def __init__(self, levels=(1, 2, 4), mode="avg", **kwargs):
        super().__init__(**kwargs)
        self.levels, self.mode = list(levels), mode

    def call(self, x):
        h, w = ops.cast(ops.shape(x)[1], "float32"), ops.cast(ops.shape(x)[2], "float32")
        outputs = []
        for n in self.levels:
            for i in range(n):
                for j in range(n):
                    y1, y2 = ops.cast(ops.round(h * i / n), "int32"), ops.cast(ops.round(h * (i + 1) / n), "int32")
                    x1, x2 = ops.cast(ops.round(w * j / n), "int32"), ops.cast(ops.round(w * (j + 1) / n), "int32")
                    region = x[:, y1:y2, x1:x2, :]
                    outputs.append(
                        ops.mean(region, axis=(1, 2)) if self.mode == "avg" else ops.max(region, axis=(1, 2))
                    )
        return ops.concatenate(outputs, axis=-1)

    def compute_output_shape(self, shape):
        return (shape[0], shape[-1] * sum(n * n for n in self.levels))


class CropSplitSPP(keras.layers.Layer):
    """TF-Addons-style SPP: crop each side to a multiple of n, split into equal bins."""

    def __init__(self, bins=(1, 2, 4), **kwargs):
        super().__init__(**kwargs)
        self.bins = list(bins)

    def call(self, x):
        shape = ops.shape(x)
        b, h, w, c = shape[0], shape[1], shape[2], x.shape[-1]
        outputs = []
        for n in self.bins:
            bh, bw = h // n, w // n
            grid = ops.reshape(x[:, : bh * n, : bw * n, :], (b, n, bh, n, bw, c))
            outputs.append(ops.reshape(ops.mean(grid, axis=(2, 4)), (b, n * n * c)))
        return ops.concatenate(outputs, axis=-1)

    def compute_output_shape(self, shape):
        return (shape[0], shape[-1] * sum(n * n for n in self.bins))


class WindowSPP(keras.layers.Layer):
    """The SPP paper's Section 2.3 rule as a pooling op: window ceil(a/n), stride floor(a/n)."""

    def __init__(self, pyramid_levels=(1, 2, 4), **kwargs):
        super().__init__(**kwargs)
        self.pyramid_levels = list(pyramid_levels)

    def call(self, x):
        h, w = x.shape[1], x.shape[2]
        outputs = []
        for n in self.pyramid_levels:
            window, stride = (-(-h // n), -(-w // n)), (max(1, h // n), max(1, w // n))
            pooled = ops.max_pool(x, window, stride, padding="valid")
            outputs.append(ops.reshape(pooled, (-1, pooled.shape[1] * pooled.shape[2] * pooled.shape[3])))
        return ops.concatenate(outputs, axis=-1)


def rounded_bins_avg(num_classes=4, bands=3):
    """Blog SPP with rounded bins and average pooling on small maps: empty bins -> NaN."""
    inputs = keras.Input((None, None, bands))
    x = _convs(inputs, (16, 32, 32))
    return keras.Model(inputs, _classifier(RoundedSPP((1, 2, 4, 6), "avg")(x), num_classes))


def crop_split(num_classes=4, bands=3):
    """TF-Addons-style SPP (crop to a multiple of n) with a level larger than the maps."""
    inputs = keras.Input((None, None, bands))
    x = _convs(inputs, (16, 32, 32))
    return keras.Model(inputs, _classifier(CropSplitSPP((1, 2, 6))(x), num_classes))


def paper_window(num_classes=4, bands=3, image_size=64):
    """Section 2.3 window/stride pooling, built at one input size as the paper trains: its
    feature length depends on the size, so the model takes no other."""
    inputs = keras.Input((image_size, image_size, bands))
    x = _convs(inputs, (16, 32))
    return keras.Model(inputs, _classifier(WindowSPP((1, 2, 3))(x), num_classes))


def keras_adaptive(num_classes=4, bands=3):
    """Keras 3's own adaptive pooling as the SPP head, on inputs of any size."""
    inputs = keras.Input((None, None, bands))
    x = _convs(inputs, (16, 32))
    parts = [keras.layers.GlobalMaxPooling2D()(x)]
    parts += [keras.layers.Flatten()(keras.layers.AdaptiveMaxPooling2D(n)(x)) for n in (2, 4)]
    return keras.Model(inputs, _classifier(keras.layers.Concatenate()(parts), num_classes))


def flatten_head(num_classes=3, bands=3):
    """The blog's 'correct' example: an explicit 64x64 input and a Flatten head."""
    model = keras.Sequential(
        [
            keras.Input((64, 64, bands)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )
    return model


def gap_cnn(num_classes=3, bands=3, learning_rate=1e-3, optimizer="adam"):
    """A plain CNN with a global-average-pooling head, compiled the way tutorials do."""
    inputs = keras.Input((None, None, bands))
    x = _convs(inputs, (16, 32, 64))
    model = keras.Model(inputs, _classifier(keras.layers.GlobalAveragePooling2D()(x), num_classes))
    chosen = (
        keras.optimizers.Adam(learning_rate)
        if optimizer == "adam"
        else keras.optimizers.SGD(learning_rate, momentum=0.9)
    )
    model.compile(optimizer=chosen, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def adam_lr_too_high(num_classes=3, bands=3):
    """The GAP CNN compiled with Adam at a learning rate of 2."""
    return gap_cnn(num_classes, bands, learning_rate=2.0)


def sgd_lr_too_high(num_classes=3, bands=3):
    """The GAP CNN compiled with SGD (momentum 0.9) at a learning rate of 5."""
    return gap_cnn(num_classes, bands, learning_rate=5.0, optimizer="sgd")


class SecondOrder(keras.layers.Layer):
    """Second-order ("bilinear") pooling of pooled features: their squares."""

    def call(self, x):
        return x * x


def float16_overflow(num_classes=3, bands=3):
    """Float16 layers on 0-255 pixels and a second-order head: squares past 65504 are inf."""
    policy = "mixed_float16"
    inputs = keras.Input((None, None, bands))
    x = keras.layers.Rescaling(255.0, dtype=policy)(inputs)  # the recipe expects 0-255 pixels
    for width in (16, 32, 32):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", dtype=policy)(x)
    x = SecondOrder(dtype=policy)(keras.layers.GlobalAveragePooling2D(dtype=policy)(x))
    x = keras.layers.LayerNormalization()(x)
    return keras.Model(inputs, _classifier(x, num_classes))


def upsampled_wide(num_classes=3, bands=3):
    """Small images upsampled 4x, then 256 channels at full resolution: about 250 MB of
    activations and gradients per 72 px image, so a batch of 64 needs over 15 GB."""
    inputs = keras.Input((None, None, bands))
    x = keras.layers.UpSampling2D(4)(inputs)
    x = keras.layers.Conv2D(256, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, _classifier(x, num_classes))


def exact_spp(num_classes=4, bands=3, levels=(1, 2, 4)):
    """A user's model with spp-search's exact SPP layer, on inputs of any size (healthy)."""
    from spp_search import SpatialPyramidPooling2D

    inputs = keras.Input((None, None, bands))
    x = _convs(inputs, (16, 32, 32))
    return keras.Model(inputs, _classifier(SpatialPyramidPooling2D(levels, "max")(x), num_classes, 64))
