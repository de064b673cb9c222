"""Model formats: one row per format, with how to write it and how to run it.

==========  =========================  ===============================================  ==========
format      default output             runs with                                        quantizable
==========  =========================  ===============================================  ==========
savedmodel  RUN/export/savedmodel/     TensorFlow (TF Serving, TF.js, ...): float32     no
                                       `serving_default` and uint8 `serving_uint8`
tflite      RUN/export/model.tflite    the TFLite interpreter (LiteRT)                  int8 weights
onnx        RUN/export/model.onnx      onnxruntime                                      int8 weights
                                                                                        and activations
openvino    RUN/export/openvino/       OpenVINO (bfloat16 on CPUs that have it)         no
==========  =========================  ===============================================  ==========

A quantized export goes to `model_int8.*`. ONNX's is quantized statically, with activation
ranges calibrated on training images; `catdog.deploy.export` then also checks its test
accuracy. OpenVINO computes in bfloat16 on CPUs with bfloat16 instructions (its default
there); its probabilities are checked like a quantized export's, test accuracy included
(`reduced_precision`).

Every input is a batch of raw pixels, shape (N, S, S, 3) with values 0..255 at the run's
image size S; the model's own preprocessing is part of the exported graph. Every export has
the two named outputs of `catdog.outputs`: the probabilities, calibrated by the run's
temperature, in the order of the run's class names (ONNX lists them first), and the features
the classifier reads, from which prediction computes the out-of-distribution score.

A run's model runs with Keras or with one of these formats' runtimes: `RUNTIMES` are the
names `catdog.runs.Run.model` takes. Adding a format is a module here and one row in
`FORMATS`.

- `base.py`: the outputs' shape and the input spec every format shares.
- `savedmodel.py`: SavedModel, for TensorFlow (write, recognise, load).
- `tflite.py`: TFLite, for phones and small devices.
- `onnx.py`: ONNX, for onnxruntime, with static int8 quantization.
- `openvino.py`: OpenVINO IR, bfloat16 on CPUs that have it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catdog.errors import ParameterError
from catdog.files import Kind
from catdog.formats import onnx, openvino, savedmodel, tflite
from catdog.formats.base import ModelFunction, Outputs

# A run folder's exports go into this folder of it.
EXPORT_DIR = "export"

# Largest allowed difference in any probability between an export and the Keras model.
# Float exports only reorder float32 arithmetic; int8 weights change the numbers.
FLOAT_TOLERANCE = 1e-4
QUANTIZED_TOLERANCE = 0.1


@dataclass(frozen=True)
class Format:
    """One export format: where it goes, what writes it, what runs it and how closely.

    `write(model, path, image_size, quantize, calibration)` writes `model` (a served model,
    with named outputs) to `path` (`calibration`: a batch of training images, for formats that
    `calibrates` when quantizing); `load(path)` returns a function from a pixel batch to the
    named outputs; `outputs(path, pixels)` gives what the parity check compares, per serving
    signature.
    """

    name: str
    suffix: str  # "" for a folder
    file_name: str
    runtime: str
    module: str  # the module its runtime needs
    writers: tuple[str, ...]  # the modules that write it, besides TensorFlow
    write: Callable[..., None]
    load: Callable[[Path], ModelFunction]
    kind: Kind  # what catdog may replace with a new export
    quantizable: bool = False
    calibrates: bool = False
    reduced_precision: bool = False  # runs in less than float32 even when not quantized
    signatures: Callable[[Path, np.ndarray], dict[str, Outputs]] | None = None

    def default_path(self, run_path: Path, quantize: bool = False) -> Path:
        name = f"{self.file_name}_int8" if quantize else self.file_name
        return run_path / EXPORT_DIR / f"{name}{self.suffix}"

    def missing_modules(self) -> list[str]:
        """The modules writing and running this format needs that are not installed."""
        return [module for module in (*self.writers, self.module) if importlib.util.find_spec(module) is None]

    def tolerance(self, quantize: bool = False) -> float:
        return QUANTIZED_TOLERANCE if quantize or self.reduced_precision else FLOAT_TOLERANCE

    def checks_accuracy(self, quantize: bool = False) -> bool:
        """Whether an export's test accuracy is checked: it computes in reduced precision."""
        return (quantize and self.calibrates) or self.reduced_precision

    def outputs(self, path: Path, pixels: np.ndarray) -> dict[str, Outputs]:
        if self.signatures is not None:
            return self.signatures(path, pixels)
        return {self.name: self.load(path)(pixels)}


FORMATS: dict[str, Format] = {f.name: f for f in [
    Format("savedmodel", "", "savedmodel", "TensorFlow", "tensorflow", (), savedmodel.write, savedmodel.load,
           Kind("a SavedModel folder written by catdog", savedmodel.is_catdogs, folder=True),
           signatures=savedmodel.signatures),
    Format("tflite", ".tflite", "model", "the TFLite interpreter", "tensorflow", (), tflite.write, tflite.load,
           Kind("a TFLite model", tflite.is_tflite), quantizable=True),
    Format("onnx", ".onnx", "model", "onnxruntime", "onnxruntime", ("tf2onnx", "onnx"), onnx.write, onnx.load,
           Kind("an ONNX model written by catdog", onnx.is_catdogs), quantizable=True, calibrates=True),
    Format("openvino", "", "openvino", "OpenVINO", "openvino", (), openvino.write, openvino.load,
           Kind("an OpenVINO model folder written by catdog", openvino.is_catdogs, folder=True),
           reduced_precision=True),
]}

# What runs a run's model: Keras, or a format's runtime on the run's export in that format.
# "auto" takes the first of `AUTO_PREFERENCE` the run has a current export for, else Keras:
# OpenVINO first, faster than onnxruntime on CPUs (benchmarks/results.md).
AUTO = "auto"
KERAS = "keras"
RUNTIMES = (AUTO, KERAS, *FORMATS)
AUTO_PREFERENCE = ("openvino", "onnx")


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise ParameterError("format", f"unknown export {{name}} {name!r}; choose one of: "
                                       f"{', '.join(FORMATS)}") from None


def needs_tensorflow(runtime: str) -> bool:
    """Whether running with `runtime` (`KERAS` or a format's name) loads TensorFlow."""
    return runtime == KERAS or FORMATS[runtime].module == "tensorflow"


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to call: `runtime` names what runs the file at `path`."""

    runtime: str
    path: Path
    function: ModelFunction

    def __call__(self, pixels: np.ndarray) -> Outputs:
        return self.function(pixels)
