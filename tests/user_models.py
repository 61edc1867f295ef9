"""Small user models for the tests: builders as a user writes them (importable by workers)."""

from __future__ import annotations

import keras


def tiny(num_classes=4, bands=3, levels=(1, 2)):
    """Conv + our exact SPP + Dense; declares `levels` with a default of its own."""
    from spp_search import SpatialPyramidPooling2D

    inputs = keras.Input((None, None, bands))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = SpatialPyramidPooling2D(levels, "max")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))


def seen(num_classes=4, bands=3, levels=(1, 2, 3), width=5):
    """Records what it was called with (a test reads `seen.calls`)."""
    seen.calls.append({"levels": levels, "width": width})
    return tiny(num_classes, bands, tuple(levels))


seen.calls = []


def compiled_sgd(num_classes=4, bands=3):
    model = tiny(num_classes, bands)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5), loss="sparse_categorical_crossentropy")
    return model


def flatten_fixed(num_classes=4, bands=3):
    return keras.Sequential(
        [
            keras.Input((24, 24, bands)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )


def adaptive_branches(num_classes=4, bands=3):
    inputs = keras.Input((32, 32, bands))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    parts = [keras.layers.GlobalMaxPooling2D()(x), keras.layers.Flatten()(keras.layers.AdaptiveMaxPooling2D(2)(x))]
    y = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()(parts))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(y))


def wrong_classes(num_classes=4, bands=3):
    return tiny(num_classes + 1, bands)


def not_a_model(num_classes=4):
    return "a model"


def needs_foo(foo):
    return tiny()
