"""A run's settings: resolved once from the preset, the backbone, the overrides and the machine; written
down as config.json and read back the same; old config.json formats still read."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest

from catdog import training
from catdog.errors import ParameterError
from catdog.models import get_preset
from catdog.runs import RunConfig, Stage, TrainSettings
from catdog.runs.settings import plan


def test_defaults_come_from_the_preset_and_its_backbone(monkeypatch):
    monkeypatch.delenv("CATDOG_WEIGHTS", raising=False)
    transfer = TrainSettings.resolve("transfer")
    assert (transfer.image_size, transfer.epochs, transfer.backbone, transfer.weights) == (224, 20, "mobilenet_v2",
                                                                                          "imagenet")
    assert (transfer.patience, transfer.views, transfer.class_weight, transfer.batch_size) == (3, 1, "auto", 32)
    scratch = TrainSettings.resolve("scratch")
    assert (scratch.image_size, scratch.backbone, scratch.weights, scratch.patience) == (160, None, "none", 5)
    assert TrainSettings.resolve("transfer", backbone="efficientnet_v2_b0").image_size == 224
    assert TrainSettings.resolve("cnn").image_size == 128


def test_overrides_win_and_the_stages_are_planned_from_them():
    settings = TrainSettings.resolve("finetune", epochs=6, learning_rate=0.01, patience=0, views=3, image_size=96)
    assert (settings.epochs, settings.learning_rate, settings.patience, settings.views) == (6, 0.01, None, 3)
    assert settings.stages == (Stage(0, 2, 0.01), Stage(2, 6, pytest.approx(1e-4), "block_11_expand_relu"))
    assert settings.fine_tunes_from == 3
    assert settings.stages == plan(get_preset("finetune"), settings.network, 6, 0.01)


def test_the_environment_comes_after_the_overrides(monkeypatch, tmp_path):
    weights = tmp_path / "local.h5"
    weights.write_bytes(b"")
    monkeypatch.setenv("CATDOG_WEIGHTS", str(weights))
    assert TrainSettings.resolve("transfer").weights == str(weights)
    assert TrainSettings.resolve("transfer", weights="none").weights == "none"
    assert TrainSettings.resolve("transfer", backbone="resnet50_v2").weights == "imagenet"  # MobileNetV2's only
    assert TrainSettings.resolve("scratch", precision="mixed_float16").precision == "mixed_float16"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"batch_size": -1}, "batch_size must be at least 1"),
    ({"learning_rate": float("inf")}, "learning_rate must be a finite number above 0"),
    ({"patience": -2}, "patience must be 0"),
    ({"precision": "float8"}, "unknown precision 'float8'"),
    ({"class_weight": "heavy"}, "unknown class_weight 'heavy'"),
    ({"ood_rate": 1.5}, "ood_rate must be a share of false alarms"),
    ({"ood_method": "forest"}, "unknown ood_method 'forest'"),
    ({"backbone": "mobilenet_v2"}, "has no pretrained backbone"),
])
def test_every_setting_is_checked_where_it_is_resolved(overrides, message):
    with pytest.raises(ParameterError, match=message) as raised:
        TrainSettings.resolve("scratch", **overrides)
    assert raised.value.parameter == next(iter(overrides))


def test_config_json_is_the_settings_written_down_and_reads_back_the_same(tmp_path):
    settings = TrainSettings.resolve("finetune", epochs=4, image_size=96, weights="none", class_weight="balanced")
    config = RunConfig(settings, ("cats", "dogs"), "/data", {"strategy": "mirrored", "replicas": 2, "workers": 1,
                                                            "devices": ["CPU:0", "CPU:1"]}, {"catdog": "0.1.0"})
    path = config.write(tmp_path / "config.json")
    assert RunConfig.read(path) == config
    recorded = json.loads(path.read_text())
    assert recorded["format_version"] == 2 and recorded["class_names"] == ["cats", "dogs"]
    assert {key: recorded[key] for key in ("epochs", "image_size", "class_weight", "strategy", "replicas")} == {
        "epochs": 4, "image_size": 96, "class_weight": "balanced", "strategy": "mirrored", "replicas": 2}
    assert TrainSettings.from_dict(recorded) == settings


def test_a_format_1_config_reads_with_what_those_runs_trained_with():
    """catdog 0.1 wrote no format_version, backbone, stages, class weights or precision."""
    recorded = {"preset": "transfer", "class_names": ["cats", "dogs"], "image_size": 160, "data": "/d", "epochs": 3,
                "batch_size": 32, "seed": 42, "weights": "imagenet", "learning_rate": 1e-3}
    config = RunConfig.from_dict(recorded)
    settings = config.settings
    assert settings.backbone == "mobilenet_v2"  # every pretrained model of catdog 0.1 was MobileNetV2
    assert (settings.class_weight, settings.precision, settings.patience) == ("none", "float32", None)
    assert settings.stages == (Stage(0, 3, 1e-3),)
    assert RunConfig.from_dict({**recorded, "preset": "scratch"}).settings.backbone is None
    # A preset catdog no longer has still opens (to predict with); it has no stages to resume by.
    assert RunConfig.from_dict({**recorded, "preset": "retired"}).settings.stages == ()


def test_training_takes_at_most_six_parameters():
    assert len(inspect.signature(training.train).parameters) <= 6
    assert list(inspect.signature(training.train).parameters)[:2] == ["settings", "data"]


def test_settings_are_frozen():
    settings = TrainSettings.resolve("scratch")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.epochs = 3
