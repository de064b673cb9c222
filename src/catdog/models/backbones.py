"""Pretrained backbones: one row per network, every fact about it in that row.

A backbone is a `keras.applications` network without its classification top. Its row
says how to build it, what its ImageNet weights expect as input (`mean` and `std` on the
0..255 scale: the model's first layer computes `(pixels - mean) / std`), the image size
its weights were trained at, the layer where fine-tuning starts (the layers from there
up train in a fine-tuning stage), and the file Keras downloads for `weights="imagenet"`
into its cache (`$KERAS_HOME/models`, by default `~/.keras/models`).

Adding a backbone is one row in `BACKBONES`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from catdog.errors import ParameterError

# ImageNet's channel statistics on the 0..255 scale (torchvision's, used by EfficientNetV2 and ConvNeXt).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# "Inception" scaling to -1..1 (TF-slim's networks: MobileNet, ResNetV2).
MINUS_ONE_TO_ONE = (127.5, 127.5)

# keras.applications builds nothing smaller.
MIN_IMAGE_SIZE = 32
# The weights every backbone has: Keras' download of its ImageNet weights (no top).
IMAGENET = "imagenet"


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A pretrained network and the facts needed to use it.

    `weights_file(image_size)` is the name of the no-top ImageNet weights file Keras
    downloads for this network at that image size. `kwargs` go to the constructor, which
    is always called with `include_top=False` and, where it has one, without its own
    preprocessing layer (`mean`/`std` say what the model adds instead).
    """

    name: str
    constructor: str
    description: str
    mean: float | tuple[float, float, float]
    std: float | tuple[float, float, float]
    fine_tune_from: str
    weights_file: Callable[[int], str]
    image_size: int = 224
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def build(self, image_size: int, weights: str | None):
        """The network without its top, for square `image_size` inputs of preprocessed pixels.

        `weights`: "imagenet" (Keras' download), a path to a no-top weights file, or None
        (random). Built under the constructor's own name, which some of them need to find
        their weights; callers rename it.
        """
        import keras

        if image_size < MIN_IMAGE_SIZE:
            raise ParameterError(
                "image_size",
                f"{{name}} must be at least {MIN_IMAGE_SIZE} px for backbone {self.name}, got {image_size}",
            )
        constructor = getattr(keras.applications, self.constructor)
        return constructor(input_shape=(image_size, image_size, 3), include_top=False, weights=weights, **self.kwargs)


def _mobilenet_v2_file(image_size: int) -> str:
    # MobileNetV2 has weights for five sizes and takes the 224 px ones for any other.
    size = image_size if image_size in (96, 128, 160, 192, 224) else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"


def _fixed(file_name: str) -> Callable[[int], str]:
    return lambda image_size: file_name


BACKBONES: Mapping[str, Backbone] = MappingProxyType({b.name: b for b in [
    Backbone("mobilenet_v2", "MobileNetV2", "MobileNetV2 1.0 (3.5 M parameters; the reference's)",
             *MINUS_ONE_TO_ONE, fine_tune_from="block_11_expand_relu",  # layer 100, the reference's fine_tune_at
             weights_file=_mobilenet_v2_file),
    Backbone("mobilenet_v3_small", "MobileNetV3Small", "MobileNetV3 small (fastest on a CPU)",
             *MINUS_ONE_TO_ONE, fine_tune_from="expanded_conv_8_expand",
             weights_file=_fixed("weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
             kwargs={"include_preprocessing": False}),
    Backbone("mobilenet_v3_large", "MobileNetV3Large", "MobileNetV3 large",
             *MINUS_ONE_TO_ONE, fine_tune_from="expanded_conv_11_expand",
             weights_file=_fixed("weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"),
             kwargs={"include_preprocessing": False}),
    Backbone("efficientnet_v2_b0", "EfficientNetV2B0", "EfficientNetV2 B0",
             IMAGENET_MEAN, IMAGENET_STD, fine_tune_from="block6a_expand_conv",
             weights_file=_fixed("efficientnetv2-b0_notop.h5"), kwargs={"include_preprocessing": False}),
    Backbone("convnext_tiny", "ConvNeXtTiny", "ConvNeXt tiny (28 M parameters)",
             IMAGENET_MEAN, IMAGENET_STD, fine_tune_from="convnext_tiny_downsampling_block_2",
             weights_file=_fixed("convnext_tiny_notop.h5"), kwargs={"include_preprocessing": False}),
    Backbone("resnet50_v2", "ResNet50V2", "ResNet50 V2 (25 M parameters)",
             *MINUS_ONE_TO_ONE, fine_tune_from="conv5_block1_preact_bn",
             weights_file=_fixed("resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5")),
]})

DEFAULT_BACKBONE = "mobilenet_v2"


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ParameterError("backbone", f"unknown {{name}} {name!r}; choose one of: {', '.join(BACKBONES)}") from None
