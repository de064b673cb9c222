"""Builders: each returns a functional Keras model from raw 0..255 pixels to probabilities.

Every model does its own augmentation (active only in training) and preprocessing, and
ends in a float32 softmax over the classes, or with `multilabel` one float32 sigmoid per tag
(each tag present or not, independently). Models on a pretrained backbone are
assembled from named parts, which training uses to compute the frozen part once
instead of every epoch (see catdog.training.frozen)::

    inputs -> augmentation -> preprocess -> base -> pool -> head (dropout, dense)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
from keras import layers

from catdog import environment
from catdog.errors import CatdogError
from catdog.models.backbones import IMAGENET, MINUS_ONE_TO_ONE, Backbone
from catdog.models.layers import FusedBatchNormalization

# Names of the parts of a model with a pretrained base.
AUGMENTATION = "augmentation"
PREPROCESS = "preprocess"
BASE = "base"
POOL = "pool"
HEAD = "head"


# Building blocks --------------------------------------------------------------------------


def augmentation(flip: str | None = None, rotation: float = 0.0, zoom: float = 0.0,
                 translation: float = 0.0, contrast: float = 0.0) -> keras.Sequential:
    """Random image transformations, active only while training (identity when empty)."""
    parts = []
    if flip:
        parts.append(layers.RandomFlip(flip))
    if rotation:
        parts.append(layers.RandomRotation(rotation))
    if zoom:
        parts.append(layers.RandomZoom(zoom))
    if translation:
        parts.append(layers.RandomTranslation(translation, translation))
    if contrast:
        parts.append(layers.RandomContrast(contrast))
    return keras.Sequential(parts, name=AUGMENTATION)


def preprocessing(mean, std) -> layers.Layer:
    """`(pixels - mean) / std`, per channel when `mean` and `std` are triples.

    A `Rescaling` (constants in the graph), not a `Normalization`, whose statistics every
    export format would have to carry as variables: tf2onnx turns them into extra inputs."""
    if isinstance(mean, int | float) and isinstance(std, int | float):
        return layers.Rescaling(1 / std, offset=-mean / std, name=PREPROCESS)
    return layers.Rescaling([1 / s for s in std], offset=[-m / s for m, s in zip(mean, std, strict=True)],
                            name=PREPROCESS)


def classifier(num_classes: int, multilabel: bool = False, name: str | None = None) -> layers.Layer:
    """The output layer: probabilities, in float32 even under mixed precision: a softmax over the
    classes, or with `multilabel` a sigmoid per tag."""
    return layers.Dense(num_classes, activation="sigmoid" if multilabel else "softmax", dtype="float32", name=name)


def conv_pool_stack(x, filters: tuple[int, ...] = (32, 32, 32)):
    """The reference's feature extractor: Conv2D(3x3, relu) and MaxPooling2D(2x2), repeated."""
    for n in filters:
        x = layers.Conv2D(n, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    return x


def conv_bn(x, filters: int, kernel_size: int = 3, strides: int = 1, activation: str | None = "relu"):
    """Convolution (no bias: batch normalisation follows), batch normalisation, activation."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False)(x)
    # A shorter memory than Keras' 0.99 lets the moving statistics keep up with a small data set.
    x = FusedBatchNormalization(momentum=0.9)(x)
    return layers.Activation(activation)(x) if activation else x


def residual_block(x, filters: int, strides: int = 1):
    """Two 3x3 convolutions added to the input (or to a 1x1 projection of it, where the
    width or the resolution changes), then ReLU."""
    projected = strides != 1 or x.shape[-1] != filters
    shortcut = conv_bn(x, filters, 1, strides, activation=None) if projected else x
    x = conv_bn(x, filters, strides=strides)
    x = conv_bn(x, filters, activation=None)
    return layers.Activation("relu")(layers.add([shortcut, x]))


def pretrained_base(backbone: Backbone, image_size: int, weights: str | None) -> keras.Model:
    """`backbone` without its top, named `base`, frozen; a clear error when its ImageNet
    weights can neither be found in Keras' cache nor downloaded."""
    try:
        base = backbone.build(image_size, weights)
    except Exception as e:  # Keras' download raises a bare Exception when offline
        if isinstance(e, CatdogError) or weights is None:
            raise
        if weights != IMAGENET:
            raise CatdogError(f"cannot load weights {weights} into backbone {backbone.name}: "
                              f"{str(e).splitlines()[0][:200]}") from e
        file_name = backbone.weights_file(image_size)
        cached = environment.keras_weights_dir()
        if (cached / file_name).is_file():
            raise
        raise CatdogError(
            f"the ImageNet weights of {backbone.name}, {file_name}, are not in {cached} and could not be "
            f"downloaded ({str(e).splitlines()[0][:120]}); put that file there, or set weights to a file or to none"
        ) from e
    base.name = BASE
    base.trainable = False
    return base


# Builders ---------------------------------------------------------------------------------


def reference_cnn(*, image_size: int, num_classes: int, multilabel: bool = False,
                  augment: Mapping[str, Any] | None = None, preprocess: bool = False, hidden: int | None = None,
                  dropout: float = 0.5) -> keras.Model:
    """The reference's CNNs (models 1 to 3): optional augmentation and MobileNetV2's scaling,
    three conv/pool pairs, Flatten, an optional hidden Dense layer, Dropout, and the classifier."""
    inputs = keras.Input((image_size, image_size, 3))
    x = inputs
    if augment:
        x = augmentation(**augment)(x)
    if preprocess:
        x = preprocessing(*MINUS_ONE_TO_ONE)(x)
    x = layers.Flatten()(conv_pool_stack(x))
    if hidden:
        x = layers.Dense(hidden, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, classifier(num_classes, multilabel)(x))


def pretrained_classifier(*, image_size: int, num_classes: int, backbone: Backbone, weights: str | None,
                          multilabel: bool = False, augment: Mapping[str, Any] | None = None, pooling: str = "avg",
                          dropout: float = 0.5) -> keras.Model:
    """A frozen pretrained base (called with `training=False`) under a small head.

    `weights` is "imagenet" (Keras' download), a path to weights for the base without its
    top, or None for random weights.
    """
    inputs = keras.Input((image_size, image_size, 3))
    x = augmentation(**(augment or {}))(inputs)
    x = preprocessing(backbone.mean, backbone.std)(x)
    x = pretrained_base(backbone, image_size, weights)(x, training=False)
    pool = layers.GlobalMaxPooling2D if pooling == "max" else layers.GlobalAveragePooling2D
    x = pool(name=POOL)(x)
    head = keras.Sequential([layers.Dropout(dropout), classifier(num_classes, multilabel)], name=HEAD)
    return keras.Model(inputs, head(x))


def residual_cnn(*, image_size: int, num_classes: int, multilabel: bool = False,
                 widths: tuple[int, ...] = (32, 64, 128, 256), blocks: int = 1,
                 augment: Mapping[str, Any] | None = None, dropout: float = 0.3) -> keras.Model:
    """A small ResNet for training from scratch: a strided stem and max pooling, then
    `blocks` residual blocks of two 3x3 convolutions with batch normalisation per width
    (the first of each width after the first halving the resolution), global average
    pooling, dropout and the classifier. Plain convolutions: on CPU they run faster than
    separable ones of fewer operations."""
    inputs = keras.Input((image_size, image_size, 3))
    x = augmentation(**(augment or {}))(inputs)
    x = layers.Rescaling(1 / 255, name=PREPROCESS)(x)
    x = conv_bn(x, widths[0], strides=2)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for i, width in enumerate(widths[1:]):
        for j in range(blocks):
            x = residual_block(x, width, strides=2 if i > 0 and j == 0 else 1)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, classifier(num_classes, multilabel)(x))
