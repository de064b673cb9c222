"""Export formats: one row per format, with how to write it and how to run it.

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

A quantized export goes to `model_int8.*`. ONNX's is quantized statically (onnxruntime's
`quantize_static`: int8 weights per channel, uint8 activations whose ranges are calibrated
on training images), which halves the time onnxruntime takes on a 2-core CPU; `export`
then also checks its test accuracy (see catdog.deploy.export).

OpenVINO computes in bfloat16 on CPUs with bfloat16 instructions (its default there), which
on a 2-core CPU takes half the time of float32 for MobileNetV2; its probabilities are checked
like a quantized export's, test accuracy included (`reduced_precision`).

Every input is a batch of raw pixels, shape (N, S, S, 3) with values 0..255 at the run's
image size S; the model's own preprocessing is part of the exported graph. Every export
has two named outputs: `probabilities` (N, classes), calibrated by the run's temperature,
in the order of the run's class names (ONNX lists it first), and `features` (N, D), the
features the classifier reads, from which `catdog predict` and `catdog serve` compute the
out-of-distribution score (see catdog.models.inference.served). `export.py` writes and
checks them, `runtimes.py` runs them; the CLI's choices come from `FORMATS`. Adding a
format is one row here.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catdog import __version__
from catdog.errors import ParameterError
from catdog.files import Kind
from catdog.runs import EXPORT_DIR
from catdog.trust import PROBABILITIES

Outputs = dict[str, np.ndarray]  # PROBABILITIES, and FEATURES but in exports written before catdog had them
ModelFunction = Callable[[np.ndarray], Outputs]

# How catdog knows its own exports again, to replace them and nothing else.
SAVEDMODEL_MARKER = Path("assets.extra") / "catdog.json"
OPENVINO_MARKER = "catdog.json"
ONNX_MARKER = "catdog"

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


def _named(outputs: dict) -> Outputs:
    """An export's outputs as NumPy arrays by name; the only output of an export written
    before catdog named them is the probabilities."""
    outputs = {name: np.asarray(value) for name, value in outputs.items()}
    if PROBABILITIES not in outputs and len(outputs) == 1:
        return {PROBABILITIES: next(iter(outputs.values()))}
    return outputs


def _image_spec(image_size: int, dtype):
    import tensorflow as tf

    return tf.TensorSpec((None, image_size, image_size, 3), dtype, name="images")


# SavedModel ------------------------------------------------------------------------------


def write_savedmodel(model, path: Path, image_size: int, quantize: bool = False, calibration=None) -> None:
    """A SavedModel with a float32 and a uint8 serving signature, both returning the model's
    named outputs.

    Saved by TensorFlow directly: Keras' `ExportArchive` stores every weight twice.
    """
    import tensorflow as tf

    def signature(dtype):
        return tf.function(
            lambda images: model(tf.cast(images, tf.float32), training=False),
            input_signature=[_image_spec(image_size, dtype)],
        )

    module = tf.Module()
    module.model = model
    signatures = {"serving_default": signature(tf.float32), "serving_uint8": signature(tf.uint8)}
    tf.saved_model.save(module, str(path), signatures=signatures)
    marker = path / SAVEDMODEL_MARKER
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(json.dumps({"written_by": f"catdog {__version__}"}) + "\n")


def _is_catdog_savedmodel(path: Path) -> bool:
    return (path / "saved_model.pb").is_file() and (path / SAVEDMODEL_MARKER).is_file()


def load_savedmodel(path: Path) -> ModelFunction:
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    return lambda pixels: _named(signature(images=tf.constant(pixels)))


def savedmodel_signatures(path: Path, pixels: np.ndarray) -> dict[str, Outputs]:
    """The outputs of each serving signature (the uint8 one gets the same pixels as uint8)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    inputs = {"serving_default": pixels, "serving_uint8": pixels.astype("uint8")}
    return {name: _named(loaded.signatures[name](images=tf.constant(batch))) for name, batch in inputs.items()}


# TFLite ----------------------------------------------------------------------------------


def write_tflite(model, path: Path, image_size: int, quantize: bool = False, calibration=None) -> None:
    import tensorflow as tf

    options = {"optimizations": [tf.lite.Optimize.DEFAULT]} if quantize else {}
    model.export(str(path), format="litert", verbose=False, input_signature=[_image_spec(image_size, tf.float32)],
                 **options)


def _is_tflite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8)[4:] == b"TFL3"  # the flatbuffer's file identifier
    except OSError:
        return False


def load_tflite(path: Path) -> ModelFunction:
    """The TFLite interpreter of LiteRT when installed, else TensorFlow's copy of it."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    # TensorFlow's copy warns that it is moving to ai-edge-litert; it runs the same models.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
        interpreter = Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner()  # outputs by name; it resizes the input to each batch
    (image_input,) = runner.get_input_details()
    return lambda pixels: _named(runner(**{image_input: pixels}))


# ONNX ------------------------------------------------------------------------------------


def write_onnx(model, path: Path, image_size: int, quantize: bool = False, calibration=None) -> None:
    import onnx
    import tensorflow as tf

    # Keras' compatibility patch for tf2onnx probes `np.object`, which NumPy 2 warns about.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(path), format="onnx", verbose=False, input_signature=[_image_spec(image_size, tf.float32)])
    if quantize:
        _quantize_onnx(path, calibration)
    exported = onnx.load(str(path))
    exported.metadata_props.add(key=ONNX_MARKER, value=__version__)
    # The probabilities first, so that a caller taking the first output gets them.
    outputs = sorted(exported.graph.output, key=lambda output: output.name != PROBABILITIES)
    del exported.graph.output[:]
    exported.graph.output.extend(outputs)
    onnx.save(exported, str(path))


def _quantize_onnx(path: Path, calibration: np.ndarray) -> None:
    """Replace the float model at `path` by its int8 one, calibrated on `calibration`'s images."""
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self, name: str):
            self.batches = iter([{name: calibration[i:i + 16]} for i in range(0, len(calibration), 16)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as work:
        prepared = Path(work) / "prepared.onnx"
        # Folds and fuses what can be (batch normalisation, constants) before ranges are measured.
        quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
        (image_input,) = onnx.load(str(prepared)).graph.input
        quantize_static(str(prepared), str(path), Batches(image_input.name), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def _is_catdog_onnx(path: Path) -> bool:
    try:
        import onnx

        return any(prop.key == ONNX_MARKER for prop in onnx.load(str(path), load_external_data=False).metadata_props)
    except Exception:  # not an ONNX model, or onnx missing: not one catdog may replace
        return False


def load_onnx(path: Path) -> ModelFunction:
    """An onnxruntime session, as a function of a pixel batch."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Idle workers would otherwise spin, taking the cores that decode the next batch.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # A GPU when onnxruntime-gpu sees one (Ray's actors on a GPU node), else the CPU.
    providers = [p for p in ("CUDAExecutionProvider",) if p in onnxruntime.get_available_providers()]
    session = onnxruntime.InferenceSession(str(path), options, providers=[*providers, "CPUExecutionProvider"])
    (image_input,) = session.get_inputs()
    names = [output.name for output in session.get_outputs()]
    return lambda pixels: _named(dict(zip(names, session.run(None, {image_input.name: pixels}), strict=True)))


# OpenVINO --------------------------------------------------------------------------------

OPENVINO_MODEL = "model.xml"  # beside it, model.bin holds the weights


def write_openvino(model, path: Path, image_size: int, quantize: bool = False, calibration=None) -> None:
    """An OpenVINO IR folder (`model.xml`, `model.bin`, float32 weights) with catdog's marker."""
    import tensorflow as tf

    path.mkdir()
    model.export(str(path / OPENVINO_MODEL), format="openvino", verbose=False,
                 input_signature=[_image_spec(image_size, tf.float32)])
    (path / OPENVINO_MARKER).write_text(json.dumps({"written_by": f"catdog {__version__}"}) + "\n")


def _is_catdog_openvino(path: Path) -> bool:
    return (path / OPENVINO_MODEL).is_file() and (path / OPENVINO_MARKER).is_file()


def load_openvino(path: Path) -> ModelFunction:
    """The IR compiled for the CPU, for any batch size, at OpenVINO's default precision there."""
    import openvino

    core = openvino.Core()
    model = core.read_model(str(path / OPENVINO_MODEL))
    model.reshape([-1, *model.input(0).get_partial_shape()[1:]])
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()

    def run(pixels: np.ndarray) -> Outputs:
        results = request.infer({0: pixels})
        return _named({output.get_any_name(): results[output].copy() for output in compiled.outputs})

    return run


# The table -------------------------------------------------------------------------------

FORMATS: dict[str, Format] = {f.name: f for f in [
    Format("savedmodel", "", "savedmodel", "TensorFlow", "tensorflow", (), write_savedmodel, load_savedmodel,
           Kind("a SavedModel folder written by catdog", _is_catdog_savedmodel, folder=True),
           signatures=savedmodel_signatures),
    Format("tflite", ".tflite", "model", "the TFLite interpreter", "tensorflow", (), write_tflite, load_tflite,
           Kind("a TFLite model", _is_tflite), quantizable=True),
    Format("onnx", ".onnx", "model", "onnxruntime", "onnxruntime", ("tf2onnx", "onnx"), write_onnx, load_onnx,
           Kind("an ONNX model written by catdog", _is_catdog_onnx), quantizable=True, calibrates=True),
    Format("openvino", "", "openvino", "OpenVINO", "openvino", (), write_openvino, load_openvino,
           Kind("an OpenVINO model folder written by catdog", _is_catdog_openvino, folder=True),
           reduced_precision=True),
]}


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise ParameterError("format", f"unknown export {{name}} {name!r}; choose one of: "
                                       f"{', '.join(FORMATS)}") from None
