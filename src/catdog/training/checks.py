"""Settings checked before a run writes anything: counts, rates, and whether the model fits in memory.

Each check raises `ParameterError` naming the setting, so the CLI can name its option.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras

from catdog.errors import ParameterError

# Training keeps every layer's output for the backward pass, and its gradient beside it.
_ACTIVATION_COPIES = 2
# Leave room for the data cache, the weights and everything else.
_MEMORY_SHARE = 0.6


def at_least_one(parameter: str, value: int) -> int:
    if value < 1:
        raise ParameterError(parameter, f"{{name}} must be at least 1, got {value}")
    return value


def patience(value: int | None) -> int | None:
    """Epochs without improvement before training ends; 0 and None mean never."""
    if value is not None and value < 0:
        raise ParameterError("patience", f"{{name}} must be 0 (run every epoch) or more, got {value}")
    return value or None


def learning_rate(rate: float) -> float:
    if not (math.isfinite(rate) and rate > 0):
        raise ParameterError("learning_rate", f"{{name}} must be a finite number above 0, got {rate}")
    return rate


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def training_bytes(model: keras.Model, batch_size: int) -> int:
    """About how much memory a training step of `model` on `batch_size` images takes: every
    operation's output for the batch, kept for the backward pass, with its gradient."""
    elements = 0
    for operation in _operations(model):
        for tensor in keras.tree.flatten(operation.output):
            elements += math.prod(dim for dim in tensor.shape[1:] if dim)
    return elements * batch_size * 4 * _ACTIVATION_COPIES


def _operations(model: keras.Model):
    """Every operation of `model`, inside nested models too (a Sequential lists only layers)."""
    for operation in getattr(model, "operations", None) or model.layers:
        if isinstance(operation, keras.Model):
            yield from _operations(operation)
        else:
            yield operation


def fits_in_memory(model: keras.Model, preset: str, image_size: int, batch_size: int) -> None:
    """Refuse an image size whose training steps would not fit in this machine's memory,
    saying the largest that would (memory grows with the square of the image side)."""
    available = available_memory()
    if available is None:
        return
    needed = training_bytes(model, batch_size)
    budget = available * _MEMORY_SHARE
    if needed > budget:
        largest = int(image_size * math.sqrt(budget / needed))
        raise ParameterError(
            "image_size",
            f"{{name}} {image_size} needs about {needed / 1e9:.1f} GB to train model {preset!r} on batches of "
            f"{batch_size}, more than the {budget / 1e9:.1f} GB this machine can give it; at most about "
            f"{largest} px fits (or use a smaller batch size)",
        )
