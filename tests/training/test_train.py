"""Training: the run folder, stages, frozen features, resuming, and `catdog train`'s errors."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys

import keras
import numpy as np
import pytest

from catdog import models
from catdog.cli import main
from catdog.data import load
from catdog.data.splits import Manifest
from catdog.evaluation import score
from catdog.models.builders import BASE, POOL
from catdog.models.inference import numpy_function
from catdog.runs import Run, RunConfig, TrainSettings, folder
from catdog.runs.settings import plan
from catdog.training.frozen import FrozenFeatures, separating_tensor

from conftest import resume, train


@pytest.fixture(scope="module")
def scratch_run(colours, tmp_path_factory):
    return train("scratch", colours, epochs=2, image_size=32, batch_size=8, seed=3,
                 out=tmp_path_factory.mktemp("runs") / "scratch")


class StopAfter(keras.callbacks.Callback):
    """Simulates Ctrl-C at the end of epoch `epochs`."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def test_a_run_folder_holds_everything_a_user_expects(scratch_run, colours):
    names = {path.name for path in scratch_run.iterdir()}
    assert names == {"model.keras", "config.json", "splits.csv", "history.csv", "accuracy.png", "loss.png",
                     "metrics.json", "confusion_matrix.png", "misclassified.png", "reliability.png", "logs",
                     "training.json", "calibration.json", "ood.npz", ".catdog.lock"}
    outcome = json.loads((scratch_run / "training.json").read_text())
    assert outcome["epochs"] == 2 and outcome["stopped"] is None and outcome["best_epoch"] in (1, 2)

    config = json.loads((scratch_run / "config.json").read_text())
    assert config["preset"] == "scratch" and config["class_names"] == ["blue", "red"]
    assert (config["image_size"], config["batch_size"], config["seed"], config["epochs"]) == (32, 8, 3, 2)
    assert config["weights"] == "none" and config["data"] == str(colours.resolve())
    assert {"catdog", "tensorflow", "keras", "python", "numpy"} <= set(config["versions"])
    # config.json is the settings it trained with, written down: they read back the same.
    trained_with = TrainSettings.resolve("scratch", epochs=2, image_size=32, batch_size=8, seed=3)
    assert Run.open(scratch_run).settings == trained_with

    history = folder.read_history(scratch_run / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(set(row) == set(folder.HISTORY_FIELDS) and row["seconds"] > 0 for row in history)

    manifest = Manifest.read(scratch_run / "splits.csv", colours)
    assert manifest.counts()["train"] == {"blue": 8, "red": 8}
    metrics = json.loads((scratch_run / "metrics.json").read_text())
    assert metrics["n"] == 4 and sum(map(sum, metrics["confusion_matrix"])) == 4
    assert any(path.name.startswith("events.out.tfevents") for path in (scratch_run / "logs").rglob("*"))

    model = Run.open(scratch_run).keras_model()
    assert model.output_shape == (None, 2)


def test_training_progress_is_one_line_per_epoch_off_a_terminal(colours, tmp_path, capfd):
    assert main(["train", "--model", "scratch", "--data", str(colours), "--epochs", "2", "--image-size", "32",
                 "--batch-size", "8", "--out", str(tmp_path / "run")]) == 0
    out, err = capfd.readouterr()
    assert out.strip() == str(tmp_path / "run")
    epoch_lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epoch_lines] == ["epoch 1/2", "epoch 2/2"]
    assert "ETA" not in err and "step" not in err


def test_the_same_seed_gives_the_same_splits(scratch_run, colours, tmp_path):
    again = load(colours, image_size=32, seed=3).manifest.write(tmp_path / "splits.csv")
    assert (scratch_run / "splits.csv").read_text() == again.read_text()


MOBILENET_V2 = models.get_backbone("mobilenet_v2")


def test_plan_fine_tunes_after_a_third_of_the_epochs_at_a_lower_rate():
    finetune = models.get_preset("finetune")
    first, second = plan(finetune, MOBILENET_V2, 3)
    assert (first.start, first.end, first.unfreeze_from) == (0, 1, None)
    assert (second.start, second.end, second.unfreeze_from) == (1, 3, "block_11_expand_relu")
    assert second.learning_rate == pytest.approx(first.learning_rate * finetune.fine_tune_learning_rate_factor)
    assert second.learning_rate < first.learning_rate
    assert [(s.start, s.end) for s in plan(finetune, MOBILENET_V2, 20)] == [(0, 7), (7, 20)]
    assert [(s.start, s.end) for s in plan(finetune, MOBILENET_V2, 2)] == [(0, 1), (1, 2)]
    assert len(plan(finetune, MOBILENET_V2, 1)) == 1
    assert len(plan(models.get_preset("transfer"), MOBILENET_V2, 20)) == 1
    # Fine-tuning starts where the backbone's row says: MobileNetV2's layer 100, the reference's fine_tune_at.
    base = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights=None)
    assert [layer.name for layer in base.layers].index(second.unfreeze_from) == 100


def test_a_run_recorded_without_stages_gets_them_from_its_preset():
    recorded = {"preset": "finetune", "class_names": ["a", "b"], "data": "d", "epochs": 20, "image_size": 224,
                "batch_size": 32, "seed": 42, "weights": "w", "learning_rate": 1e-3}
    expected = plan(models.get_preset("finetune"), MOBILENET_V2, 20, 1e-3)
    assert RunConfig.from_dict(recorded).settings.stages == expected


def test_plan_keeps_one_epoch_for_each_stage():
    head_heavy = dataclasses.replace(models.get_preset("finetune"), head_epochs_share=0.9)
    head_light = dataclasses.replace(models.get_preset("finetune"), head_epochs_share=0.0)
    assert [(s.start, s.end) for s in plan(head_heavy, MOBILENET_V2, 4)] == [(0, 3), (3, 4)]
    assert [(s.start, s.end) for s in plan(head_light, MOBILENET_V2, 4)] == [(0, 1), (1, 4)]


def test_the_fine_tuning_cut_is_the_last_tensor_that_separates_the_base():
    base = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights=None)
    # Layer 100 is inside block 11, whose residual connection reads block 10's output.
    assert base.layers[100].name == "block_11_expand_relu"
    assert separating_tensor(base, "block_11_expand_relu") is base.get_layer("block_10_project_BN").output
    assert separating_tensor(base, base.layers[107].name) is base.get_layer("block_11_add").output


def test_interrupted_run_resumes_where_it_stopped(colours, tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train("augmented", colours, epochs=3, image_size=32, batch_size=8, out=run, callbacks=[StopAfter(1)])
    assert [row["epoch"] for row in folder.read_history(run / "history.csv")] == [1]
    assert (run / "model.keras").is_file() and not (run / "metrics.json").exists()

    assert main(["train", "--resume", str(run)]) == 0
    history = folder.read_history(run / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert (run / "metrics.json").is_file() and not (run / "checkpoint").exists()

    assert main(["train", "--resume", str(run)]) == 2
    assert "already finished its 3 epochs" in capsys.readouterr().err


class CtrlCInFinalizer(keras.callbacks.Callback):
    """Delivers Ctrl-C while the garbage collector runs a finalizer, where Python prints
    "Exception ignored" and drops the KeyboardInterrupt (as it did in CI, under TensorFlow)."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0 and self.params and not getattr(self, "sent", False):
            self.sent = True

            class Dropped:
                def __del__(self):
                    signal.raise_signal(signal.SIGINT)

            Dropped()


def test_a_ctrl_c_dropped_by_a_finalizer_still_stops_training(colours, tmp_path, monkeypatch):
    run = tmp_path / "run"
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)  # where Python reports what it drops
    with pytest.raises(KeyboardInterrupt):
        train("augmented", colours, epochs=3, image_size=32, batch_size=8, out=run, callbacks=[CtrlCInFinalizer()])
    assert [type(d.exc_value) for d in dropped] == [KeyboardInterrupt]
    monkeypatch.undo()
    assert folder.read_history(run / "history.csv") == []  # stopped in the first epoch, not after the last
    assert not (run / "metrics.json").exists()
    assert main(["train", "--resume", str(run)]) == 0
    assert [row["epoch"] for row in folder.read_history(run / "history.csv")] == [1, 2, 3]


@pytest.mark.slow
def test_finetune_on_frozen_features_resumes_inside_stage_two_and_saves_the_whole_model(
        colours, tmp_path, shared_weights, monkeypatch):
    run = tmp_path / "finetune"
    settings = dict(epochs=4, image_size=64, batch_size=8, weights=shared_weights, views=2, out=run)
    with pytest.raises(KeyboardInterrupt):
        train("finetune", colours, **settings, callbacks=[StopAfter(3)])
    checkpoints = {p.name for p in (run / "checkpoint").iterdir()}
    best = folder.best_epoch(folder.read_history(run / "history.csv"))["epoch"]
    assert checkpoints == {"stage-1-epoch-1.weights.h5", "stage-2-epoch-3.weights.h5", f"best-epoch-{best}.weights.h5"}
    recorded = json.loads((run / "config.json").read_text())["stages"]
    assert recorded == [
        {"start": 0, "end": 1, "learning_rate": 1e-3, "unfreeze_from": None},
        {"start": 1, "end": 4, "learning_rate": pytest.approx(1e-5), "unfreeze_from": "block_11_expand_relu"},
    ]
    # Resuming follows the stages the run recorded, even if the preset's schedule has changed since.
    monkeypatch.setattr("catdog.runs.settings.plan", lambda *args: pytest.fail("resume must not plan anew"))
    resume(run)
    history = folder.read_history(run / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]

    saved = Run.open(run).keras_model()
    trained = saved.get_layer(BASE)
    pretrained = models.create_model("finetune", 2, image_size=64, weights=shared_weights).get_layer(BASE)
    changed = {layer.name for layer, before in zip(trained.layers, pretrained.layers, strict=True)
               if not all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), before.get_weights(), strict=True))}
    below = {layer.name for layer in pretrained.layers[:100]}
    batch_norms = {layer.name for layer in pretrained.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert changed and not changed & below and not changed & batch_norms

    # The saved end-to-end model scores the validation split exactly as training measured it.
    best = folder.best_epoch(history)
    data = load(colours, image_size=64, batch_size=8, manifest=Manifest.read(run / "splits.csv", colours))
    metrics, _ = score(numpy_function(saved), data.validation, data.class_names)
    assert metrics["accuracy"] == pytest.approx(best["val_accuracy"])
    assert metrics["loss"] == pytest.approx(best["val_loss"], rel=1e-3)


def test_frozen_features_are_the_models_own_activations(colours, shared_weights):
    model = models.create_model("transfer", 2, image_size=64, weights=shared_weights)
    data = load(colours, image_size=64, batch_size=8)
    features = FrozenFeatures(model, plan(models.get_preset("transfer"), MOBILENET_V2, 2), data, views=3,
                              batch_size=8, seed=0)
    train_x, train_y = features.features("train")
    assert train_x.shape == (16, 3, 1280) and sorted(train_y) == [0] * 8 + [1] * 8

    # The stored views are what the model computes from the image, from its mirror image,
    # and from a random augmentation of it.
    images = np.concatenate([x for x, _ in data.train.as_numpy_iterator()])
    base = keras.Model(model.input, model.get_layer(POOL).output)
    direct = np.asarray(base(images, training=False))
    mirrored = np.asarray(base(images[:, :, ::-1], training=False))
    for stored in train_x:
        i = int(np.argmin(np.abs(direct - stored[0]).sum(axis=1)))
        np.testing.assert_allclose(stored[0], direct[i], atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(stored[1], mirrored[i], atol=1e-4, rtol=1e-4)
        assert not np.allclose(stored[2], direct[i], atol=1e-3)


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "resnet"], "unknown --model 'resnet'"),
    (["--model", "transfer", "--weights", "missing.h5"], "--weights: weights file missing.h5 does not exist"),
    (["--model", "scratch", "--backbone", "mobilenet_v2"], "has no pretrained backbone; leave out --backbone"),
    (["--model", "scratch", "--image-size", "8"], "cannot be built for --image-size 8"),
    (["--model", "transfer", "--image-size", "16", "--weights", "none"],
     "--image-size must be at least 32 px for backbone mobilenet_v2"),
    ([], "name the model to train"),
])
def test_bad_training_options_are_one_line_errors(args, message, colours, tmp_path, capsys):
    assert main(["train", "--data", str(colours), "--out", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("catdog: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_a_finished_run_folder_is_not_overwritten(scratch_run, colours, capsys):
    assert main(["train", "--model", "scratch", "--data", str(colours), "--out", str(scratch_run)]) == 2
    assert "already holds a run" in capsys.readouterr().err
