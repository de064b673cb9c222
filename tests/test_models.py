"""Model presets: shapes, class counts, seeds, weights, and `catdog models`."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from catdog import models
from catdog.cli import main
from catdog.errors import CatdogError


@pytest.mark.parametrize("name", list(models.PRESETS))
def test_every_preset_works_for_three_classes_at_another_size(name):
    model = models.build_model(name, num_classes=3, image_size=64, weights="none", seed=0)

    assert model.input_shape == (None, 64, 64, 3)
    assert model.output_shape == (None, 3)
    output = model.layers[-1] if name not in ("transfer", "finetune") else model.get_layer(models.HEAD).layers[-1]
    assert output.activation is keras.activations.softmax and output.dtype_policy.name == "float32"
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    probabilities = np.asarray(model(pixels, training=False))
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_outputs_stay_float32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = models.build_model("cnn", 2, 32, seed=0)
    finally:
        keras.config.set_dtype_policy("float32")
    assert next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)).compute_dtype == "bfloat16"
    assert model(np.zeros((1, 32, 32, 3)), training=False).dtype == "float32"


def test_the_seed_cnn_has_the_seed_architecture():
    # Conv2D(32) and MaxPooling2D x3 on 160 px leave 18 x 18 x 32 for the classifier.
    model = models.build_model("scratch", 2, 160, seed=0)
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.filters for layer in convolutions] == [32, 32, 32]
    first_conv, next_convs, dense = 9 * 3 * 32 + 32, 2 * (9 * 32 * 32 + 32), 18 * 18 * 32 * 2 + 2
    assert model.count_params() == first_conv + next_convs + dense == 40_130


@pytest.mark.parametrize("name", ["augmented", "cnn"])
def test_the_same_seed_gives_the_same_initial_weights(name):
    first = models.build_model(name, 2, 32, seed=7).get_weights()
    again = models.build_model(name, 2, 32, seed=7).get_weights()
    other = models.build_model(name, 2, 32, seed=8).get_weights()

    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_a_weights_file_is_loaded_into_the_pretrained_base(shared_weights):
    model = models.build_model("transfer", 2, 96, weights=shared_weights)
    reference = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights=str(shared_weights))

    base = model.get_layer(models.BASE)
    assert not base.trainable
    assert all(np.array_equal(a, b) for a, b in zip(base.get_weights(), reference.get_weights()))


def test_weights_default_to_catdog_weights_for_pretrained_presets_only(monkeypatch, shared_weights):
    monkeypatch.setenv("CATDOG_WEIGHTS", str(shared_weights))
    assert models.resolve_weights(models.get_preset("transfer")) == str(shared_weights)
    assert models.resolve_weights(models.get_preset("scratch")) is None
    assert models.resolve_weights(models.get_preset("finetune"), "none") is None
    monkeypatch.delenv("CATDOG_WEIGHTS")
    assert models.resolve_weights(models.get_preset("finetune")) == "imagenet"


@pytest.mark.parametrize(("preset", "weights", "message"), [
    ("transfer", "missing.h5", "weights file missing.h5 does not exist"),
    ("scratch", "imagenet", "has no pretrained base"),
])
def test_unusable_weights_are_a_clear_error(preset, weights, message):
    with pytest.raises(CatdogError, match=message):
        models.resolve_weights(models.get_preset(preset), weights)


def test_imagenet_weights_offline_name_the_missing_file(monkeypatch, tmp_path):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] "
                        "Temporary failure in name resolution")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(CatdogError) as error:
        models.build_model("transfer", 2, 96, weights="imagenet")
    message = str(error.value)
    assert models.MOBILENET_V2_IMAGENET_FILE in message and str(tmp_path / "models") in message
    assert "--weights PATH" in message and "CATDOG_WEIGHTS" in message and "\n" not in message


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(CatdogError, match="unknown model 'resnet'; choose one of: scratch, augmented"):
        models.build_model("resnet", 2)


def test_catdog_models_lists_every_preset_with_its_parameter_count(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)

    assert [row["name"] for row in rows] == list(models.PRESETS)
    counts = {row["name"]: row["parameters"] for row in rows}
    assert counts["scratch"] == models.build_model("scratch", 2, 160).count_params()
    assert counts["transfer"] == counts["finetune"] > 2_000_000
    trainable = {row["name"]: row["trainable"] for row in rows}
    assert trainable["transfer"] == 1280 * 2 + 2
    assert all(row["description"] for row in rows)

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(models.PRESETS) and lines[1].startswith("scratch")
