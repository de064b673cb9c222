"""The run folder: where each of a run's files goes, who may write it, and its history.

A run folder holds::

    config.json          the run's settings (see catdog.runs.config)
    splits.csv           the manifest of files used (see catdog.data.splits)
    model.keras          the trained model (best epoch by validation accuracy, then loss)
    history.csv          per epoch: loss, accuracy, val_loss, val_accuracy, seconds
    training.json        how training ended: epochs run, best epoch, why it stopped early if it did
    calibration.json     the temperature fitted on the validation split (see catdog.workflow)
    ood.npz              the out-of-distribution detector and its threshold (see catdog.trust.ood)
    metrics.json         test-split scores (see catdog.evaluation)
    accuracy.png, loss.png, confusion_matrix.png, misclassified.png, reliability.png
    pr_curves.png, tag_examples.png   a multi-label run's (its confusion_matrix.png: per tag)
    logs/                TensorBoard logs
    checkpoint/          the last finished epoch and the best one, for `--resume` (removed when
                         training ends)
    cache/               decoded images and frozen features that do not fit in memory, while
                         training, and the head's inputs for the steps after it (removed when the
                         run is complete)
    export/              exported models (see catdog.formats)
    .catdog.lock         held (flock) by the process writing the run

catdog writes a new run only into a new or empty folder, and one process at a time (`locked`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from catdog import files
from catdog.errors import CatdogError, ParameterError
from catdog.runs.config import CONFIG_FILE

# Where runs go when no folder is named.
RUNS_DIR = Path("runs")
# What an exercise (`catdog run`, catdog.exercise) writes beside its models' run folders: its
# summary, which names the model it chose ("best"), whose run an exercise folder opens as.
EXERCISE_SUMMARY = "summary.json"
MANIFEST_FILE = "splits.csv"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
TRAINING_FILE = "training.json"
CALIBRATION_FILE = "calibration.json"
OOD_FILE = "ood.npz"
LOCK_FILE = ".catdog.lock"
LOGS_DIR = "logs"
CHECKPOINT_DIR = "checkpoint"
CACHE_DIR = "cache"
ACCURACY_PLOT = "accuracy.png"
LOSS_PLOT = "loss.png"
CONFUSION_MATRIX_PLOT = "confusion_matrix.png"
MISCLASSIFIED_PLOT = "misclassified.png"
RELIABILITY_PLOT = "reliability.png"
# A multi-label run's: each tag's precision-recall curve, and examples of its false positives and negatives.
PR_CURVES_PLOT = "pr_curves.png"
TAG_EXAMPLES_PLOT = "tag_examples.png"

HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")


def new_run_dir(preset: str, out: str | Path | None = None) -> Path:
    """`out` if given and free for a new run, else `runs/<preset>-<timestamp>/` (made unique if it exists).

    `out` must be a new or empty folder: a folder holding a run is to be resumed, and catdog
    writes no run into a folder of other files.
    """
    if out is not None:
        out = Path(out)
        if holder := lock_holder(out):
            raise CatdogError(f"{out} is being written by {holder}; wait for it to finish or stop it")
        if out.exists() and not out.is_dir():
            raise ParameterError("out", f"{{name}}: {out} is a file; give a folder for the run")
        if (out / CONFIG_FILE).exists():
            raise CatdogError(f"{out} already holds a run; continue it with --resume {out} or choose another --out")
        if out.is_dir() and any(entry.name != LOCK_FILE for entry in out.iterdir()):
            raise ParameterError("out", f"{{name}}: {out} is not empty and is not a catdog run folder; "
                                        "give a new or empty folder")
        return out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RUNS_DIR / f"{preset}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = RUNS_DIR / f"{preset}-{stamp}-{n}"
    return path


def head_inputs_path(run: str | Path, split: str) -> Path:
    """Where training leaves what a frozen model's head reads for `split`'s images, for the steps
    after it (an `.npz` of `features` and `labels`; see catdog.training.fit)."""
    return Path(run) / CACHE_DIR / f"head-inputs-{split}.npz"


def read_json(path: str | Path) -> Any:
    """A JSON file catdog wrote into a run folder; None if there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CatdogError(f"{path} is not valid JSON ({e}); it was damaged after catdog wrote it") from e


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


# Locking ------------------------------------------------------------------------------------

_held: dict[Path, int] = {}


def lock_holder(folder: str | Path) -> str | None:
    """Who holds `folder`'s lock, if another process does (see `locked`)."""
    folder = Path(folder).resolve()
    if folder in _held or not (folder / LOCK_FILE).is_file():
        return None
    try:
        import fcntl
    except ImportError:
        return None
    fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
    finally:
        os.close(fd)  # closing releases the lock
    return None


@contextlib.contextmanager
def locked(folder: str | Path):
    """Hold `folder`'s lock while writing it: a second process gets a one-line error naming the
    process that holds it. The lock is the operating system's (flock), so it dies with its
    process: a lock left by a killed process never blocks. Re-entrant within one process."""
    folder = Path(folder).resolve()
    if folder in _held:
        _held[folder] += 1
        try:
            yield
        finally:
            _held[folder] -= 1
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise CatdogError(f"{folder} is being written by {holder}; wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} ({' '.join(sys.argv)[:120]})".encode(), 0)
        _held[folder] = 1
        try:
            yield
        finally:
            del _held[folder]
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the lock
