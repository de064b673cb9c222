"""OpenVINO IR: a folder (`model.xml`, `model.bin` with float32 weights) that OpenVINO compiles
for the CPU at its default precision there (bfloat16 on CPUs with bfloat16 instructions)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from catdog import __version__
from catdog.formats.base import ModelFunction, Outputs, image_spec, named

MODEL = "model.xml"  # beside it, model.bin holds the weights
MARKER = "catdog.json"


def write(model, path: Path, image_size: int, quantize: bool = False, calibration=None) -> None:
    import tensorflow as tf

    path.mkdir()
    model.export(str(path / MODEL), format="openvino", verbose=False,
                 input_signature=[image_spec(image_size, tf.float32)])
    (path / MARKER).write_text(json.dumps({"written_by": f"catdog {__version__}"}) + "\n")


def is_catdogs(path: Path) -> bool:
    return (path / MODEL).is_file() and (path / MARKER).is_file()


def load(path: Path) -> ModelFunction:
    """The IR compiled for the CPU, for any batch size, at OpenVINO's default precision there."""
    import openvino

    core = openvino.Core()
    model = core.read_model(str(path / MODEL))
    model.reshape([-1, *model.input(0).get_partial_shape()[1:]])
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()

    def run(pixels: np.ndarray) -> Outputs:
        results = request.infer({0: pixels})
        return named({output.get_any_name(): results[output].copy() for output in compiled.outputs})

    return run
