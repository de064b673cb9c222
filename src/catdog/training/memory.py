"""Whether a model's training steps fit in this machine's memory, checked before a run writes anything.

Twice: before the model is built, the batch of images alone (`batch_fits`: building a model
for an absurd image size, a dense layer over its pixels, can take all the memory itself), and
once it is built, its activations and its parameters (`fits_in_memory`). Each check raises
`ParameterError` naming the image size, so the CLI can name its option.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras

from catdog.errors import ParameterError

# Training keeps every layer's output for the backward pass, and its gradient beside it.
_ACTIVATION_COPIES = 2
# Running a network without training holds a layer's input, its output and what a skip
# connection keeps alive, at most: a few times its largest output.
_INFERENCE_COPIES = 3
# Training holds each parameter, its gradient and Adam's two moments.
_PARAMETER_COPIES = 4
# Leave room for the data cache and the rest of the machine.
_MEMORY_SHARE = 0.8


def machine_memory() -> int | None:
    """Bytes of memory this machine has (Linux's MemTotal), None if unknown. The whole, not
    what is free now: the check is for settings that can never fit, not for a busy moment."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _elements(operations) -> list[int]:
    """The size of each operation's output, per image."""
    return [sum(math.prod(dim for dim in tensor.shape[1:] if dim) for tensor in keras.tree.flatten(op.output))
            for op in operations]


def _operations(model: keras.Model):
    """Every operation of `model`, inside nested models too (a Sequential lists only layers)."""
    for operation in getattr(model, "operations", None) or model.layers:
        if isinstance(operation, keras.Model):
            yield from _operations(operation)
        else:
            yield operation


def training_bytes(model: keras.Model, batch_size: int, trained_from: str | None = None) -> int:
    """About how much memory a training step of `model` on `batch_size` images takes: its
    parameters (with their gradients and the optimizer's moments) and its activations.

    End to end (`trained_from` None): every operation's output, kept for the backward pass,
    with its gradient. On frozen features, the frozen part only runs forward (its largest
    outputs, a few at a time) and the trained part, from the operation named `trained_from`
    (the fine-tuning layer; "" for a head alone), keeps its outputs as above.
    """
    parameters = model.count_params() * 4 * _PARAMETER_COPIES
    operations = list(_operations(model))
    if trained_from is None:
        return parameters + sum(_elements(operations)) * batch_size * 4 * _ACTIVATION_COPIES
    first = next((i for i, op in enumerate(operations) if op.name == trained_from), len(operations))
    forward = max(_elements(operations), default=0) * _INFERENCE_COPIES
    trained = sum(_elements(operations[first:])) * _ACTIVATION_COPIES
    return parameters + max(forward, trained) * batch_size * 4


def batch_fits(preset: str, image_size: int, batch_size: int) -> None:
    """Refuse an image size whose batches of images alone (as float32, with their gradients)
    could not fit in this machine's memory: checked before the model is built."""
    _refuse_beyond_memory(batch_size * image_size * image_size * 3 * 4 * _ACTIVATION_COPIES, preset, image_size,
                          batch_size)


def fits_in_memory(model: keras.Model, preset: str, image_size: int, batch_size: int,
                   trained_from: str | None = None) -> None:
    """Refuse an image size whose training steps could not fit in this machine's memory, saying
    the largest that would (memory grows with the square of the image side). `trained_from`:
    see `training_bytes`."""
    _refuse_beyond_memory(training_bytes(model, batch_size, trained_from), preset, image_size, batch_size)


def _refuse_beyond_memory(needed: int, preset: str, image_size: int, batch_size: int) -> None:
    memory = machine_memory()
    if memory is None:
        return
    budget = memory * _MEMORY_SHARE
    if needed > budget:
        largest = int(image_size * math.sqrt(budget / needed))
        raise ParameterError(
            "image_size",
            f"{{name}} {image_size} needs about {needed / 1e9:.1f} GB to train model {preset!r} on batches of "
            f"{batch_size}, more than the {budget / 1e9:.1f} GB of memory this machine can give it; at most about "
            f"{largest} px fits (or use a smaller batch size)",
        )
