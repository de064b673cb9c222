"""Models: pretrained backbones (a table), presets (a registry), builders, and one factory.

    >>> from catdog import models
    >>> model = models.create_model("finetune", num_classes=5, backbone="mobilenet_v3_large")

- `backbones.py`: one row per pretrained network (constructor, preprocessing, image size,
  where fine-tuning starts, the weights file Keras downloads).
- `presets.py`: named recipes (`scratch`, ..., `transfer`, `finetune`, `cnn`), as plain data.
- `factory.py`: `create_model`, and how weights and backbones are resolved.
- `builders.py`: the functions presets name, each building a Keras model from raw pixels to
  probabilities out of named parts.
- `layers.py`: catdog's own Keras layers.
- `inference.py`: a model as a graph function, without its augmentation, with the outputs
  prediction needs, and run over a whole split.

This package's own names (the tables, the factory) import Keras only when a model is built,
so that choosing settings and predicting with an export do not load TensorFlow; `builders`,
`layers` and `inference` are Keras code.
"""

from catdog.models.backbones import BACKBONES, DEFAULT_BACKBONE, IMAGENET, Backbone, get_backbone
from catdog.models.factory import (
    NO_WEIGHTS,
    create_model,
    default_image_size,
    describe,
    resolve_backbone,
    resolve_weights,
)
from catdog.models.presets import PRESETS, REFERENCE_PRESETS, Preset, get_preset

__all__ = [
    "BACKBONES", "DEFAULT_BACKBONE", "IMAGENET", "NO_WEIGHTS", "PRESETS", "REFERENCE_PRESETS", "Backbone", "Preset",
    "create_model", "default_image_size", "describe", "get_backbone", "get_preset", "resolve_backbone",
    "resolve_weights",
]
