"""Model presets: shapes, class counts, random seeds, weights, and `catdog models`."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from catdog import models
from catdog.cli import main
from catdog.errors import CatdogError
from catdog.models.builders import BASE, HEAD, PREPROCESS


@pytest.mark.parametrize("name", list(models.PRESETS))
def test_every_preset_works_for_three_classes_at_another_size(name):
    model = models.create_model(name, 3, image_size=64, weights="none", seed=0)

    assert model.input_shape == (None, 64, 64, 3)
    assert model.output_shape == (None, 3)
    output = model.get_layer(HEAD).layers[-1] if models.get_preset(name).pretrained else model.layers[-1]
    assert output.activation is keras.activations.softmax and output.dtype_policy.name == "float32"
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    probabilities = np.asarray(model(pixels, training=False))
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_outputs_stay_float32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = models.create_model("cnn", 2, image_size=32, seed=0)
    finally:
        keras.config.set_dtype_policy("float32")
    assert next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)).compute_dtype == "bfloat16"
    assert model(np.zeros((1, 32, 32, 3)), training=False).dtype == "float32"


def test_the_reference_cnn_has_the_reference_architecture():
    # Conv2D(32) and MaxPooling2D x3 on 160 px leave 18 x 18 x 32 for the classifier.
    model = models.create_model("scratch", 2, image_size=160, seed=0)
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.filters for layer in convolutions] == [32, 32, 32]
    first_conv, next_convs, dense = 9 * 3 * 32 + 32, 2 * (9 * 32 * 32 + 32), 18 * 18 * 32 * 2 + 2
    assert model.count_params() == first_conv + next_convs + dense == 40_130


@pytest.mark.parametrize("name", ["augmented", "cnn"])
def test_the_same_seed_gives_the_same_initial_weights(name):
    first = models.create_model(name, 2, image_size=32, seed=7).get_weights()
    again = models.create_model(name, 2, image_size=32, seed=7).get_weights()
    other = models.create_model(name, 2, image_size=32, seed=8).get_weights()

    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_a_weights_file_is_loaded_into_the_pretrained_base(shared_weights):
    model = models.create_model("transfer", 2, image_size=96, weights=shared_weights)
    reference = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights=str(shared_weights))

    base = model.get_layer(BASE)
    assert not base.trainable
    assert all(np.array_equal(a, b) for a, b in zip(base.get_weights(), reference.get_weights(), strict=True))


def test_catdog_weights_is_the_default_for_mobilenet_v2_only(monkeypatch, shared_weights):
    transfer, scratch = models.get_preset("transfer"), models.get_preset("scratch")
    mobilenet_v2, convnext = models.get_backbone("mobilenet_v2"), models.get_backbone("convnext_tiny")
    monkeypatch.setenv("CATDOG_WEIGHTS", str(shared_weights))
    assert models.resolve_weights(transfer, mobilenet_v2) == str(shared_weights)
    # A second backbone is never handed MobileNetV2's weights.
    assert models.resolve_weights(transfer, convnext) == "imagenet"
    assert models.resolve_weights(scratch) is None
    assert models.resolve_weights(transfer, mobilenet_v2, "none") is None
    monkeypatch.delenv("CATDOG_WEIGHTS")
    assert models.resolve_weights(transfer, mobilenet_v2) == "imagenet"


@pytest.mark.parametrize(("preset", "weights", "message"), [
    ("transfer", "missing.h5", "weights: weights file missing.h5 does not exist"),
    ("scratch", "imagenet", "has no pretrained backbone: set weights to none"),
])
def test_unusable_weights_are_a_clear_error(preset, weights, message):
    spec = models.get_preset(preset)
    with pytest.raises(CatdogError, match=message):
        models.resolve_weights(spec, models.resolve_backbone(spec), weights)


@pytest.mark.parametrize(("backbone", "image_size", "file_name"), [
    ("mobilenet_v2", 96, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"),
    ("mobilenet_v2", 200, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
    ("efficientnet_v2_b0", 96, "efficientnetv2-b0_notop.h5"),
])
def test_imagenet_weights_offline_name_the_missing_file_and_keras_cache(monkeypatch, tmp_path, backbone,
                                                                         image_size, file_name):
    from keras.src.utils import file_utils

    requested = []

    def offline(name, *args, **kwargs):
        requested.append(name)
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] "
                        "Temporary failure in name resolution")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(CatdogError) as error:
        models.create_model("transfer", 2, image_size=image_size, backbone=backbone, weights="imagenet")
    message = str(error.value)
    assert requested == [file_name]  # the table names the file Keras itself asks for
    assert file_name in message and str(tmp_path / "models") in message and "\n" not in message


def test_unknown_preset_and_backbone_list_the_known_ones():
    with pytest.raises(CatdogError, match="unknown preset 'resnet'; choose one of: scratch, augmented"):
        models.create_model("resnet", 2)
    with pytest.raises(CatdogError, match="unknown backbone 'vgg'; choose one of: mobilenet_v2, mobilenet_v3_small"):
        models.create_model("transfer", 2, backbone="vgg")
    with pytest.raises(CatdogError, match="model 'scratch' has no pretrained backbone; leave out backbone"):
        models.create_model("scratch", 2, backbone="mobilenet_v2")


@pytest.mark.parametrize("backbone", list(models.BACKBONES))
def test_every_backbone_builds_both_pretrained_presets_with_its_own_preprocessing(backbone):
    spec = models.get_backbone(backbone)
    model = models.create_model("finetune", 3, image_size=64, backbone=backbone, weights="none", seed=0)
    base = model.get_layer(BASE)
    assert base.get_layer(spec.fine_tune_from)  # the fine-tuning layer exists in the network
    assert not base.trainable
    # The model's first step maps the backbone's mean pixel to 0 and mean + std to 1.
    preprocess = model.get_layer(PREPROCESS)
    mean, std = np.broadcast_to(spec.mean, 3), np.broadcast_to(spec.std, 3)
    pixels = np.stack([mean, mean + std]).reshape(1, 2, 1, 3).astype("float32")
    np.testing.assert_allclose(np.asarray(preprocess(pixels)).reshape(2, 3), [[0] * 3, [1] * 3], atol=1e-5)
    probabilities = np.asarray(model(np.zeros((1, 64, 64, 3), "float32"), training=False))
    assert probabilities.shape == (1, 3)


def test_catdog_models_lists_presets_and_backbones(capsys):
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    presets, backbones = listing["presets"], listing["backbones"]

    assert [row["name"] for row in presets] == list(models.PRESETS)
    assert [row["name"] for row in backbones] == list(models.BACKBONES)
    assert {"mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_v2_b0", "convnext_tiny",
            "resnet50_v2"} <= {row["name"] for row in backbones}
    counts = {row["name"]: row["parameters"] for row in presets}
    assert counts["scratch"] == models.create_model("scratch", 2, image_size=160).count_params()
    assert counts["transfer"] == counts["finetune"] > 2_000_000
    trainable = {row["name"]: row["trainable"] for row in presets}
    assert trainable["transfer"] == 1280 * 2 + 2
    sizes = {row["name"]: row["image_size"] for row in presets}
    assert sizes == {"scratch": 160, "augmented": 160, "preprocessed": 160, "transfer": 224, "finetune": 224,
                     "cnn": 128}
    assert all(row["description"] for row in presets + backbones)

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(models.PRESETS) + 2 + len(models.BACKBONES)
    assert lines[1].startswith("scratch") and lines[-1].startswith(list(models.BACKBONES)[-1])
