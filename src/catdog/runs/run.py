"""`Run`: the one handle to a run folder, for everything that uses a trained run.

    >>> run = Run.open("runs/transfer")
    >>> run.class_names, run.settings.preset, run.temperature
    >>> model = run.model()              # the fastest current export, else Keras
    >>> model(pixels)["probabilities"]

A path becomes a `Run` once, where it enters the API (`as_run`); everything deeper takes
the `Run`. The folder of a whole exercise (`catdog run`) opens as the run of the model it
chose, so that every command that takes a run takes an exercise too. A `Run` reads
`config.json` when opened, and what it holds besides lazily and once: the temperature and
the out-of-distribution detector fitted after training, the manifest, the Keras model, and
the data (the split it recorded, as `tf.data` pipelines). Training hands over the data it
trained on, so that the steps after it do not decode it again.

`model(runtime)` is the run's model as a function from pixels to the named outputs of
`catdog.outputs`, run by Keras or by one of its exports' runtimes (`catdog.formats.RUNTIMES`):

- "keras": `model.keras`, served with the run's temperature (catdog.models.inference.served);
- a format's name: the run's export in that format at its default place, its int8 export
  first where it has a current one (see `current_export`);
- "auto" (the default): the first format of `catdog.formats.AUTO_PREFERENCE` the run has a
  current export for and whose runtime is installed, else Keras.

`runtime_for` says what `model` would run without loading it, so that a caller imports
TensorFlow only when the choice needs it (`catdog.formats.needs_tensorflow`).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catdog.data.labels import MULTILABEL
from catdog.errors import CatdogError, ParameterError
from catdog.formats import AUTO, AUTO_PREFERENCE, FORMATS, KERAS, RUNTIMES, LoadedModel, get_format
from catdog.runs import folder
from catdog.runs.config import CONFIG_FILE, RunConfig
from catdog.runs.settings import TrainSettings

if TYPE_CHECKING:
    from catdog.data import Data
    from catdog.data.splits import Manifest
    from catdog.trust.ood import OutOfDistribution

logger = logging.getLogger(__name__)


class Run:
    """An opened run folder: its settings, and what it holds (see the module's docstring)."""

    def __init__(self, path: str | os.PathLike, config: RunConfig, data: Data | None = None):
        self.path = Path(path)
        self.config = config
        self._data = data
        self._lock = threading.Lock()
        self._keras_model = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> Run:
        """Open a run folder written by catdog, with a one-line error if it is not one. The folder
        of a whole exercise (`catdog run`) opens as its chosen model's run, and says so."""
        path = Path(path)
        if not path.is_dir():
            raise CatdogError(f"run folder {path} does not exist")
        if not (path / CONFIG_FILE).is_file() and (chosen := _chosen_model(path)) is not None:
            logger.info(f"{path} is an exercise of `catdog run`: using its chosen model, {chosen.name} ({chosen})")
            path = chosen
        if not (path / CONFIG_FILE).is_file():
            raise CatdogError(_not_a_run(path))
        return cls(path, RunConfig.read(path / CONFIG_FILE))

    def __repr__(self) -> str:
        return f"Run({os.fspath(self.path)!r}, preset={self.preset!r})"

    # What it was trained with ------------------------------------------------------------------

    @property
    def settings(self) -> TrainSettings:
        return self.config.settings

    @property
    def class_names(self) -> list[str]:
        return list(self.config.class_names)

    @property
    def image_size(self) -> int:
        return self.settings.image_size

    @property
    def preset(self) -> str:
        return self.settings.preset

    @property
    def multilabel(self) -> bool:
        """Whether the model gives tags (a sigmoid each: any number, none included) rather than one class."""
        return self.config.task == MULTILABEL

    def manifest(self) -> Manifest:
        """The run's split (`catdog.data.splits.Manifest`), relative to the data folder it trained on."""
        from catdog.data.splits import Manifest

        return Manifest.read(self.path / folder.MANIFEST_FILE, self.config.data)

    def data(self) -> Data:
        """The run's split as `tf.data` pipelines (decoded once; those training used, if it
        handed them over)."""
        if self._data is None:
            from catdog.data import load

            settings = self.settings
            self._data = load(self.config.data, image_size=settings.image_size, batch_size=settings.batch_size,
                              seed=settings.seed, manifest=self.manifest())
        return self._data

    # What training and the steps after it wrote -----------------------------------------------

    @property
    def model_path(self) -> Path:
        return self.path / folder.MODEL_FILE

    @property
    def history(self) -> list[dict[str, float]]:
        """One row per finished epoch (see `folder.HISTORY_FIELDS`); empty before the first."""
        return folder.read_history(self.path / folder.HISTORY_FILE)

    @property
    def outcome(self) -> dict[str, Any]:
        """How training ended (`training.json`: epochs, best epoch, why it stopped); {} before."""
        return folder.read_json(self.path / folder.TRAINING_FILE) or {}

    @property
    def metrics(self) -> dict[str, Any] | None:
        """The test split's scores (`metrics.json`, see catdog.evaluation); None before."""
        return folder.read_json(self.path / folder.METRICS_FILE)

    @functools.cached_property
    def calibration(self) -> dict[str, Any]:
        """What the calibration step recorded (`calibration.json`): the temperature and the
        validation figures that decided it; {} for a run trained before calibration."""
        return folder.read_json(self.path / folder.CALIBRATION_FILE) or {}

    @functools.cached_property
    def temperature(self) -> float | tuple[float, ...]:
        """The temperature the run's probabilities are scaled by (1 if it has none); a multi-label
        run's, one per tag."""
        recorded = self.calibration.get("temperature", 1.0)
        temperatures = recorded if isinstance(recorded, list) else [recorded]
        if self.multilabel and not isinstance(recorded, list):
            temperatures = temperatures * len(self.class_names)
        expected = len(self.class_names) if self.multilabel else 1
        if len(temperatures) != expected or not all(
                isinstance(t, int | float) and math.isfinite(t) and t > 0 for t in temperatures):
            raise CatdogError(f"{self.path / folder.CALIBRATION_FILE}: temperature must be {expected} number"
                              f"{'s' * (expected > 1)} above 0, found {recorded!r}")
        return tuple(float(t) for t in temperatures) if self.multilabel else float(temperatures[0])

    @functools.cached_property
    def thresholds(self) -> tuple[float, ...] | None:
        """A multi-label run's threshold per tag (a tag is given from it up), chosen on the
        validation split; 0.5 each before they were; None for one class per image."""
        if not self.multilabel:
            return None
        recorded = self.calibration.get("thresholds", [0.5] * len(self.class_names))
        if not (isinstance(recorded, list) and len(recorded) == len(self.class_names)
                and all(isinstance(t, int | float) and 0 <= t <= 1 for t in recorded)):
            raise CatdogError(f"{self.path / folder.CALIBRATION_FILE}: thresholds must be {len(self.class_names)} "
                              f"probabilities, found {recorded!r}")
        return tuple(float(t) for t in recorded)

    @functools.cached_property
    def detector(self) -> OutOfDistribution | None:
        """The out-of-distribution detector (None for a run trained before catdog had one)."""
        from catdog.trust.ood import OutOfDistribution

        path = self.path / folder.OOD_FILE
        if not path.is_file():
            return None
        try:
            return OutOfDistribution.load(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise CatdogError(f"{path} is damaged ({str(e)[:120]}); write it again with "
                              f"`catdog train --resume {self.path}` after removing it") from e

    # The model -------------------------------------------------------------------------------

    def keras_model(self):
        """The trained Keras model, loaded once (compiled state is not needed to predict), checked
        against the run's config: one output per class, inputs of the recorded image size."""
        with self._lock:
            if self._keras_model is None:
                self._keras_model = self._load_keras_model()
            return self._keras_model

    def _load_keras_model(self):
        import keras

        import catdog.models.layers  # noqa: F401  (registers catdog's own layers, which models may hold)

        if not self.model_path.is_file():
            raise CatdogError(f"run folder {self.path} has no {folder.MODEL_FILE}; it has not finished an epoch "
                              f"(continue it with `catdog train --resume {self.path}`)")
        if not zipfile.is_zipfile(self.model_path):  # Keras would say "File not found"
            raise CatdogError(f"{self.model_path} is damaged: it is not a .keras archive (a zip file)")
        try:
            model = keras.saving.load_model(self.model_path, compile=False)
        except Exception as e:  # Keras reports a damaged archive in many ways
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if "safe_mode" in message or "Lambda" in message:
                raise CatdogError(f"{self.model_path} contains Python code (a Lambda layer); "
                                  "catdog loads only safe models") from e
            raise CatdogError(f"{self.model_path} is not a readable Keras model ({message[:160]})") from e
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

    def export_path(self, format: str, quantized: bool = False) -> Path:
        """Where `catdog export` writes the run's export in `format` by default."""
        return get_format(format).default_path(self.path, quantized)

    def current_export(self, format: str, quantized: bool = False) -> Path | None:
        """The run's export in `format` (its int8 one if `quantized`) at its default place, if it
        is newer than the run's model and its temperature (which the export includes)."""
        path = self.export_path(format, quantized)
        sources = [self.model_path, self.path / folder.CALIBRATION_FILE]
        if path.exists() and all(path.stat().st_mtime >= p.stat().st_mtime for p in sources if p.exists()):
            return path
        return None

    def runtime_for(self, runtime: str = AUTO) -> tuple[str, Path]:
        """What `model(runtime)` runs: the runtime's name (`KERAS` or a format's) and the file."""
        if runtime not in RUNTIMES:
            raise ParameterError("runtime", f"unknown {{name}} {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
        if runtime == AUTO:
            for name in AUTO_PREFERENCE:
                if (path := self._newest_export(name)) and not FORMATS[name].missing_modules():
                    return name, path
            return KERAS, self.model_path
        if runtime == KERAS:
            return KERAS, self.model_path
        format = FORMATS[runtime]
        path = self._newest_export(runtime)
        if path is None:
            raise CatdogError(f"{self.path} has no {runtime} export newer than its model; "
                              f"write one with: catdog export {self.path} --format {runtime}")
        if format.module in format.missing_modules():
            raise CatdogError(f"the {runtime} runtime needs {format.module}; install it with: "
                              "pip install 'catdog[export]'")
        return runtime, path

    def _newest_export(self, format: str) -> Path | None:
        """The export `format`'s runtime runs: the int8 one where current, else the float one."""
        quantized = (True, False) if FORMATS[format].quantizable else (False,)
        return next((path for q in quantized if (path := self.current_export(format, q))), None)

    def model(self, runtime: str = AUTO) -> LoadedModel:
        """The run's model as a function from pixels to its named outputs, run by `runtime`."""
        name, path = self.runtime_for(runtime)
        if name != KERAS:
            return LoadedModel(name, path, FORMATS[name].load(path))
        from catdog.models.inference import numpy_function

        return LoadedModel(KERAS, path, numpy_function(self.served_model()))

    def served_model(self, calibrated: bool = True):
        """The Keras model with the named outputs of `catdog.outputs` (see
        catdog.models.inference.served): its probabilities scaled by the run's temperature, or as
        the model gives them when not `calibrated`."""
        from catdog.models.inference import served

        temperature = self.temperature if calibrated else 1.0
        return served(self.keras_model(), list(temperature) if isinstance(temperature, tuple) else temperature,
                      self.multilabel)

    def calibrated(self, probabilities):
        """Probabilities as the model gives them (N, classes), scaled by the run's temperature: what
        `served_model()` computes, in NumPy."""
        from catdog.trust import calibration

        if self.multilabel:
            return calibration.scale_tags(probabilities, self.temperature)
        return calibration.scale(probabilities, self.temperature)

    def locked(self):
        """Hold the run folder's lock while writing into it (see `folder.locked`)."""
        return folder.locked(self.path)


def _chosen_model(exercise: Path) -> Path | None:
    """The run folder of the model an exercise chose (`folder.EXERCISE_SUMMARY`'s "best"), if
    `exercise` is the folder of a finished one."""
    try:
        summary = folder.read_json(exercise / folder.EXERCISE_SUMMARY)
    except CatdogError:
        return None
    best = summary.get("best") if isinstance(summary, dict) else None
    if not isinstance(best, str) or Path(best).name != best:
        return None
    return exercise / best


def _not_a_run(path: Path) -> str:
    """Why `path` is not a run folder, naming the run folders inside it, if it holds any."""
    inside = sorted(str(child) for child in path.iterdir() if (child / CONFIG_FILE).is_file())
    message = f"{path} is not a catdog run folder: it has no {CONFIG_FILE}"
    if (path / folder.EXERCISE_SUMMARY).is_file() or inside:
        message += (f"; the run folders in it: {', '.join(inside)}" if inside else
                    "; it holds no run folder")
    return message


def as_run(run: Run | str | os.PathLike) -> Run:
    """`run` itself, or the run folder at that path, opened: where a path enters the API."""
    return run if isinstance(run, Run) else Run.open(run)
