"""The callbacks that make a run folder, epoch by epoch, so that it can always be completed,
that end training early, and that show an epoch's progress on the terminal.

After every epoch, in this order:

1. the state of the part being trained (weights and optimizer) goes to
   `checkpoint/stage-S-epoch-E.weights.h5`, and, if the epoch is the best so far, the whole
   model's weights to `checkpoint/best-epoch-E.weights.h5`;
2. the epoch is appended to `history.csv`: the record of what is finished (the commit);
3. then the model is saved as `model.keras` if the epoch is the best, and older
   checkpoints are removed.

With an optimizer that keeps a moving average of the weights (`use_ema`), the best
checkpoint and `model.keras` hold the averaged weights, which validation scored (see
`catdog.training.recipe.callbacks`), and the state checkpoint the trained ones.

Every write is atomic. A process killed anywhere leaves a run that `resume` completes:
files of an epoch not yet in `history.csv` are ignored and removed, and `model.keras` is
rebuilt from the best epoch's weights (see catdog.training.checkpoints).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import keras

from catdog import files
from catdog.runs import folder
from catdog.terminal import duration, percent, progress
from catdog.training import interrupts
from catdog.training.checkpoints import (
    averaged_weights,
    best_checkpoint,
    remove_checkpoints,
    save_model,
    state_checkpoint,
)

logger = logging.getLogger(__name__)

# Bytes per weight in a checkpoint of the part being trained: the weight and Adam's two moments.
_STATE_BYTES_PER_WEIGHT = 3 * 4


class TrainingStopped(Exception):
    """Training cannot go on (the loss is no longer a number); `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ValidationStalled(TrainingStopped):
    """Training ended early, as planned: validation stopped improving (see `StopWhenStalled`)."""


class StopWhenStalled(keras.callbacks.Callback):
    """Ends training once the best epoch (`folder.best_epoch`: validation accuracy, then loss) is
    `patience` epochs behind, counting only epochs after `stage_start` (the epochs finished
    before the stage it watches). Placed after `RunRecorder`, it raises `ValidationStalled`
    once the epoch is recorded, so that the run keeps its best epoch and its reason."""

    def __init__(self, history: list[dict], patience: int, stage_start: int):
        super().__init__()
        self.history, self.patience, self.stage_start = history, patience, stage_start

    def on_epoch_end(self, epoch, logs=None):
        best = int(folder.best_epoch(self.history)["epoch"])
        waited = len(self.history) - max(best, self.stage_start)
        if waited >= self.patience:
            raise ValidationStalled(f"validation had not improved for {waited} epochs since the best, epoch {best}")


class EpochProgress(keras.callbacks.Callback):
    """A progress bar over each epoch's training batches, with the running accuracy
    (catdog.terminal: drawn only on a terminal, in place of Keras' own, which writes
    accuracies as fractions); it disappears when the epoch's line is logged."""

    def __init__(self, epochs: int, steps: int | None):
        super().__init__()
        self.epochs, self.steps = epochs, steps  # Keras knows the steps of a pipeline only after an epoch
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self.label = f"epoch {epoch + 1}/{self.epochs}"
        self.bar = progress(self.label, total=self.params.get("steps") or self.steps, unit="batch")

    def on_train_batch_end(self, batch, logs=None):
        if "accuracy" in (logs or {}):
            self.bar.set_postfix_str(f"accuracy {percent(float(logs['accuracy']))}", refresh=False)
        self.bar.update()

    def on_test_begin(self, logs=None):
        if self.bar is not None:
            self.bar.set_description_str(f"{self.label}, validating")

    def on_epoch_end(self, epoch, logs=None):
        self.on_train_end()

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class RunRecorder(keras.callbacks.Callback):
    """Records each finished epoch of `whole` (the end-to-end model; `self.model` is the part
    being fit, which is smaller when the frozen bottom's features are stored) into `run`."""

    def __init__(self, run: Path, whole: keras.Model, stage: int, history: list[dict], epochs: int):
        super().__init__()
        self.run, self.whole, self.stage, self.history, self.epochs = run, whole, stage, history, epochs
        self.started = None
        self.best = folder.epoch_rank(folder.best_epoch(history)) if history else None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        interrupts.raise_pending()
        if logs and not math.isfinite(float(logs.get("loss", 0.0))):
            raise TrainingStopped(f"the training loss became {logs['loss']} in epoch {len(self.history) + 1}")

    def on_epoch_end(self, epoch, logs=None):
        interrupts.raise_pending()
        number = epoch + 1
        if not all(math.isfinite(float(logs[key])) for key in ("loss", "val_loss")):
            raise TrainingStopped(f"the loss became {logs['loss']} (validation: {logs['val_loss']}) in epoch {number}")
        seconds = time.perf_counter() - self.started
        self.started = None
        rank = folder.epoch_rank(logs)
        is_best = self.best is None or rank > self.best
        state = state_checkpoint(self.run, self.stage, number)
        files.require_free_space(state, self._bytes_needed(is_best))
        with files.atomic_path(state) as tmp:
            self.model.save_weights(tmp)
        if is_best:
            with files.atomic_path(best_checkpoint(self.run, number)) as tmp, averaged_weights(self.model):
                self.whole.save_weights(tmp)
        row = {"epoch": number, **{k: float(logs[k]) for k in folder.HISTORY_FIELDS[1:-1]}, "seconds": seconds}
        self.history.append(row)
        folder.write_history(self.run / folder.HISTORY_FILE, self.history)  # the commit
        if is_best:
            self.best = rank
            with averaged_weights(self.model):
                save_model(self.whole, self.run / folder.MODEL_FILE)
        remove_checkpoints(self.run, keep={state_checkpoint(self.run, self.stage, number)},
                           keep_best=folder.best_epoch(self.history)["epoch"], stage=self.stage)
        best = ", the best so far" if is_best and len(self.history) > 1 else ""
        logger.info(f"epoch {number}/{self.epochs}: accuracy {percent(row['accuracy'])}, validation "
                    f"{percent(row['val_accuracy'])}{best} (loss {row['loss']:.3f}, validation {row['val_loss']:.3f}); "
                    f"{duration(seconds)}")

    def _bytes_needed(self, is_best: bool) -> int:
        state = self.model.count_params() * _STATE_BYTES_PER_WEIGHT
        whole = self.whole.count_params() * 4
        return state + (2 * whole if is_best else 0) + 16 * 2**20
