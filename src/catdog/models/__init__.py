"""Models: pretrained backbones (a table), builders, presets (a registry), and one factory.

    >>> from catdog import models
    >>> model = models.create_model("finetune", num_classes=5, backbone="mobilenet_v3_large")

- `backbones.py`: one row per pretrained network (constructor, preprocessing, image size,
  where fine-tuning starts, the weights file Keras downloads).
- `builders.py`: functions that build a Keras model from raw pixels to probabilities.
- `presets.py`: named recipes (`scratch`, ..., `transfer`, `finetune`, `cnn`).
- `factory.py`: `create_model`, and how weights and backbones are resolved.
- `inference.py`: a model as a graph function, and without its augmentation.
"""

from catdog.models.backbones import BACKBONES, DEFAULT_BACKBONE, Backbone, get_backbone
from catdog.models.builders import AUGMENTATION, BASE, HEAD, IMAGENET, POOL, PREPROCESS
from catdog.models.factory import (
    NO_WEIGHTS,
    create_model,
    default_image_size,
    describe,
    resolve_backbone,
    resolve_weights,
)
from catdog.models.presets import PRESETS, Preset, get_preset

__all__ = [
    "AUGMENTATION", "BACKBONES", "BASE", "DEFAULT_BACKBONE", "HEAD", "IMAGENET", "NO_WEIGHTS", "POOL", "PREPROCESS",
    "PRESETS", "Backbone", "Preset", "create_model", "default_image_size", "describe", "get_backbone", "get_preset",
    "resolve_backbone", "resolve_weights",
]
