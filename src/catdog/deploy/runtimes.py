"""Runtimes: a run's model, or one of its exports, as one function from pixels to named outputs.

Prediction and serving run a model only through `load`, which picks what runs it:

- "keras": the run's `model.keras` served with its temperature (see
  catdog.models.inference.served), as a TensorFlow graph function;
- a format of `formats.FORMATS` ("onnx", "tflite", "savedmodel"): the run's export in that
  format at its default place (`catdog export RUN --format NAME`), its int8 export
  (`--quantize`) first where it has one, with that format's runtime;
- "auto" (the default): the first export of `AUTO_PREFERENCE` that the run has written
  since its model and its temperature were last saved and whose runtime is installed, else
  Keras. On a 2-core CPU with bfloat16 instructions, OpenVINO runs MobileNetV2 at 224 px in
  about half the time onnxruntime takes (benchmarks/results.md).

`choose` says what `load` would run without loading it, so that a caller imports
TensorFlow only when the choice needs it (`needs_tensorflow`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catdog import runs
from catdog.deploy.formats import FORMATS, ModelFunction, Outputs, get_format
from catdog.errors import CatdogError, ParameterError
from catdog.runs import Run

AUTO = "auto"
KERAS = "keras"
RUNTIMES = (AUTO, KERAS, *FORMATS)
AUTO_PREFERENCE = ("openvino", "onnx")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to call: `runtime` names what runs the file at `path`."""

    runtime: str
    path: Path
    function: ModelFunction

    def __call__(self, pixels: np.ndarray) -> Outputs:
        return self.function(pixels)


def current_export(run: Run, format: str, quantized: bool = False) -> Path | None:
    """The run's export in `format` (its int8 one if `quantized`) at its default place, if it
    is newer than the run's model and its temperature (which the export includes)."""
    path = get_format(format).default_path(run.path, quantized)
    sources = [run.model_path, run.path / runs.CALIBRATION_FILE]
    if path.exists() and all(path.stat().st_mtime >= p.stat().st_mtime for p in sources if p.exists()):
        return path
    return None


def newest_export(run: Run, format: str) -> Path | None:
    """The export `format`'s runtime runs for `run`: the int8 one where current, else the float one."""
    quantized = (True, False) if FORMATS[format].quantizable else (False,)
    return next((path for q in quantized if (path := current_export(run, format, q))), None)


def choose(run: Run, runtime: str = AUTO) -> tuple[str, Path]:
    """What `load` runs for `runtime`: the runtime's name (`KERAS` or a format) and the file."""
    if runtime not in RUNTIMES:
        raise ParameterError("runtime", f"unknown {{name}} {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    if runtime == AUTO:
        for name in AUTO_PREFERENCE:
            if (path := newest_export(run, name)) and not FORMATS[name].missing_modules():
                return name, path
        return KERAS, run.model_path
    if runtime == KERAS:
        return KERAS, run.model_path
    format = FORMATS[runtime]
    path = newest_export(run, runtime)
    if path is None:
        raise CatdogError(f"{run.path} has no {runtime} export newer than its model; "
                          f"write one with: catdog export {run.path} --format {runtime}")
    if format.module in format.missing_modules():
        raise CatdogError(f"the {runtime} runtime needs {format.module}; install it with: pip install 'catdog[export]'")
    return runtime, path


def needs_tensorflow(runtime: str) -> bool:
    """Whether running with `runtime` (a name `choose` returned) loads TensorFlow."""
    return runtime == KERAS or FORMATS[runtime].module == "tensorflow"


def load(run: Run, runtime: str = AUTO) -> LoadedModel:
    """`run`'s model as a function, run by `runtime` (see the module docstring)."""
    name, path = choose(run, runtime)
    if name == KERAS:
        return keras_model(run)
    return LoadedModel(name, path, FORMATS[name].load(path))


def keras_model(run: Run) -> LoadedModel:
    from catdog.models.inference import numpy_function, served
    from catdog.trust import fitting

    model = served(run.load_model(), fitting.read(run.path).temperature)
    return LoadedModel(KERAS, run.model_path, numpy_function(model))
