"""SavedModel: a folder TensorFlow runs (TF Serving, TF.js converters, ...), with a float32
`serving_default` and a uint8 `serving_uint8` signature, both returning the named outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from catdog import __version__
from catdog.formats.base import ModelFunction, Outputs, image_spec, named

# How catdog knows its own SavedModel again, to replace it and nothing else.
MARKER = Path("assets.extra") / "catdog.json"


def write(model, path: Path, image_size: int, quantize: bool = False, calibration=None) -> None:
    """Saved by TensorFlow directly: Keras' `ExportArchive` stores every weight twice."""
    import tensorflow as tf

    def signature(dtype):
        return tf.function(
            lambda images: model(tf.cast(images, tf.float32), training=False),
            input_signature=[image_spec(image_size, dtype)],
        )

    module = tf.Module()
    module.model = model
    signatures = {"serving_default": signature(tf.float32), "serving_uint8": signature(tf.uint8)}
    tf.saved_model.save(module, str(path), signatures=signatures)
    marker = path / MARKER
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(json.dumps({"written_by": f"catdog {__version__}"}) + "\n")


def is_catdogs(path: Path) -> bool:
    return (path / "saved_model.pb").is_file() and (path / MARKER).is_file()


def load(path: Path) -> ModelFunction:
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    return lambda pixels: named(signature(images=tf.constant(pixels)))


def signatures(path: Path, pixels: np.ndarray) -> dict[str, Outputs]:
    """The outputs of each serving signature (the uint8 one gets the same pixels as uint8)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    inputs = {"serving_default": pixels, "serving_uint8": pixels.astype("uint8")}
    return {name: named(loaded.signatures[name](images=tf.constant(batch))) for name, batch in inputs.items()}
