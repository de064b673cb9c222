"""TFLite (LiteRT): one file for phones and small devices; int8 weights with `quantize`."""

from __future__ import annotations

import warnings
from pathlib import Path

from catdog.formats.base import ModelFunction, image_spec, named


def write(model, path: Path, image_size: int, quantize: bool = False, calibration=None) -> None:
    import tensorflow as tf

    options = {"optimizations": [tf.lite.Optimize.DEFAULT]} if quantize else {}
    model.export(str(path), format="litert", verbose=False, input_signature=[image_spec(image_size, tf.float32)],
                 **options)


def is_tflite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8)[4:] == b"TFL3"  # the flatbuffer's file identifier
    except OSError:
        return False


def load(path: Path) -> ModelFunction:
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
    return lambda pixels: named(runner(**{image_input: pixels}))
