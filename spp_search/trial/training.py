"""``study.py train``: retrain one configuration and save a self-contained ``.keras`` model.

The saved model takes raw pixel values (its first layer applies the configuration's value
scaling) and, for size-agnostic heads (an SPP implementation whose ``any_size`` is true in
``model.impls``: ours, ``round_bins``, ``crop_split``), accepts any height and width: it loads in a
fresh process after ``import spp_search`` and predicts on sizes it never saw. Heads that need a
fixed size (``flatten``, ``paper_window``, ``keras_adaptive``) keep ``image_size``.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from spp_search.config.factors import resolved
from spp_search.config.settings import StudyConfig
from spp_search.infra.errors import ConfigError, SppSearchError, must
from spp_search.model.anatomy import functional
from spp_search.model.impls import SPP_IMPLS
from spp_search.model.network import build_trial_model
from spp_search.trial.run import TrialSpec, train_and_keep


class _Quiet:
    """A reporter that never prunes: a final training runs every epoch."""

    def epoch_end(self, epoch: int, metrics: dict[str, float]) -> bool:
        print(f"epoch {epoch}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        return False


def scaling_layer(value_scaling: str, train) -> keras.layers.Layer:
    """The value scaling of ``preprocessing.scaler`` as a Keras layer, for raw-pixel input."""
    if value_scaling == "unit":
        return keras.layers.Rescaling(1 / 255, name="scaling")
    if value_scaling == "symmetric":
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scaling")
    pixels = np.concatenate([im.reshape(-1, im.shape[-1]) for im in train.images]).astype(np.float64)
    std = np.maximum(pixels.std(axis=0), 1e-3)
    return keras.layers.Normalization(mean=pixels.mean(axis=0), variance=std**2, name="scaling")


def inference_model(trained: keras.Model, factors: dict, train) -> keras.Model:
    """A plain Keras model with the trained weights, value scaling first, any size if it can."""
    f = resolved(factors)
    any_size = f["head"] == "spp" and SPP_IMPLS[f["spp_impl"]].any_size
    size = None if any_size else (int(f["image_size"]),) * 2
    bands, classes = train.images[0].shape[-1], len(train.class_names)
    model = build_trial_model(f, bands, classes, size, preprocess=scaling_layer(f["value_scaling"], train))
    for layer in model.layers:
        if layer.weights and layer.name != "scaling":
            layer.set_weights(trained.get_layer(layer.name).get_weights())
    return model


def user_inference_model(trained: keras.Model, factors: dict, train) -> keras.Model:
    """A user's trained model with the value scaling in front, so it takes raw pixels too (an
    uncompiled copy: the training's optimizer, which records gradient norms, is not saved)."""
    shape = trained.input_shape if not isinstance(trained.input_shape, list) else trained.input_shape[0]
    inner = functional(trained)  # the same layers and weights, no compile state
    inputs = keras.Input(shape[1:], name="image")
    outputs = inner(scaling_layer(resolved(factors)["value_scaling"], train)(inputs))
    return keras.Model(inputs, outputs, name=f"{trained.name}_raw_pixels")


def train_config(
    config: StudyConfig,
    out: Path,
    device: str,
    budget=None,
    backend: str = "tensorflow",
    reporter=None,
) -> tuple[dict, keras.Model, np.ndarray]:
    """Train ``config.defaults`` once and save the inference model to ``out``.

    Returns its metrics, the inference model and an input example (one training image, raw
    pixels, at a size the model takes). The trial's seed and data pipeline are the study's, so
    the exported best trial retrains to the same validation accuracy (see README).
    """
    if out.suffix != ".keras":
        raise ConfigError(must("out", "end in .keras", str(out), "E.g. --out model.keras."))
    if config.space.params:
        raise ConfigError(
            must(
                "config",
                "fix every factor (an empty `space`)",
                f"space={config.space.names}",
                "Export one with `python study.py export-best --out best.yaml`.",
            )
        )
    spec = TrialSpec(
        0,
        dict(config.defaults),
        config.data.for_trial(),
        budget or config.study.budget,
        config.study.seed,
        device,
        backend=backend,
        model=config.model_for_trial(),
    )
    result, trained = train_and_keep(spec, reporter or _Quiet())
    if result.outcome.value != "ok":
        raise SppSearchError(f"training ended with outcome {result.outcome.value}: {result.error_message}")
    if spec.model is not None:
        model = user_inference_model(trained.model, config.defaults, trained.train)
    else:
        model = inference_model(trained.model, config.defaults, trained.train)
    model.save(out)
    metrics = {
        "backend": backend,
        "val_accuracy": result.value,
        "rounds": len(result.epochs),
        "steps": int(result.stats.get("steps", 0)),
        "val_loss": result.epochs[-1].get("val_loss") if result.epochs else None,
        "input_shape": list(model.input_shape),
    }
    return metrics, model, input_example(trained.train.images[0], model.input_shape)


def input_example(image: np.ndarray, input_shape: tuple) -> np.ndarray:
    """``image`` as a batch of one float32 array at a size the model takes (its own size when the
    model takes any, else resampled to the fixed size by nearest pixel)."""
    _, height, width, _ = input_shape
    if height is not None:
        rows = np.linspace(0, image.shape[0] - 1, height).round().astype(int)
        cols = np.linspace(0, image.shape[1] - 1, width).round().astype(int)
        image = image[rows][:, cols]
    return image[None].astype(np.float32)
