"""The recipe: what a stage trains, its optimizer and schedule, the loss, the batches, the class weights.

A run trains in the stages its settings planned (`catdog.runs.settings.plan`): one, or for a
fine-tuning preset two, the head alone on the frozen backbone, then the backbone's top layers
too at a lower rate. A preset's regularisers (label smoothing, MixUp and CutMix, an average of
the weights) are applied here, each by Keras' own implementation.

A multi-label model (a sigmoid per tag) trains on binary cross-entropy per tag, whose labels
are already rows of 0s and 1s (smoothed towards 0.5, and mixed, like one-hot labels); its
class weights are per tag (`tag_weights`: a tag's positives and negatives weigh as much in
total), applied by the loss (`TagWeightedCrossentropy`) since Keras' `class_weight` takes
one class per example.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from catdog.data import IMBALANCE_RATIO
from catdog.models import Preset
from catdog.models.builders import BASE
from catdog.runs import Stage


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


def loss(preset: Preset, multilabel: bool = False,
         weights: tuple[np.ndarray, np.ndarray] | None = None) -> keras.losses.Loss:
    """Cross-entropy, on class indices or, for a preset that smooths or mixes labels, one-hot; for
    a multi-label model, binary cross-entropy per tag, weighted by `weights` (see `tag_weights`)."""
    if multilabel:
        if weights is not None:
            return TagWeightedCrossentropy(*weights, label_smoothing=preset.label_smoothing)
        return keras.losses.BinaryCrossentropy(label_smoothing=preset.label_smoothing)
    if one_hot_labels(preset):
        return keras.losses.CategoricalCrossentropy(label_smoothing=preset.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def metrics(multilabel: bool = False) -> list:
    """What `fit` reports besides the loss, as `accuracy`: the share of images of the right class,
    or of a multi-label model the share of image-tag pairs right (each tag at 0.5)."""
    return [keras.metrics.BinaryAccuracy(name="accuracy")] if multilabel else ["accuracy"]


@keras.saving.register_keras_serializable(package="catdog")
class TagWeightedCrossentropy(keras.losses.Loss):
    """Binary cross-entropy per tag, a tag's positive labels weighed by `positive` and its
    negative ones by `negative` (one weight per tag each), averaged over the tags."""

    def __init__(self, positive, negative, label_smoothing: float = 0.0, name: str = "tag_weighted_crossentropy",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.positive = [float(w) for w in positive]
        self.negative = [float(w) for w in negative]
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_true = keras.ops.cast(y_true, y_pred.dtype)
        weights = y_true * keras.ops.convert_to_tensor(self.positive, y_pred.dtype) + (1 - y_true) * \
            keras.ops.convert_to_tensor(self.negative, y_pred.dtype)
        smoothed = y_true * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        p = keras.ops.clip(y_pred, keras.config.epsilon(), 1 - keras.config.epsilon())
        crossentropy = -(smoothed * keras.ops.log(p) + (1 - smoothed) * keras.ops.log(1 - p))
        return keras.ops.mean(weights * crossentropy, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "positive": self.positive, "negative": self.negative,
                "label_smoothing": self.label_smoothing}


def batches(preset: Preset, train, validation, num_classes: int, seed: int, multilabel: bool = False) -> tuple:
    """The training and validation datasets as the preset's loss takes them: labels one-hot
    where `one_hot_labels` (a multi-label model's are rows of 0s and 1s already), and each
    training batch mixed by MixUp or CutMix where the preset mixes (both: one or the other, at
    random, per batch)."""
    if not one_hot_labels(preset):
        return train, validation
    import tensorflow as tf

    def one_hot(images, labels):
        return images, labels if multilabel else tf.one_hot(labels, num_classes)

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


def class_weights(class_weight: str, counts: Sequence[int]) -> dict[int, float] | None:
    """The loss weight of each class index, for training on `counts` images per class; None
    for equal weights. "balanced" weighs each class's examples by n / (k x count), so every
    class weighs as much in total (scikit-learn's "balanced"); "auto" is "balanced" when the
    largest class has more than `IMBALANCE_RATIO` times the images of the smallest."""
    counts = [max(1, count) for count in counts]
    if class_weight == "none" or (class_weight == "auto" and max(counts) <= IMBALANCE_RATIO * min(counts)):
        return None
    return {i: sum(counts) / (len(counts) * count) for i, count in enumerate(counts)}


def tag_weights(class_weight: str, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Per tag, the loss weights of its positive and of its negative labels, for training on
    `labels` (N, tags; 0 or 1); None for equal weights. "balanced" weighs them so that each
    side of each tag weighs as much in total, n / (2 x count) (scikit-learn's "balanced" for
    the tag's two classes); "auto" is "balanced" when a tag's larger side has more than
    `IMBALANCE_RATIO` times the images of its smaller one."""
    labels = np.asarray(labels)
    positives = np.maximum(labels.sum(axis=0), 1)
    negatives = np.maximum(len(labels) - labels.sum(axis=0), 1)
    ratio = np.maximum(positives, negatives) / np.minimum(positives, negatives)
    if class_weight == "none" or (class_weight == "auto" and ratio.max() <= IMBALANCE_RATIO):
        return None
    n = len(labels)
    return (n / (2 * positives)).astype("float32"), (n / (2 * negatives)).astype("float32")


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
