"""Settings resolved once and checked, and `config.json` as the settings written down (formats 1 and 2)."""

from __future__ import annotations

import json

import pytest

from catdog import models
from catdog.errors import CatdogError, ParameterError
from catdog.runs import Run, RunConfig, Stage, TrainSettings
from catdog.runs.settings import plan


def test_resolve_starts_from_the_preset_and_its_backbone_and_applies_overrides():
    settings = TrainSettings.resolve("finetune", weights="none", epochs=6, seed=7)
    assert (settings.image_size, settings.views, settings.patience, settings.backbone) == (224, 2, 3, "mobilenet_v2")
    assert (settings.epochs, settings.seed, settings.weights, settings.batch_size) == (6, 7, "none", 32)
    assert settings.stages == plan(models.get_preset("finetune"), models.get_backbone("mobilenet_v2"), 6, 1e-3)
    assert settings.fine_tunes_from == settings.stages[1].start + 1
    assert settings.network == models.get_backbone("mobilenet_v2")
    scratch = TrainSettings.resolve("scratch", image_size=32, patience=0)
    assert (scratch.image_size, scratch.backbone, scratch.patience, scratch.fine_tunes_from) == (32, None, None, None)
    assert scratch.network is None


@pytest.mark.parametrize(("overrides", "parameter", "message"), [
    ({"epochs": 0}, "epochs", "must be at least 1, got 0"),
    ({"learning_rate": float("inf")}, "learning_rate", "must be a finite number above 0"),
    ({"class_weight": "heavy"}, "class_weight", "'heavy'; choose one of"),
    ({"patience": -1}, "patience", "must be 0 (run every epoch) or more"),
    ({"precision": "int4"}, "precision", "'int4'; choose one of"),
    ({"ood_rate": 2.0}, "ood_rate", "must be a share of false alarms"),
    ({"backbone": "mobilenet_v2"}, "backbone", "has no pretrained backbone"),
])
def test_each_setting_is_checked_and_named(overrides, parameter, message):
    with pytest.raises(ParameterError) as raised:
        TrainSettings.resolve("scratch", **overrides)
    assert raised.value.parameter == parameter and message in str(raised.value)


def test_config_json_is_the_settings_written_down(tmp_path):
    settings = TrainSettings.resolve("transfer", weights="none", epochs=2)
    placement = {"strategy": "mirrored", "replicas": 2, "workers": 1, "devices": ["CPU:0", "CPU:1"]}
    RunConfig(settings, ("cats", "dogs"), "/data", placement, {"catdog": "1"}).write(tmp_path / "config.json")
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["preset"] == "transfer" and written["replicas"] == 2 and written["format_version"] == 2
    assert written["stages"] == [{"start": 0, "end": 2, "learning_rate": 1e-3, "unfreeze_from": None}]
    read = RunConfig.read(tmp_path / "config.json")
    assert read.settings == settings and read.placement == placement and read.class_names == ("cats", "dogs")


def test_a_format_1_config_reads_with_mobilenet_v2_and_planned_stages(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "preset": "finetune", "class_names": ["cats", "dogs"], "image_size": 160, "epochs": 4,
        "learning_rate": 1e-3, "weights": "imagenet"}))
    run = Run.open(tmp_path)
    assert run.settings.backbone == "mobilenet_v2"
    assert run.settings.stages == (Stage(0, 1, 1e-3), Stage(1, 4, pytest.approx(1e-5), "block_11_expand_relu"))
    assert run.config.placement["replicas"] == 1


@pytest.mark.parametrize(("values", "message"), [
    ({"preset": "scratch", "class_names": ["a", "b"], "image_size": 32, "format_version": 99}, "newer catdog"),
    ({"preset": "scratch", "class_names": ["a", "a"], "image_size": 32}, "lists a class twice"),
    ({"preset": "finetune", "class_names": ["a", "b"], "image_size": 32, "epochs": "many"},
     "holds settings catdog cannot read"),
    ({"preset": "scratch", "class_names": ["a", "b"], "image_size": 32, "colour": "red"}, None),
    ([1, 2], "does not hold a run's settings"),
])
def test_a_damaged_config_is_one_catdog_error_and_unknown_keys_are_ignored(values, message):
    if message is None:
        assert RunConfig.from_dict(values).settings.preset == "scratch"
        return
    with pytest.raises(CatdogError, match=message):
        RunConfig.from_dict(values)
