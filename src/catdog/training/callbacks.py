"""The callbacks that make a run folder: the epoch record with its checkpoint, and the best model."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras

from catdog import files, runs

logger = logging.getLogger(__name__)


class EpochLog(keras.callbacks.Callback):
    """After every epoch: save the weights of the model being fit, with its optimizer's state,
    to `checkpoint`, then add the epoch to `history.csv`, the record of what is finished."""

    def __init__(self, history_path: Path, checkpoint: Path, history: list[dict], epochs: int,
                 started: float | None, print_lines: bool):
        super().__init__()
        self.history_path, self.checkpoint, self.history, self.epochs = history_path, checkpoint, history, epochs
        self.started, self.print_lines = started, print_lines

    def on_epoch_begin(self, epoch, logs=None):
        self.started = self.started or time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        self.started = None
        with files.atomic_path(self.checkpoint) as tmp:
            self.model.save_weights(tmp)
        row = {"epoch": epoch + 1, **{k: float(logs[k]) for k in runs.HISTORY_FIELDS[1:-1]}, "seconds": seconds}
        self.history.append(row)
        runs.write_history(self.history_path, self.history)
        if self.print_lines:
            logger.info(f"epoch {epoch + 1}/{self.epochs}: loss {row['loss']:.4f}, accuracy {row['accuracy']:.4f}, "
                        f"val_loss {row['val_loss']:.4f}, val_accuracy {row['val_accuracy']:.4f} ({seconds:.1f}s)")


class BestModelCheckpoint(keras.callbacks.Callback):
    """Save `model` (the whole model, also when only its top is being fit) after every epoch
    that beats the best so far: higher validation accuracy, or the same with lower validation
    loss, since small validation sets often tie. Saved atomically (Keras' `ModelCheckpoint`
    monitors one quantity and writes in place)."""

    def __init__(self, path: Path, model: keras.Model, best: dict | None = None):
        super().__init__()
        self.path, self.whole = path, model
        self.best = runs.epoch_rank(best) if best else None

    def on_epoch_end(self, epoch, logs=None):
        rank = runs.epoch_rank(logs)
        if self.best is None or rank > self.best:
            self.best = rank
            with files.atomic_path(self.path) as tmp:
                self.whole.save(tmp)
