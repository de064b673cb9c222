"""A model at inference time: as a traced graph function, without its augmentation, with the
outputs that prediction needs besides the probabilities, and run over a whole dataset.

Training (frozen features), the steps after it, evaluation, prediction and export all run
models through these, so a model is turned into something callable in one way only.

`served` is what prediction, serving and exports run: the model's probabilities scaled by
the run's temperature (see catdog.trust.calibration), and the features its classifier
reads, from which catdog.trust.ood tells whether an image is like the training images
(named as `catdog.outputs` says). `run_over` runs such a function over every batch of a
split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from catdog.models.builders import AUGMENTATION, BASE, POOL, PREPROCESS
from catdog.outputs import FEATURES, PROBABILITIES
from catdog.terminal import progress
from catdog.trust.calibration import TINY

Outputs = dict[str, np.ndarray]


def inference_function(model: keras.Model) -> Callable:
    """`model` in inference mode as a TensorFlow graph function of float32 tensors, traced
    once for any batch size. Keras' `predict_on_batch` traces again for each new batch size
    (a second or more for MobileNetV2), and `predict` would pick XLA, which runs these
    models several times slower on a CPU."""
    import tensorflow as tf

    signature = [tf.TensorSpec(model.input_shape, tf.float32)]
    return tf.function(lambda x: model(x, training=False), input_signature=signature)


def numpy_function(model: keras.Model) -> Callable[[np.ndarray], np.ndarray | dict[str, np.ndarray]]:
    """`inference_function` from NumPy arrays to NumPy arrays (a dict of them for a model with named outputs)."""
    call = inference_function(model)
    return lambda pixels: keras.tree.map_structure(lambda tensor: tensor.numpy(), call(pixels))


def run_over(function: Callable[[np.ndarray], Outputs], dataset,
             keep: Callable[[np.ndarray, np.ndarray, Outputs], Any] | None = None, *,
             what: str = "images through the model", total: int | None = None) -> tuple[Outputs, np.ndarray]:
    """`function` (pixels -> named outputs, see `numpy_function`) over every batch of (images,
    labels) of `dataset`, in order: each output concatenated over the batches, and the labels.
    `keep(images, labels, outputs)` sees each batch as it goes (to keep a few images, say).
    A progress bar titled `what` counts the images, up to `total` if known (catdog.terminal)."""
    parts, labels = [], []
    with progress(what, total=total) as bar:
        for images, batch_labels in dataset.as_numpy_iterator():
            outputs = function(images)
            if keep is not None:
                keep(images, batch_labels, outputs)
            parts.append(outputs)
            labels.append(batch_labels)
            bar.update(len(batch_labels))
    if not parts:
        return {}, np.zeros(0, "int32")
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}, np.concatenate(labels)


def pooled_bottom(model: keras.Model) -> keras.Model:
    """The frozen bottom of a pretrained model up to its pooled backbone features (1280 per
    image for MobileNetV2): what `transfer` trains its head on, and what `catdog audit` compares
    images by."""
    preprocess, base, pool = (model.get_layer(name) for name in (PREPROCESS, BASE, POOL))
    pixels = keras.Input(model.input_shape[1:])
    return keras.Model(pixels, pool(base(preprocess(pixels), training=False)))


def classifier_features(model: keras.Model):
    """The features the classifier reads: the input of the model's last layer (for a
    pretrained preset, the pooled backbone features under the head; for the others, the
    layer before the output layer)."""
    return model.layers[-1].input


def feature_map(model: keras.Model):
    """The last spatial feature map: the input of the layer that pools or flattens it (for a
    pretrained preset, the backbone's last convolutional output)."""
    for layer in model.layers:
        if len(getattr(layer.input, "shape", ())) == 4 and len(layer.output.shape) == 2:
            return layer.input
    raise ValueError(f"model {model.name!r} has no spatial feature map")


class TemperatureScaling(keras.layers.Layer):
    """Probabilities in, calibrated probabilities out, in float32: `catdog.trust.calibration.scale`
    as a layer, so that exported files give the calibrated probabilities too. A softmax's
    probabilities become softmax(log(p) / T); with `multilabel`, each tag's sigmoid probability
    becomes sigmoid(logit(p) / T) with the tag's own temperature (`temperature` a list)."""

    def __init__(self, temperature: float | list[float] = 1.0, multilabel: bool = False, **kwargs):
        super().__init__(**{**kwargs, "dtype": "float32"})
        self.multilabel = bool(multilabel)
        self.temperature = [float(t) for t in temperature] if multilabel else float(temperature)

    def call(self, probabilities):
        log_p = keras.ops.log(keras.ops.maximum(probabilities, TINY))
        if self.multilabel:
            logits = log_p - keras.ops.log(keras.ops.maximum(1.0 - probabilities, TINY))
            return keras.ops.sigmoid(logits / keras.ops.convert_to_tensor(self.temperature, "float32"))
        return keras.ops.softmax(log_p / self.temperature, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature, "multilabel": self.multilabel}


def served(model: keras.Model, temperature: float | list[float] = 1.0, multilabel: bool = False) -> keras.Model:
    """`model` (sharing its weights) with two named outputs: `PROBABILITIES`, scaled by
    `temperature` (a list, one per tag, with `multilabel`), and `FEATURES`
    (`classifier_features`, as float32)."""
    if multilabel and not isinstance(temperature, list | tuple):
        temperature = [float(temperature)] * model.output_shape[-1]
    probabilities = TemperatureScaling(temperature, multilabel, name=PROBABILITIES)(model.output)
    features = keras.layers.Activation("linear", dtype="float32", name=FEATURES)(classifier_features(model))
    return keras.Model(model.inputs, {PROBABILITIES: probabilities, FEATURES: features}, name=model.name)


def exportable(model: keras.Model) -> keras.Model:
    """`model`, sharing its weights, rebuilt from layers every converter handles.

    - Augmentation becomes a pass-through: it is the identity outside training, but Keras
      still traces its random ops, which some runtimes (onnxruntime) cannot run.
    - A grouped convolution with one group per channel (ConvNeXt's) becomes the equivalent
      `DepthwiseConv2D`: TensorFlow runs grouped convolutions through a nested XLA function
      on CPUs, which tf2onnx cannot convert.
    - Exact GELU is computed through erf: TensorFlow's own uses erfc, which ONNX lacks.
    - A model trained in mixed precision is rebuilt in float32 (its weights are float32
      already): TFLite and onnxruntime have no bfloat16 convolutions.
    """

    def skip_augmentation(layer):
        if layer.name == AUGMENTATION:  # a Sequential, which Keras calls with a `mask` that Identity refuses
            return keras.layers.Lambda(lambda images, mask=None: images, name=AUGMENTATION)
        return layer

    without_augmentation = keras.models.clone_model(model, clone_function=skip_augmentation)
    return keras.models.clone_model(without_augmentation, clone_function=_convertible, recursive=True)


def mixed_precision(model: keras.Model) -> bool:
    """Whether any layer of `model` computes in a lower precision than float32 (a model trained
    under a mixed dtype policy: its own, outer policy does not say so once loaded)."""
    return any(layer.dtype_policy.name != "float32" for layer in model._flatten_layers(include_self=False))


def _convertible(layer: keras.layers.Layer) -> keras.layers.Layer:
    if not isinstance(layer, keras.layers.Layer):  # an operation between layers (ConvNeXt's adds)
        return layer
    if isinstance(layer, keras.layers.Conv2D) and 1 < layer.groups == layer.filters == layer.input.shape[-1]:
        depthwise = keras.layers.DepthwiseConv2D(
            layer.kernel_size, strides=layer.strides, padding=layer.padding, dilation_rate=layer.dilation_rate,
            activation=layer.activation, use_bias=layer.use_bias, dtype="float32", name=layer.name)
        kernel, *bias = layer.get_weights()
        return _with_weights(depthwise, layer, [kernel.transpose(0, 1, 3, 2), *bias])  # (h, w, 1, C) -> (h, w, C, 1)
    if isinstance(layer, keras.layers.Activation) and layer.activation is keras.activations.gelu:
        return keras.layers.Lambda(_gelu_through_erf, name=layer.name)
    if layer.dtype_policy.name != "float32" and not isinstance(layer, keras.layers.InputLayer):
        copy = layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})
        return _with_weights(copy, layer, layer.get_weights())
    return layer


def _with_weights(new: keras.layers.Layer, old: keras.layers.Layer, weights: list[np.ndarray]) -> keras.layers.Layer:
    """`new`, built for `old`'s input, holding `weights` (those of `old`, rearranged if need be)."""
    new.build(old.input.shape)
    new.set_weights(weights)
    return new


def _gelu_through_erf(x):
    return 0.5 * x * (1.0 + keras.ops.erf(x * 0.7071067811865476))
