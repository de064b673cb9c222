"""`TrainSettings`: every choice a run trains with, resolved and checked once.

    >>> settings = TrainSettings.resolve("finetune", epochs=3, backbone="mobilenet_v3_large")
    >>> settings.image_size, settings.precision, settings.stages

`resolve` takes a preset's name and the user's overrides, fills in the preset's defaults (its
epochs, image size or its backbone's, learning rate, views, patience), resolves what depends on
the machine or the files (the weights, the precision) and plans the training stages; each bad
value is a `ParameterError` naming its parameter. The result is what `config.json` records
(see catdog.runs.config), so that a resumed run follows its own settings and stages even if
the preset's defaults have changed since.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from catdog import defaults, environment
from catdog.errors import ParameterError
from catdog.models import (
    Backbone,
    Preset,
    default_image_size,
    get_backbone,
    get_preset,
    resolve_backbone,
    resolve_weights,
)
from catdog.trust.ood import OOD_METHOD, OOD_RATE, check_method, check_rate

# Keras dtype policies training accepts; "auto" picks one (see `resolve_precision`).
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
# How training weighs the classes' losses: none, balanced (each class as much in total), or auto
# (balanced beyond catdog.data.IMBALANCE_RATIO); the default chosen by measurement (README, "Your own data").
CLASS_WEIGHTS = ("none", "balanced", "auto")
CLASS_WEIGHT = "auto"
# A run recorded without a learning rate trained at Adam's usual one.
RECORDED_LEARNING_RATE = 1e-3


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


def resolve_precision(precision: str, preset: Preset) -> str:
    """A Keras dtype policy. "auto" chooses by device: on GPUs, mixed bfloat16 from compute
    capability 8.0 (Ampere) on, mixed float16 (with loss scaling, which Keras adds) on 7.x, and
    float32 before; on CPUs, mixed bfloat16 for presets that train as well in it where the CPU
    has bfloat16 instructions (measured: see `Preset.bfloat16`), else float32."""
    if precision not in PRECISIONS:
        raise ParameterError("precision", f"unknown {{name}} {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    capability = environment.gpu_compute_capability()
    if capability is not None:
        return "mixed_bfloat16" if capability >= (8, 0) else "mixed_float16" if capability >= (7, 0) else "float32"
    return "mixed_bfloat16" if preset.bfloat16 and environment.cpu_has_bfloat16() else "float32"


def _at_least_one(parameter: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(parameter, f"{{name}} must be at least 1, got {value}")
    return value


def _learning_rate(rate: float) -> float:
    if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
        raise ParameterError("learning_rate", f"{{name}} must be a finite number above 0, got {rate}")
    return float(rate)


def _patience(value: int | None) -> int | None:
    """Epochs without improvement before training ends; 0 and None mean never."""
    if value is not None and value < 0:
        raise ParameterError("patience", f"{{name}} must be 0 (run every epoch) or more, got {value}")
    return value or None


def _class_weight(class_weight: str) -> str:
    if class_weight not in CLASS_WEIGHTS:
        raise ParameterError("class_weight", f"unknown {{name}} {class_weight!r}; choose one of: "
                                             f"{', '.join(CLASS_WEIGHTS)}")
    return class_weight


@dataclass(frozen=True)
class TrainSettings:
    """Every training choice of a run (see the module's docstring).

    `backbone` is None for models without one; `weights` is "none", "imagenet" or a file;
    `frozen_features` and `views`: see catdog.training.frozen; `precision`: a Keras dtype
    policy; `jit_compile`: XLA; `class_weight`: see catdog.training.recipe.class_weights;
    `patience`: epochs without improvement before training ends (None: never); `ood_method`
    and `ood_rate`: the out-of-distribution detector fitted after training (see
    catdog.trust.ood); `stages`: the training stages (`plan`).
    """

    preset: str
    image_size: int
    epochs: int = 0
    batch_size: int = defaults.BATCH_SIZE
    seed: int = defaults.SEED
    backbone: str | None = None
    weights: str = "none"
    learning_rate: float = RECORDED_LEARNING_RATE
    frozen_features: bool = True
    views: int = 1
    precision: str = "float32"
    jit_compile: bool = False
    class_weight: str = "none"  # runs recorded before class weights trained without them
    patience: int | None = None
    ood_method: str = OOD_METHOD
    ood_rate: float = OOD_RATE
    stages: list[Stage] = field(default_factory=list)

    @classmethod
    def resolve(cls, preset: str, *, epochs: int | None = None, image_size: int | None = None,
                batch_size: int = defaults.BATCH_SIZE, seed: int = defaults.SEED, backbone: str | None = None,
                weights: str | os.PathLike | None = None, learning_rate: float | None = None,
                frozen_features: bool = True, views: int | None = None, precision: str = "auto",
                jit_compile: bool = False, class_weight: str = CLASS_WEIGHT, patience: int | None = None,
                ood_rate: float = OOD_RATE, ood_method: str = OOD_METHOD) -> TrainSettings:
        """The settings of a new run of `preset`: the preset's defaults, with the given overrides,
        each checked (`ParameterError` names the parameter).

        `epochs`, `image_size`, `learning_rate`, `views`, `patience`: None is the preset's (the
        image size of a pretrained preset is its backbone's). `weights`: see
        `catdog.models.resolve_weights`. `precision`: a Keras dtype policy, or "auto" (see
        `resolve_precision`). `patience` 0 runs every epoch.
        """
        spec = get_preset(preset)
        network = resolve_backbone(spec, backbone)
        epochs = _at_least_one("epochs", spec.epochs if epochs is None else epochs)
        rate = _learning_rate(spec.learning_rate if learning_rate is None else learning_rate)
        resolved_weights = resolve_weights(spec, network, weights)
        return cls(
            preset=spec.name,
            image_size=_at_least_one("image_size", default_image_size(spec, network) if image_size is None
                                     else image_size),
            epochs=epochs,
            batch_size=_at_least_one("batch_size", batch_size),
            seed=seed,
            backbone=network.name if network else None,
            weights=resolved_weights or "none",
            learning_rate=rate,
            frozen_features=bool(frozen_features),
            views=_at_least_one("views", spec.views if views is None else views),
            precision=resolve_precision(precision, spec),
            jit_compile=bool(jit_compile),
            class_weight=_class_weight(class_weight),
            patience=_patience(spec.patience if patience is None else patience),
            ood_method=check_method(ood_method),
            ood_rate=check_rate(ood_rate),
            stages=plan(spec, network, epochs, rate),
        )

    @property
    def spec(self):
        """The preset (`catdog.models.Preset`) these settings train; `ParameterError` if catdog no
        longer has it."""
        return get_preset(self.preset)

    @property
    def network(self) -> Backbone | None:
        """The pretrained backbone (`catdog.models.Backbone`) these settings train on; None for a
        model without one."""
        return get_backbone(self.backbone) if self.backbone else None

    @property
    def fine_tunes_from(self) -> int | None:
        """The first epoch (1-based) that trains the backbone too; None if none does."""
        if not self.stages or self.stages[-1].unfreeze_from is None:
            return None
        return self.stages[-1].start + 1

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "stages": [stage.to_dict() for stage in self.stages]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSettings:
        """The settings `to_dict` wrote (unknown keys are ignored). A run recorded without its
        stages gets them from its preset, if catdog still has it."""
        known = {f.name for f in dataclasses.fields(cls)}
        kept = {name: value for name, value in values.items() if name in known}
        recorded = kept.pop("stages", None) or []
        settings = cls(**kept)
        if recorded:
            stages = [Stage.from_dict(stage) for stage in recorded]
        else:
            try:
                spec = get_preset(settings.preset)
                stages = plan(spec, resolve_backbone(spec, settings.backbone), settings.epochs,
                              settings.learning_rate)
            except ParameterError:  # a preset catdog does not know: no stages to follow
                stages = []
        return dataclasses.replace(settings, stages=stages)
