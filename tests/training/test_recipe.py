"""The from-scratch recipe's parts: the fused batch normalisation, the average of the weights,
label smoothing, MixUp and CutMix."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import keras
import numpy as np
import pytest
import tensorflow as tf

from catdog.data import load
from catdog.errors import CatdogError, ParameterError
from catdog.evaluation import score
from catdog.models import presets
from catdog.models.inference import numpy_function
from catdog.models.layers import FusedBatchNormalization
from catdog.runs import Run, folder
from catdog.training import recipe

from conftest import resume, train


def with_preset(monkeypatch, name: str, **changes) -> presets.Preset:
    """Preset `name` with `changes`, in place of the registered one for the test."""
    changed = dataclasses.replace(presets.PRESETS[name], **changes)
    monkeypatch.setattr(presets, "PRESETS", MappingProxyType({**presets.PRESETS, name: changed}))
    return changed


def test_fused_batch_normalisation_trains_exactly_like_keras():
    inputs = tf.constant(np.random.default_rng(0).normal(1.0, 3.0, (8, 6, 6, 5)).astype("float32"))
    weights = tf.constant(np.random.default_rng(1).normal(size=inputs.shape).astype("float32"))
    results = []
    for layer in (keras.layers.BatchNormalization(momentum=0.9), FusedBatchNormalization(momentum=0.9)):
        layer.build(inputs.shape)
        layer.gamma.assign(np.linspace(0.5, 2.0, 5))
        layer.beta.assign(np.linspace(-1.0, 1.0, 5))
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs, training=True)
            loss = tf.reduce_sum(outputs * weights)
        gradients = tape.gradient(loss, [inputs, layer.gamma, layer.beta])
        results.append([outputs, *gradients, layer.moving_mean, layer.moving_variance, layer(inputs, training=False)])
    keras_results, fused_results = results
    for expected, actual in zip(keras_results, fused_results, strict=True):
        np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=1e-4, atol=1e-4)


def test_weight_averaging_validates_and_saves_the_averaged_weights_and_resumes(colours, tmp_path, monkeypatch):
    with_preset(monkeypatch, "cnn", weight_averaging=0.5, learning_rate=1e-2)
    run = tmp_path / "cnn"

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("cnn", colours, epochs=3, image_size=32, batch_size=4, seed=1, out=run,
              callbacks=[StopAfterFirstEpoch()])
    resume(run)

    history = folder.read_history(run / folder.HISTORY_FILE)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    best = folder.best_epoch(history)
    model = Run.open(run).keras_model()
    data = load(colours, image_size=32, batch_size=4, seed=1)
    scored, _ = score(numpy_function(model), data.validation, data.class_names)
    # The saved model is the one validation scored: the average, not the weights last trained.
    assert scored["loss"] == pytest.approx(best["val_loss"], rel=1e-3)


def test_one_hot_presets_get_one_hot_validation_labels_and_mixed_training_batches(colours, monkeypatch):
    preset = with_preset(monkeypatch, "cnn", mixup=0.4, cutmix=1.0)
    data = load(colours, image_size=32, batch_size=8, seed=1)
    train_batches, validation = recipe.batches(preset, data.train, data.validation, num_classes=2, seed=1)

    assert isinstance(recipe.loss(preset), keras.losses.CategoricalCrossentropy)
    for _, labels in validation:
        assert set(np.unique(labels.numpy())) <= {0.0, 1.0}
    mixed = np.concatenate([labels.numpy() for _ in range(3) for _, labels in train_batches])
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, atol=1e-5)
    assert ((mixed > 0.01) & (mixed < 0.99)).any()  # some labels are mixtures of the two classes


def test_class_index_presets_keep_their_batches_and_sparse_loss(colours):
    preset = presets.PRESETS["scratch"]
    data = load(colours, image_size=32, batch_size=8, seed=1)
    assert recipe.batches(preset, data.train, data.validation, num_classes=2, seed=1) == (data.train,
                                                                                            data.validation)
    assert isinstance(recipe.loss(preset), keras.losses.SparseCategoricalCrossentropy)
    assert recipe.callbacks(preset) == []


def test_training_stops_when_validation_stalls_keeps_the_best_epoch_and_says_why(colours, tmp_path, monkeypatch):
    # At this rate the weights cannot move, so validation never improves after the first epoch.
    with_preset(monkeypatch, "scratch", learning_rate=1e-12)
    run = train("scratch", colours, epochs=10, image_size=32, batch_size=8, seed=1, out=tmp_path / "run", patience=2)

    assert [row["epoch"] for row in folder.read_history(run / folder.HISTORY_FILE)] == [1, 2, 3]
    outcome = folder.read_json(run / folder.TRAINING_FILE)
    assert outcome["best_epoch"] == 1 and outcome["epochs"] == 3
    assert outcome["stopped"] == "validation had not improved for 2 epochs since the best, epoch 1"
    assert Run.open(run).settings.patience == 2
    assert (run / folder.METRICS_FILE).is_file() and not (run / folder.CHECKPOINT_DIR).exists()
    with pytest.raises(CatdogError, match="already finished"):
        resume(run)  # an early stop ends the run: resuming trains no further


def test_patience_zero_runs_every_epoch_and_negative_is_refused(colours, tmp_path, monkeypatch):
    with_preset(monkeypatch, "scratch", learning_rate=1e-12, patience=1)
    run = train("scratch", colours, epochs=3, image_size=32, batch_size=8, seed=1, out=tmp_path / "run", patience=0)
    assert len(folder.read_history(run / folder.HISTORY_FILE)) == 3
    assert folder.read_json(run / folder.TRAINING_FILE)["stopped"] is None
    with pytest.raises(ParameterError, match="patience must be 0"):
        train("scratch", colours, epochs=3, out=tmp_path / "other", patience=-1)
