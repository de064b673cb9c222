"""Presets: the registry of named models and how to train them.

A preset is plain data: the name of a builder (a function of builders.py) with its keyword
arguments, and the recipe that trains what it builds (learning rate, schedule, fine-tuning
stage). A pretrained
preset takes its network from the backbone table (backbones.py), chosen separately
(`--backbone`), so every recipe works with every backbone. Adding a preset is a few lines
in `PRESETS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from catdog import defaults
from catdog.errors import ParameterError

# The reference tutorial trains each of its models for 20 epochs.
EPOCHS = 20


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named model and how to train it.

    `pretrained`: the builder takes a backbone and its weights. `fine_tune`: training is
    two stages, the head alone on the frozen backbone for `head_epochs_share` of the
    epochs (at least one), then the backbone from its `fine_tune_from` layer up together
    with the head, at `learning_rate * fine_tune_learning_rate_factor`. `views`: stored
    views of each training image for frozen-feature training (see catdog.training.frozen).
    `bfloat16`: trains as well in mixed bfloat16 precision, which `precision="auto"` then
    uses on CPUs with bfloat16 instructions. `image_size` None means the backbone's.

    Regularisers for training from scratch (see catdog.training.recipe): `label_smoothing`;
    `mixup` and `cutmix`, the Beta distribution's parameter of MixUp and CutMix on the
    training batches (0: off; with both, each batch gets one of the two);
    `weight_averaging`, the momentum of an exponential moving average of the weights, which
    validation and the saved model use (None: off).

    `patience`: training ends once validation (accuracy, then loss) has not improved for
    this many epochs of the last stage, keeping the best epoch (None: every epoch is run).

    `learning_rate`, `views`, `patience`, `image_size` and `epochs` are the defaults of a
    run's settings (`catdog.runs.TrainSettings`), which the user may override; the rest is the
    recipe. `minimum_accuracy`: the reference assignment's minimum validation accuracy for the
    model this preset stands for, drawn on its curves and judged in the report.
    """

    name: str
    description: str
    builder: str
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    pretrained: bool = False
    learning_rate: float = 1e-3
    schedule: str = "constant"
    weight_decay: float = 0.0
    fine_tune: bool = False
    fine_tune_learning_rate_factor: float = 0.1
    head_epochs_share: float = 0.5
    views: int = 1
    bfloat16: bool = False
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    weight_averaging: float | None = None
    patience: int | None = None
    image_size: int | None = defaults.IMAGE_SIZE
    epochs: int = EPOCHS
    minimum_accuracy: float | None = None


_REFERENCE_AUGMENTATION = {"flip": "horizontal", "rotation": 0.2}

PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in [
    # The reference's three from-scratch models (in mixed bfloat16 where the CPU has it: faster, as
    # accurate), its model 4 (transfer) and the tutorial's fine-tuning. The measurements behind each
    # default: benchmarks/decisions.md.
    Preset("scratch", "the reference's model 1: three conv/pool pairs, dropout, dense",
           "reference_cnn", {"dropout": 0.5}, bfloat16=True, patience=5, minimum_accuracy=0.52),
    Preset("augmented", "model 2: model 1 with random flips and rotations, a hidden dense layer",
           "reference_cnn", {"augment": _REFERENCE_AUGMENTATION, "hidden": 64, "dropout": 0.2}, bfloat16=True,
           patience=5, minimum_accuracy=0.55),
    Preset("preprocessed", "model 3: model 2 with MobileNetV2 scaling and vertical flips too",
           "reference_cnn", {"augment": {"flip": "horizontal_and_vertical", "rotation": 0.2},
                           "preprocess": True, "hidden": 64, "dropout": 0.2}, bfloat16=True, patience=5,
           minimum_accuracy=0.70),
    # At the backbone's own size (224 px for MobileNetV2, the resolution of its ImageNet weights).
    Preset("transfer", "model 4: frozen ImageNet backbone, pooling, dropout, dense",
           "pretrained_classifier", {"augment": _REFERENCE_AUGMENTATION}, pretrained=True, image_size=None,
           patience=3, minimum_accuracy=0.90),
    # Fine-tuning at 1/100 of the head's rate (the TF tutorial's 1e-5): faster, Adam moves the
    # unfrozen weights too far. The mirror-image view keeps the fine-tuned layers from overfitting;
    # the head is nearly at its best after one epoch, so only a third of the epochs train it alone.
    Preset("finetune", "transfer, then the backbone's top layers trained too at 1/100 the rate",
           "pretrained_classifier", {"augment": _REFERENCE_AUGMENTATION}, pretrained=True, fine_tune=True,
           fine_tune_learning_rate_factor=0.01, head_epochs_share=1 / 3, views=2, image_size=None, patience=3),
    Preset("cnn", "a small ResNet from scratch: batch norm, strong augmentation, cosine schedule",
           "residual_cnn", {"augment": {"flip": "horizontal", "rotation": 0.1, "zoom": 0.2,
                                      "translation": 0.1, "contrast": 0.2}},
           learning_rate=3e-3, schedule="cosine", weight_decay=0.05, bfloat16=True, image_size=128, epochs=60),
]})


# The reference tutorial's models, in its order: what `catdog run` trains by default.
REFERENCE_PRESETS = ("scratch", "augmented", "preprocessed", "transfer", "finetune")


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ParameterError("preset", f"unknown {{name}} {name!r}; choose one of: {', '.join(PRESETS)}") from None
