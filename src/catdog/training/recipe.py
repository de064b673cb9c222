"""The recipe: training stages, optimizer and schedule, loss and batches, and numeric precision.

A run trains in one stage, or for a fine-tuning preset in two: the head alone on the frozen
backbone, then the backbone's top layers too at a lower rate. The stages are recorded in
the run's config, so that a resumed run follows its own schedule even if the preset's has
changed since. A preset's regularisers (label smoothing, MixUp and CutMix, an average of
the weights) are applied here, each by Keras' own implementation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from catdog.config import CLASS_WEIGHTS, IMBALANCE_RATIO, PRECISIONS
from catdog.errors import ParameterError
from catdog.models import BASE, Backbone, Preset


@dataclass(frozen=True)
class Stage:
    """Epochs `start` to `end` (0-based, end excluded) at `learning_rate`; the backbone is
    trainable from its layer `unfreeze_from` up (a layer name; None: frozen).

    Runs recorded by catdog 0.1 give `unfreeze_from` as a layer index.
    """

    start: int
    end: int
    learning_rate: float
    unfreeze_from: str | int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Stage:
        return cls(**values)


def plan(preset: Preset, backbone: Backbone | None, epochs: int, learning_rate: float | None = None) -> list[Stage]:
    """The training stages: one, or for a fine-tuning preset the head alone for the preset's
    share of the epochs (rounded; at least one, and one left) and then the backbone from its
    `fine_tune_from` layer up too, at a lower rate."""
    rate = learning_rate or preset.learning_rate
    if not preset.fine_tune or backbone is None or epochs < 2:
        return [Stage(0, epochs, rate)]
    split = min(max(round(epochs * preset.head_epochs_share), 1), epochs - 1)
    return [Stage(0, split, rate),
            Stage(split, epochs, rate * preset.fine_tune_learning_rate_factor, backbone.fine_tune_from)]


def optimizer(preset: Preset, stage: Stage, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam (AdamW with the preset's weight decay) at the stage's rate, constant or on a cosine
    schedule with a short warm-up, keeping a moving average of the weights if the preset
    averages them (see `callbacks`)."""
    rate = stage.learning_rate
    if preset.schedule == "cosine":
        total = steps_per_epoch * (stage.end - stage.start)
        warmup = min(steps_per_epoch, total // 10)
        rate = keras.optimizers.schedules.CosineDecay(rate / 10, decay_steps=max(total - warmup, 1),
                                                      warmup_target=rate, warmup_steps=warmup)
    averaging = {"use_ema": True, "ema_momentum": preset.weight_averaging} if preset.weight_averaging else {}
    if preset.weight_decay:
        return keras.optimizers.AdamW(rate, weight_decay=preset.weight_decay, **averaging)
    return keras.optimizers.Adam(rate, **averaging)


def callbacks(preset: Preset) -> list[keras.callbacks.Callback]:
    """The preset's own callbacks: validation on the averaged weights, if it averages them
    (the run's recorder then saves those as the model; see catdog.training.callbacks)."""
    return [keras.callbacks.SwapEMAWeights()] if preset.weight_averaging else []


def one_hot_labels(preset: Preset) -> bool:
    """Whether the preset trains on one-hot labels (smoothed or mixed) rather than class indices."""
    return bool(preset.label_smoothing or preset.mixup or preset.cutmix)


def loss(preset: Preset) -> keras.losses.Loss:
    """Cross-entropy, on class indices or, for a preset that smooths or mixes labels, one-hot."""
    if one_hot_labels(preset):
        return keras.losses.CategoricalCrossentropy(label_smoothing=preset.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def batches(preset: Preset, train, validation, num_classes: int, seed: int) -> tuple:
    """The training and validation datasets as the preset's loss takes them: labels one-hot
    where `one_hot_labels`, and each training batch mixed by MixUp or CutMix where the
    preset mixes (both: one or the other, at random, per batch)."""
    if not one_hot_labels(preset):
        return train, validation
    import tensorflow as tf

    def one_hot(images, labels):
        return images, tf.one_hot(labels, num_classes)

    # In float32 whatever the run's precision: they work on the pipeline's float32 batches.
    mixers = ([keras.layers.MixUp(preset.mixup, seed=seed, dtype="float32")] if preset.mixup else []) + (
        [keras.layers.CutMix(preset.cutmix, seed=seed + 1, dtype="float32")] if preset.cutmix else [])

    def mix(images, labels):
        def mixed(mixer):
            def call():
                out = mixer({"images": images, "labels": labels})
                return out["images"], out["labels"]
            return call

        if len(mixers) == 1:
            return mixed(mixers[0])()
        choice = tf.random.uniform((), maxval=len(mixers), dtype=tf.int32, seed=seed)
        return tf.switch_case(choice, [mixed(mixer) for mixer in mixers])

    train = train.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE)
    if mixers:
        train = train.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
    return train, validation.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE)


def resolve_precision(precision: str, preset: Preset) -> str:
    """A Keras dtype policy. "auto" chooses by device: on GPUs, mixed bfloat16 from compute
    capability 8.0 (Ampere) on, mixed float16 (with loss scaling, which Keras adds) on 7.x, and
    float32 before; on CPUs, mixed bfloat16 for presets that train as well in it where the CPU
    has bfloat16 instructions (measured: see `Preset.bfloat16`), else float32."""
    from catdog.environment import gpu_compute_capability

    if precision not in PRECISIONS:
        raise ParameterError("precision", f"unknown {{name}} {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    capability = gpu_compute_capability()
    if capability is not None:
        return "mixed_bfloat16" if capability >= (8, 0) else "mixed_float16" if capability >= (7, 0) else "float32"
    return "mixed_bfloat16" if preset.bfloat16 and cpu_has_bfloat16() else "float32"


def check_class_weight(class_weight: str) -> str:
    if class_weight not in CLASS_WEIGHTS:
        raise ParameterError("class_weight", f"unknown {{name}} {class_weight!r}; choose one of: "
                                             f"{', '.join(CLASS_WEIGHTS)}")
    return class_weight


def class_weights(class_weight: str, counts: Sequence[int]) -> dict[int, float] | None:
    """The loss weight of each class index, for training on `counts` images per class; None
    for equal weights. "balanced" weighs each class's examples by n / (k x count), so every
    class weighs as much in total (scikit-learn's "balanced"); "auto" is "balanced" when the
    largest class has more than `IMBALANCE_RATIO` times the images of the smallest."""
    check_class_weight(class_weight)
    counts = [max(1, count) for count in counts]
    if class_weight == "none" or (class_weight == "auto" and max(counts) <= IMBALANCE_RATIO * min(counts)):
        return None
    return {i: sum(counts) / (len(counts) * count) for i, count in enumerate(counts)}


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX-512 BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def unfreeze_index(base: keras.Model, unfreeze_from: str | int) -> int:
    """The index in `base` of the first layer a fine-tuning stage trains."""
    if isinstance(unfreeze_from, int):
        return unfreeze_from
    names = [layer.name for layer in base.layers]
    if unfreeze_from not in names:
        raise ValueError(f"{base.name} has no layer {unfreeze_from!r} to fine-tune from")
    return names.index(unfreeze_from)


def set_trainable(model: keras.Model, stage: Stage) -> None:
    """Freeze the pretrained base, or unfreeze it from `stage.unfreeze_from` up. Batch
    normalisation stays frozen, which in Keras 3 also keeps it in inference mode."""
    if not has_base(model):
        return
    base = model.get_layer(BASE)
    base.trainable = stage.unfreeze_from is not None
    if stage.unfreeze_from is not None:
        first = unfreeze_index(base, stage.unfreeze_from)
        for i, layer in enumerate(base.layers):
            layer.trainable = i >= first and not isinstance(layer, keras.layers.BatchNormalization)


def has_base(model: keras.Model) -> bool:
    return any(layer.name == BASE for layer in model.layers)
