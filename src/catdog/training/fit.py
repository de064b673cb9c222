"""The fit loop: a model trained stage by stage into its run folder, from any finished epoch.

Each stage (`TrainSettings.stages`) compiles the part of the model it trains and fits it with
Keras, recording every epoch (catdog.training.callbacks). The checkpoint of a stage is the
state of that part; resuming loads those of the stages already (or partly) done. A pretrained
model's frozen bottom runs once per image (catdog.training.frozen). When training ends, by
its last epoch or early, `training.json` says how, the checkpoints are removed, and for a
model whose head trained on stored features, those of the training and validation images are
left in the run's cache for the steps after training (`folder.head_inputs_path`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from catdog import files
from catdog.data import Data
from catdog.data.labels import MULTILABEL
from catdog.data.pack import named_read_errors
from catdog.data.splits import TRAIN, VALIDATION
from catdog.errors import CatdogError
from catdog.runs import TrainSettings, folder
from catdog.terminal import duration, percent
from catdog.training import checkpoints, interrupts, recipe
from catdog.training.callbacks import EpochProgress, RunRecorder, StopWhenStalled, TrainingStopped, ValidationStalled
from catdog.training.frozen import FrozenFeatures

logger = logging.getLogger(__name__)


def fit(run: Path, model: keras.Model, settings: TrainSettings, data: Data, history: list[dict],
        callbacks: Sequence[keras.callbacks.Callback]) -> None:
    """Fit `model` stage by stage from epoch `len(history)` into the run folder `run`, then record
    how training ended. Ctrl-C leaves the run as it was after its last finished epoch; a pack
    that fails to read stops training with a `CatdogError` naming the shard."""
    frozen = None
    stopped = None
    try:
        with interrupts.caught(), named_read_errors(data.root):
            if settings.frozen_features and recipe.has_base(model):
                frozen = FrozenFeatures(model, settings.stages, data, settings.views, settings.batch_size,
                                        settings.seed, drop_remainder=_replicas(model) > 1,
                                        cache_folder=run / folder.CACHE_DIR)
            _fit_stages(run, model, settings, data, history, callbacks, frozen)
    except TrainingStopped as e:
        stopped = e.reason
        if not history:
            _record_outcome(run, history, stopped)
            raise CatdogError(f"{e.reason}; no epoch finished, so there is no model to keep "
                              "(try a lower learning rate)") from e
        log = logger.info if isinstance(e, ValidationStalled) else logger.warning
        log(f"{e.reason}: training stopped; keeping the best of the {len(history)} finished epochs")
    except KeyboardInterrupt:
        logger.info(f"interrupted after epoch {len(history)}; continue with: catdog train --resume {run}")
        raise
    feature_seconds = frozen.seconds if frozen is not None else 0.0
    _record_outcome(run, history, stopped, feature_seconds)
    checkpoints.tidy(run)
    if frozen is not None:
        _keep_head_inputs(run, frozen)
    best = folder.best_epoch(history)
    epoch_seconds = sum(row["seconds"] for row in history)
    parts = f" (features {duration(feature_seconds)}, epochs {duration(epoch_seconds)})" * bool(feature_seconds)
    logger.info(f"{settings.preset}: trained in {duration(epoch_seconds + feature_seconds)}{parts}; keeping epoch "
                f"{best['epoch']} of {len(history)}, the best on validation ({percent(best['val_accuracy'])})")


def training_ended(run: Path, settings: TrainSettings, history: list[dict]) -> bool:
    """Whether the run has trained all its epochs, or stopped early."""
    outcome = folder.read_json(run / folder.TRAINING_FILE) or {}
    return len(history) >= settings.epochs or bool(outcome.get("stopped"))


def _replicas(model: keras.Model) -> int:
    """How many replicas the model trains on (the strategy it was built under)."""
    return model.distribute_strategy.num_replicas_in_sync


def _fit_stages(run: Path, model: keras.Model, settings: TrainSettings, data: Data, history: list[dict],
                callbacks, frozen: FrozenFeatures | None) -> None:
    preset = settings.spec
    replicas = _replicas(model)
    steps = math.ceil(len(data.manifest.files(TRAIN)[0]) / settings.batch_size)
    multilabel = data.task == MULTILABEL
    if multilabel:
        class_weight, weights = None, recipe.tag_weights(settings.class_weight, data.manifest.files(TRAIN)[1])
        if weights is not None:
            logger.info(f"tag weights ({settings.class_weight}): positives from {weights[0].min():.2f} to "
                        f"{weights[0].max():.2f}, negatives from {weights[1].min():.2f} to {weights[1].max():.2f}")
    else:
        weights = None
        class_weight = recipe.class_weights(settings.class_weight, list(data.manifest.counts()[TRAIN].values()))
        if class_weight:
            logger.info(f"class weights ({settings.class_weight}): from {min(class_weight.values()):.2f} "
                        f"to {max(class_weight.values()):.2f}")
    for number, stage in enumerate(settings.stages, 1):
        recipe.set_trainable(model, stage)
        top = frozen.top(stage) if frozen else model
        if stage.end <= len(history):  # done before an interruption
            checkpoints.load_checkpoint(top, checkpoints.state_checkpoint(run, number, stage.end))
            continue
        top.compile(optimizer=recipe.optimizer(preset, stage, steps), loss=recipe.loss(preset, multilabel, weights),
                    metrics=recipe.metrics(multilabel), jit_compile=settings.jit_compile)
        first = max(len(history), stage.start)
        if first > stage.start:  # interrupted inside this stage
            top.optimizer.build(top.trainable_variables)
            checkpoints.load_checkpoint(top, checkpoints.state_checkpoint(run, number, first))
        if stage.unfreeze_from is not None and first == stage.start:
            logger.info(f"fine-tuning from epoch {first + 1}: the pretrained network's layers from "
                        f"{stage.unfreeze_from} up train too, at a learning rate of {stage.learning_rate:g}")
        if frozen:
            train_data, validation_data = frozen.datasets(stage)
        else:  # several replicas: no last batch smaller than the replica count (see distribute.py)
            train_data = data.train.rebatch(settings.batch_size, drop_remainder=True) if replicas > 1 else data.train
            validation_data = data.validation
        train_data, validation_data = recipe.batches(preset, train_data, validation_data,
                                                     num_classes=len(data.class_names), seed=settings.seed,
                                                     multilabel=multilabel)
        last = number == len(settings.stages)
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():  # stdout holds results only
            # The pipeline's batch count is unknown until the first epoch ends; Keras warns about that.
            warnings.filterwarnings("ignore", "Your input ran out of data")
            top.fit(
                train_data, validation_data=validation_data, initial_epoch=first, epochs=stage.end,
                shuffle=False, verbose=0, class_weight=class_weight,
                callbacks=[
                    *recipe.callbacks(preset),
                    EpochProgress(settings.epochs, steps),
                    RunRecorder(run, model, number, history, settings.epochs),
                    *([StopWhenStalled(history, settings.patience, stage.start)] if settings.patience and last else []),
                    keras.callbacks.TensorBoard(log_dir=str(run / folder.LOGS_DIR)),
                    *callbacks,
                ],
            )
    interrupts.raise_pending()  # a Ctrl-C dropped after the last batch


def _record_outcome(run: Path, history: list[dict], stopped: str | None, feature_seconds: float = 0.0) -> None:
    """`training.json`: epochs run, the best, why training stopped early if it did, and its seconds:
    the epochs' and, for a frozen model, those spent computing the features it trained on
    (`feature_seconds`, which the epochs' own times leave out)."""
    outcome = folder.read_json(run / folder.TRAINING_FILE) or {}
    stopped = stopped or outcome.get("stopped")
    best = folder.best_epoch(history)["epoch"] if history else None
    feature_seconds = feature_seconds or outcome.get("feature_seconds", 0.0)
    files.write_json(run / folder.TRAINING_FILE, {
        "epochs": len(history), "best_epoch": best, "stopped": stopped,
        "seconds": sum(row["seconds"] for row in history) + feature_seconds, "feature_seconds": feature_seconds})


def _keep_head_inputs(run: Path, frozen: FrozenFeatures) -> None:
    """Leave what the head reads for the training and validation images (while the layers under
    it are those of the saved model) for the steps after training."""
    for split in (TRAIN, VALIDATION):
        stored = frozen.head_inputs(split)
        if stored is None:
            return
        features, labels = stored
        with files.atomic_path(folder.head_inputs_path(run, split)) as tmp, open(tmp, "wb") as f:
            np.savez(f, features=np.asarray(features), labels=labels)
