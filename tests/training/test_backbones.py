"""Every backbone of the table through the frozen-feature path, and two of them end to end on real photos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from catdog import models
from catdog.cli import main
from catdog.data import load
from catdog.runs.settings import plan
from catdog.training.frozen import FrozenFeatures


@pytest.mark.parametrize("backbone", list(models.BACKBONES))
def test_the_frozen_bottom_and_the_trainable_top_compose_to_the_whole_model(backbone, tiny_dataset):
    """For each backbone, the fine-tuning cut gives a bottom (run once per image) and a top (trained)
    that together compute exactly what the end-to-end model computes."""
    model = models.create_model("finetune", 2, image_size=64, backbone=backbone, weights="none", seed=0)
    stages = plan(models.get_preset("finetune"), models.get_backbone(backbone), 3)
    data = load(tiny_dataset, image_size=64, batch_size=8)
    frozen = FrozenFeatures(model, stages, data, views=1, batch_size=8, seed=0)

    images = next(iter(data.validation))[0].numpy()
    whole = np.asarray(model(images, training=False))
    features = frozen.bottom(images, training=False)
    top = frozen.top(stages[-1])
    np.testing.assert_allclose(np.asarray(top(features, training=False)), whole, atol=1e-5)
    # Stage 2 trains the backbone from its fine-tuning layer up, and only that.
    assert top.count_params() < model.count_params()
    assert any(layer.trainable_weights for layer in top.layers)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["efficientnet_v2_b0", "convnext_tiny"])
def test_transfer_on_another_backbone_trains_predicts_and_exports(backbone, reference_data, tmp_path, capsys):
    photos = tmp_path / "photos"
    for name in ("cats", "dogs"):
        (photos / name).mkdir(parents=True)
        for n in range(12):
            (photos / name / f"{n}.jpg").symlink_to(reference_data / "train" / name / f"{name[:-1]}.{n}.jpg")
    run = tmp_path / "run"
    assert main(["train", "--model", "transfer", "--backbone", backbone, "--weights", "none", "--epochs", "1",
                 "--image-size", "96", "--data", str(photos), "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["backbone"] == backbone and config["weights"] == "none"
    assert {"model.keras", "metrics.json", "history.csv", "confusion_matrix.png"} <= {p.name for p in run.iterdir()}

    assert main(["export", str(run), "--format", "onnx", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["images_from"] == "the run's test split" and report["max_difference"] <= report["tolerance"]

    assert main(["predict", str(run), str(photos / "cats" / "0.jpg"), "--json"]) == 0
    out, err = capsys.readouterr()
    prediction = json.loads(out)
    assert prediction["label"] in ("cats", "dogs") and "with onnx" in err
