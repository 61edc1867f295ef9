"""Bring your own model: the `model` section, builders and .keras files, the head found and replaced."""

from __future__ import annotations

import numpy as np
import pytest

from spp_search.config.settings import build_config
from spp_search.infra.errors import ConfigError
from spp_search.model import anatomy, user

TESTS = "tests.user_models"


def _model(spec: str, **factors):
    from spp_search.config.factors import resolved

    return user.build({"builder": spec, "set_factors": list(factors)}, resolved(factors), 3, 4)


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ({"builder": "nocolon"}, "`model.builder` must be MODULE:FUNCTION"),
        ({"builder": "a:b", "file": "m.keras"}, "name a builder or a file, not both"),
        ({"file": "missing.keras"}, "`model.file` must be an existing .keras file"),
        ({"builder": "a:b", "custom_objects": "x"}, "custom_objects` must go with model.file"),
        ({"nope": 1}, "`model.nope` must be one of the keys"),
    ],
)
def test_a_bad_model_section_is_one_line(section, words):
    with pytest.raises(ConfigError, match=words) as info:
        build_config({"model": section})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("no_such_module_xyz:build", "`model.builder` must import \\(ModuleNotFoundError"),
        (f"{TESTS}:absent", "must name a function of tests.user_models"),
        ("/no/such/file.py:build", "must name an existing .py file"),
        (f"{TESTS}:not_a_model", "must return a keras.Model"),
        (f"{TESTS}:needs_foo", "take only factors as required arguments, but got model.builder='foo'"),
    ],
)
def test_a_builder_that_cannot_build_says_why_in_one_line(spec, words):
    with pytest.raises(ConfigError, match=words):
        _model(spec)


def test_a_model_with_the_wrong_number_of_classes_is_refused():
    with pytest.raises(ConfigError, match=r"output one score per class \(4\)"):
        user.check_output(_model(f"{TESTS}:wrong_classes"), 4)


def test_a_builder_keeps_its_own_defaults_unless_the_config_sets_the_factor():
    from tests import user_models

    user_models.seen.calls.clear()
    _model(f"{TESTS}:seen")
    _model(f"{TESTS}:seen", levels=(1, 4))
    assert user_models.seen.calls == [{"levels": (1, 2, 3), "width": 5}, {"levels": [1, 4], "width": 5}]


def test_a_builder_file_path_loads_as_a_module(tmp_path):
    source = tmp_path / "mine.py"
    source.write_text("from tests.user_models import tiny\n\ndef build(num_classes=4):\n    return tiny(num_classes)\n")
    assert _model(f"{source}:build").output_shape == (None, 4)


@pytest.mark.parametrize(
    ("builder", "kind", "levels"),
    [("tiny", "spp", (1, 2)), ("flatten_fixed", "flatten", None), ("adaptive_branches", "spp", (1, 2))],
)
def test_the_pooling_head_is_found(builder, kind, levels):
    head = anatomy.head_of(_model(f"{TESTS}:{builder}"))
    assert head is not None and head.kind == kind and head.levels == levels


@pytest.mark.parametrize("builder", ["flatten_fixed", "adaptive_branches"])
def test_the_head_replaced_by_exact_spp_takes_any_size(builder):
    model = anatomy.replace_head(_model(f"{TESTS}:{builder}"), (1, 2, 4), "max")
    assert model.input_shape == (None, None, None, 3) and model.output_shape == (None, 4)
    for size in ((24, 24), (13, 31)):
        out = np.asarray(model(np.ones((2, *size, 3), "float32")))
        assert out.shape == (2, 4) and np.isfinite(out).all()


def test_a_compiled_model_keeps_its_optimizer_and_learning_rate_unless_one_is_set():
    from spp_search.config.factors import resolved

    spec = {"builder": f"{TESTS}:compiled_sgd", "set_factors": [], "keeps_learning_rate": True}
    _, optimizer, logits = user.for_trial(spec, resolved({}), 3, 4)
    assert type(optimizer).__name__ == "GradNormSGD" and abs(float(optimizer.learning_rate) - 0.05) < 1e-7
    spec = {**spec, "set_factors": ["learning_rate"], "keeps_learning_rate": False}
    _, optimizer, _ = user.for_trial(spec, resolved({"learning_rate": 0.001}), 3, 4)
    assert abs(float(optimizer.learning_rate) - 0.001) < 1e-9 and not logits


def test_a_keras_file_with_an_unknown_custom_layer_names_the_class(tmp_path):
    import keras

    class Unregistered(keras.layers.Layer):
        def call(self, x):
            return x

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalMaxPooling2D()(Unregistered()(inputs))
    path = tmp_path / "m.keras"
    keras.Model(inputs, keras.layers.Dense(4)(x)).save(path)
    with pytest.raises(ConfigError, match="uses the custom class `.*Unregistered`.*--custom-objects"):
        user.load_file(str(path))


@pytest.mark.slow
def test_a_study_runs_a_users_builder_and_logs_every_trial(tmp_path, capsys):
    """The study says what it does not search for the user's model, then trains it as its own."""
    import yaml
    from mlflow import MlflowClient

    from spp_search.cli import main
    from tests.helpers import tiny_config

    raw = tiny_config(tmp_path, name="mine", trials=2, epochs=1, isolation="inline")
    raw["model"] = {"builder": f"{TESTS}:tiny"}
    raw["space"]["spp_impl"] = {"choices": ["floor_ceil", "round_bins"]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "takes levels" in out and "model: not searched for it: pooling, spp_impl" in out
    client = MlflowClient(raw["study"]["tracking_uri"])
    runs = client.search_runs([client.get_experiment_by_name("mine").experiment_id], "tags.`spp_search.role` = 'trial'")
    assert len(runs) == 2 and {r.data.tags["outcome"] for r in runs} <= {"ok", "pruned"}
    assert all("levels" in r.data.params and "val_accuracy" in r.data.metrics for r in runs)


def test_a_study_refuses_a_model_it_cannot_train_before_any_trial(tmp_path, capsys):
    import yaml

    from spp_search.cli import main
    from tests.helpers import tiny_config

    raw = tiny_config(tmp_path, name="wrong", trials=1, isolation="inline")
    raw["model"] = {"builder": f"{TESTS}:wrong_classes"}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "`model` must output one score per class (4)" in err and err.count("\n") == 1
    assert not (tmp_path / "optuna.db").exists()  # nothing created


def test_a_compiled_learning_rate_reads_as_the_user_wrote_it():
    """Adam(1e-3) was read back as 0.0010000000474974513 (float32), shown so in the doctor's fix."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    assert user.compile_settings(model).learning_rate == 0.001
