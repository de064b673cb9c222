"""The run folder: everything one training run leaves behind, and how to open it again.

A run folder holds::

    config.json          the run's `RunConfig`: every setting, the class names, versions
    splits.csv           the manifest of files used (see catdog.data.splits)
    model.keras          the trained model (best epoch by validation accuracy, then loss)
    history.csv          per epoch: loss, accuracy, val_loss, val_accuracy, seconds
    training.json        how training ended: epochs run, best epoch, why it stopped early if it did
    metrics.json         test-split scores (see catdog.evaluate)
    calibration.json     the temperature fitted on the validation split (see catdog.trust.fitting)
    ood.npz              the out-of-distribution detector and its threshold (see catdog.trust.ood)
    accuracy.png, loss.png, confusion_matrix.png, misclassified.png, reliability.png
    logs/                TensorBoard logs
    checkpoint/          the last finished epoch and the best one, for `catdog train --resume`
                         (removed when the run is complete)
    cache/               decoded images and frozen features that do not fit in memory, while
                         training (removed when the run is complete)
    export/              exported models (see catdog.deploy.formats)
    .catdog.lock         held (flock) by the process writing the run

`config.json` is read and written only through `RunConfig`, which checks what it reads.
A folder is a run folder if it holds a readable `config.json`; catdog writes a new run
only into a new or empty folder, and one process at a time (`locked`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import platform
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catdog import __version__, config, files
from catdog.errors import CatdogError, ParameterError

CONFIG_FILE = "config.json"
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
EXPORT_DIR = "export"
ACCURACY_PLOT = "accuracy.png"
LOSS_PLOT = "loss.png"
CONFUSION_MATRIX_PLOT = "confusion_matrix.png"
MISCLASSIFIED_PLOT = "misclassified.png"
RELIABILITY_PLOT = "reliability.png"

HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")

# Version 1 (catdog 0.1) had no `backbone` and no `format_version`; every pretrained model was MobileNetV2.
FORMAT_VERSION = 2
PRETRAINED_PRESETS_V1 = ("transfer", "finetune")


@dataclass
class RunConfig:
    """Everything a run was trained with, as recorded in its `config.json`.

    `stages` are the training stages (`catdog.training.recipe.Stage` as dicts), so that a
    resumed run follows its own schedule; `backbone` is None for models without one;
    `patience` ends training early (see `catdog.models.Preset`), None never.
    `strategy`, `replicas`, `workers` and `devices` say where it trained (the last session).
    `ood_method` and `ood_rate`: how the run's out-of-distribution detector measures and
    the share of validation images its threshold flags (see catdog.trust.ood).
    """

    preset: str
    class_names: list[str]
    image_size: int
    data: str = ""
    backbone: str | None = None
    epochs: int = 0
    batch_size: int = config.BATCH_SIZE
    seed: int = config.SEED
    weights: str = "none"
    learning_rate: float = 1e-3
    frozen_features: bool = True
    views: int = 1
    precision: str = "float32"
    jit_compile: bool = False
    class_weight: str = "none"  # runs recorded before class weights trained without them
    strategy: str = "none"
    replicas: int = 1
    workers: int = 1
    devices: list[str] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    ood_method: str = config.OOD_METHOD
    ood_rate: float = config.OOD_RATE
    patience: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, path: str | Path) -> Path:
        return files.write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, values: Any, source: str | Path = CONFIG_FILE) -> RunConfig:
        """Check and convert what a `config.json` holds; `CatdogError` names what is wrong."""
        if not isinstance(values, dict):
            raise CatdogError(f"{source} does not hold a run's settings (a JSON object)")
        version = values.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CatdogError(f"{source} was written by a newer catdog (format {version}); upgrade catdog to open it")
        known = {f.name: f for f in dataclasses.fields(cls)}
        missing = [name for name in ("preset", "class_names", "image_size") if name not in values]
        if missing:
            raise CatdogError(f"{source} has no {', '.join(missing)}; it is not a complete catdog run configuration")
        kept = {name: value for name, value in values.items() if name in known}
        if version == 1:
            kept["backbone"] = "mobilenet_v2" if kept["preset"] in PRETRAINED_PRESETS_V1 else None
            kept["format_version"] = FORMAT_VERSION
        run_config = cls(**kept)
        run_config._check(source)
        return run_config

    def _check(self, source: str | Path) -> None:
        names = self.class_names
        if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) and n for n in names)):
            raise CatdogError(f"{source}: class_names must list at least two class names, found {names!r}")
        if len(set(names)) != len(names):
            raise CatdogError(f"{source}: class_names lists a class twice ({names!r})")
        if not (isinstance(self.image_size, int) and not isinstance(self.image_size, bool) and self.image_size > 0):
            raise CatdogError(f"{source}: image_size must be a positive whole number, found {self.image_size!r}")
        if not isinstance(self.preset, str) or not self.preset:
            raise CatdogError(f"{source}: preset must be a model name, found {self.preset!r}")

    @classmethod
    def read(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CatdogError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise CatdogError(f"{path} cannot be read ({getattr(e, 'strerror', None) or e})") from None
        return cls.from_dict(values, path)


def library_versions() -> dict[str, str]:
    """The versions that matter for reproducing a run."""
    import keras
    import numpy as np
    import tensorflow as tf

    return {"catdog": __version__, "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__}


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
    config: RunConfig

    @property
    def class_names(self) -> list[str]:
        return list(self.config.class_names)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def preset(self) -> str:
        return self.config.preset

    @property
    def metrics(self) -> dict[str, Any] | None:
        return read_json(self.path / METRICS_FILE)

    @property
    def history(self) -> list[dict[str, float]]:
        """One row per finished epoch (see `HISTORY_FIELDS`); empty before the first."""
        return read_history(self.path / HISTORY_FILE)

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    def manifest(self):
        """The run's split (`catdog.data.splits.Manifest`), relative to the data folder it trained on."""
        from catdog.data.splits import Manifest

        return Manifest.read(self.path / MANIFEST_FILE, self.config.data)

    def load_model(self):
        """The trained Keras model (compiled state is not needed to predict), checked against
        the run's config: one output per class, inputs of the recorded image size."""
        import keras

        import catdog.models.layers  # noqa: F401  (registers catdog's own layers, which models may hold)

        if not self.model_path.is_file():
            raise CatdogError(
                f"run folder {self.path} has no {MODEL_FILE}; it has not finished an epoch "
                f"(continue it with `catdog train --resume {self.path}`)"
            )
        if not zipfile.is_zipfile(self.model_path):  # Keras would say "File not found"
            raise CatdogError(f"{self.model_path} is damaged: it is not a .keras archive (a zip file)")
        try:
            model = keras.saving.load_model(self.model_path, compile=False)
        except Exception as e:  # Keras reports a damaged archive in many ways
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if "safe_mode" in message or "Lambda" in message:
                raise CatdogError(f"{self.model_path} contains Python code (a Lambda layer); "
                                  "catdog loads only safe models") from None
            raise CatdogError(f"{self.model_path} is not a readable Keras model ({message[:160]})") from None
        self.check_model(model.input_shape, model.output_shape, str(self.model_path))
        return model

    def check_model(self, input_shape, output_shape, source: str) -> None:
        """Refuse a model that does not fit the run's config (an edited config, a swapped file)."""
        classes, size = len(self.class_names), self.image_size
        if output_shape[-1] != classes:
            raise CatdogError(f"{source} has {output_shape[-1]} outputs but {self.path / CONFIG_FILE} lists "
                              f"{classes} classes; the run folder is inconsistent")
        if tuple(input_shape[1:3]) != (size, size):
            raise CatdogError(f"{source} takes {input_shape[1]}x{input_shape[2]} images but "
                              f"{self.path / CONFIG_FILE} says image_size {size}; the run folder is inconsistent")


def open_run(path: str | Path) -> Run:
    """Open a run folder written by `catdog train`, with a clear error if it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise CatdogError(f"run folder {path} does not exist")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise CatdogError(f"{path} is not a catdog run folder: it has no {CONFIG_FILE}")
    return Run(path=path, config=RunConfig.read(config_path))


def read_json(path: str | Path) -> Any:
    """A JSON file catdog wrote into a run folder; None if there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CatdogError(f"{path} is not valid JSON ({e}); it was damaged after catdog wrote it") from None


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
