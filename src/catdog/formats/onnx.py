"""ONNX, run by onnxruntime. With `quantize`, static int8 (onnxruntime's `quantize_static`: int8
weights per channel, uint8 activations whose ranges are calibrated on training images)."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from catdog import __version__
from catdog.formats.base import ModelFunction, image_spec, named
from catdog.outputs import PROBABILITIES

# The metadata key by which catdog knows its own ONNX models again.
MARKER = "catdog"


def write(model, path: Path, image_size: int, quantize: bool = False, calibration: np.ndarray | None = None) -> None:
    import onnx
    import tensorflow as tf

    # Keras' compatibility patch for tf2onnx probes `np.object`, which NumPy 2 warns about.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(path), format="onnx", verbose=False, input_signature=[image_spec(image_size, tf.float32)])
    if quantize:
        _quantize(path, calibration)
    exported = onnx.load(str(path))
    exported.metadata_props.add(key=MARKER, value=__version__)
    # The probabilities first, so that a caller taking the first output gets them.
    outputs = sorted(exported.graph.output, key=lambda output: output.name != PROBABILITIES)
    del exported.graph.output[:]
    exported.graph.output.extend(outputs)
    onnx.save(exported, str(path))


def _quantize(path: Path, calibration: np.ndarray) -> None:
    """Replace the float model at `path` by its int8 one, calibrated on `calibration`'s images."""
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


def is_catdogs(path: Path) -> bool:
    try:
        import onnx

        return any(prop.key == MARKER for prop in onnx.load(str(path), load_external_data=False).metadata_props)
    except Exception:  # not an ONNX model, or onnx missing: not one catdog may replace
        return False


def load(path: Path) -> ModelFunction:
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
    return lambda pixels: named(dict(zip(names, session.run(None, {image_input.name: pixels}), strict=True)))
