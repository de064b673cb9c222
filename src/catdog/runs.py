"""The run folder: everything one training run leaves behind, and how to open it again.

A run folder holds::

    config.json          every setting, the class names, package and library versions
    splits.csv           the manifest of files used (see splits.py)
    model.keras          the trained model (best epoch by validation accuracy, then loss)
    history.csv          per epoch: loss, accuracy, val_loss, val_accuracy, seconds
    metrics.json         test-split scores (see evaluate.py)
    accuracy.png, loss.png, confusion_matrix.png, misclassified.png
    logs/                TensorBoard logs
    checkpoint/          the last finished epoch, for `catdog train --resume` (removed when done)
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catdog import config, files
from catdog.errors import CatdogError

CONFIG = "config.json"
SPLITS = "splits.csv"
MODEL = "model.keras"
HISTORY = "history.csv"
METRICS = "metrics.json"
LOGS = "logs"
CHECKPOINT = "checkpoint"
ACCURACY_PLOT = "accuracy.png"
LOSS_PLOT = "loss.png"
CONFUSION_MATRIX_PLOT = "confusion_matrix.png"
MISCLASSIFIED_PLOT = "misclassified.png"

HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")


def new_run_dir(preset: str, out: str | Path | None = None) -> Path:
    """`out` if given, else `runs/<preset>-<timestamp>/` (made unique if it exists)."""
    if out is not None:
        return Path(out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = config.RUNS_DIR / f"{preset}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = config.RUNS_DIR / f"{preset}-{stamp}-{n}"
    return path


@dataclass
class Run:
    """An opened run folder."""

    path: Path
    config: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        return list(self.config["class_names"])

    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])

    @property
    def preset(self) -> str:
        return str(self.config["preset"])

    @property
    def metrics(self) -> dict[str, Any] | None:
        path = self.path / METRICS
        return json.loads(path.read_text()) if path.is_file() else None

    @property
    def history(self) -> list[dict[str, float]]:
        """One row per finished epoch (see `HISTORY_FIELDS`); empty before the first."""
        return read_history(self.path / HISTORY)

    @property
    def model_path(self) -> Path:
        return self.path / MODEL

    def load_model(self):
        """The trained Keras model (compiled state is not needed to predict)."""
        import keras

        if not self.model_path.is_file():
            raise CatdogError(
                f"run folder {self.path} has no {MODEL}; it has not finished an epoch "
                f"(continue it with `catdog train --resume {self.path}`)"
            )
        return keras.saving.load_model(self.model_path, compile=False)


def open_run(path: str | Path) -> Run:
    """Open a run folder written by `catdog train`, with a clear error if it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise CatdogError(f"run folder {path} does not exist")
    config_path = path / CONFIG
    if not config_path.is_file():
        raise CatdogError(f"{path} is not a catdog run folder: it has no {CONFIG}")
    try:
        cfg = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise CatdogError(f"{config_path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    return Run(path=path, config=cfg)


def epoch_rank(row: dict[str, float]) -> tuple[float, float]:
    """How epochs compare: by validation accuracy, then by lower validation loss."""
    return row["val_accuracy"], -row["val_loss"]


def best_epoch(history: list[dict[str, float]]) -> dict[str, float]:
    """The epoch whose model a run keeps as `model.keras` (the first of equals)."""
    return max(history, key=epoch_rank)


def read_history(path: str | Path) -> list[dict[str, float]]:
    """The rows of a `history.csv`, numbers as floats (`epoch` as int); [] if there is none."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(path.read_text())):
        values = {key: float(value) for key, value in row.items()}
        values["epoch"] = int(values["epoch"])
        rows.append(values)
    return rows


def write_history(path: str | Path, rows: list[dict[str, float]]) -> Path:
    """Write `history.csv` (atomically): `HISTORY_FIELDS`, one row per epoch."""
    text = io.StringIO()
    writer = csv.DictWriter(text, HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return files.write_text(path, text.getvalue())
