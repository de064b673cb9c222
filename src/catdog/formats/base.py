"""What every format's module shares: the shape of a loaded model's outputs, and the input spec."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from catdog.outputs import PROBABILITIES

Outputs = dict[str, np.ndarray]  # PROBABILITIES, and FEATURES but in exports written before catdog had them
ModelFunction = Callable[[np.ndarray], Outputs]


def named(outputs: dict) -> Outputs:
    """An export's outputs as NumPy arrays by name; the only output of an export written
    before catdog named them is the probabilities."""
    outputs = {name: np.asarray(value) for name, value in outputs.items()}
    if PROBABILITIES not in outputs and len(outputs) == 1:
        return {PROBABILITIES: next(iter(outputs.values()))}
    return outputs


def image_spec(image_size: int, dtype):
    """The input of every export: a batch of raw pixels, (N, S, S, 3), named `images`."""
    import tensorflow as tf

    return tf.TensorSpec((None, image_size, image_size, 3), dtype, name="images")
