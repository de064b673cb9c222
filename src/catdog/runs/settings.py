"""`TrainSettings`: every choice a training run makes, resolved once and checked.

    >>> settings = TrainSettings.resolve("finetune", epochs=3, backbone="efficientnet_v2_b0")
    >>> settings.image_size, settings.stages

`resolve` starts from the preset's defaults (and its backbone's: image size, where
fine-tuning starts), applies the caller's overrides, then the machine (the precision "auto"
chooses), checks every value (a `ParameterError` names the setting), and plans the training
stages (`plan`). The result is plain data: `config.json` is it written down
(catdog.runs.config), and a resumed run trains with exactly what it recorded.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from catdog import defaults
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
from catdog.models.factory import NO_WEIGHTS
from catdog.trust.ood import OOD_METHOD, OOD_RATE, check_method, check_rate

# Keras dtype policies training accepts; "auto" picks one for the device (see `resolve_precision`).
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
# How training weighs the classes' losses: none, balanced (each class as much in total), or auto
# (balanced beyond catdog.data.IMBALANCE_RATIO); see catdog.training.recipe.class_weights.
CLASS_WEIGHTS = ("none", "balanced", "auto")
CLASS_WEIGHT = "auto"


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


@dataclass(frozen=True)
class TrainSettings:
    """Every choice of a training run (see the module's docstring; make one with `resolve`).

    `weights`: "imagenet", a weights file's path, or "none" (see catdog.models.resolve_weights).
    `frozen_features`, `views`: see catdog.training.frozen. `precision`: a Keras dtype policy.
    `jit_compile`: XLA. `class_weight`: one of `CLASS_WEIGHTS`. `patience`: epochs without
    improvement before training ends (None: never). `ood_method`, `ood_rate`: the
    out-of-distribution detector fitted after training (catdog.trust.ood). `stages`: `plan`'s.
    """

    preset: str
    image_size: int
    epochs: int = 0
    batch_size: int = defaults.BATCH_SIZE
    seed: int = defaults.SEED
    backbone: str | None = None
    weights: str = NO_WEIGHTS
    learning_rate: float = 1e-3
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
                batch_size: int | None = None, seed: int | None = None, backbone: str | None = None,
                weights: str | None = None, learning_rate: float | None = None, frozen_features: bool = True,
                views: int | None = None, precision: str = "auto", jit_compile: bool = False,
                class_weight: str = CLASS_WEIGHT, patience: int | None = None, ood_rate: float = OOD_RATE,
                ood_method: str = OOD_METHOD) -> TrainSettings:
        """The settings of a run of `preset`: its defaults, then these overrides (None: the
        preset's or its backbone's), checked; `patience` 0 runs every epoch."""
        spec = get_preset(preset)
        network = resolve_backbone(spec, backbone)
        epochs = _at_least_one("epochs", epochs or spec.epochs)
        learning_rate = _learning_rate(spec.learning_rate if learning_rate is None else learning_rate)
        if class_weight not in CLASS_WEIGHTS:
            raise ParameterError("class_weight", f"unknown {{name}} {class_weight!r}; choose one of: "
                                                 f"{', '.join(CLASS_WEIGHTS)}")
        return cls(
            preset=spec.name,
            image_size=_at_least_one("image_size", image_size or default_image_size(spec, network)),
            epochs=epochs,
            batch_size=_at_least_one("batch_size", defaults.BATCH_SIZE if batch_size is None else batch_size),
            seed=defaults.SEED if seed is None else seed,
            backbone=network.name if network else None,
            weights=resolve_weights(spec, network, weights) or NO_WEIGHTS,
            learning_rate=learning_rate,
            frozen_features=frozen_features,
            views=_at_least_one("views", spec.views if views is None else views),
            precision=resolve_precision(precision, spec),
            jit_compile=jit_compile,
            class_weight=class_weight,
            patience=_patience(spec.patience if patience is None else patience),
            ood_method=check_method(ood_method),
            ood_rate=check_rate(ood_rate),
            stages=plan(spec, network, epochs, learning_rate),
        )

    @property
    def spec(self) -> Preset:
        """The preset, as catdog has it now (a `ParameterError` if it no longer has it)."""
        return get_preset(self.preset)

    @property
    def network(self) -> Backbone | None:
        """The backbone, for a pretrained preset; None for the others."""
        return get_backbone(self.backbone) if self.backbone else None

    @property
    def fine_tunes_from(self) -> int | None:
        """The first epoch (counted from 1) that trains layers of the backbone; None if none does."""
        if self.stages and self.stages[-1].unfreeze_from is not None:
            return self.stages[-1].start + 1
        return None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSettings:
        """The settings a `config.json` recorded (other keys are ignored). A run recorded without
        stages gets them from its preset, if catdog still has that preset."""
        known = {f.name for f in dataclasses.fields(cls)}
        kept = {name: value for name, value in values.items() if name in known}
        stages = [Stage.from_dict(stage) for stage in kept.pop("stages", None) or []]
        settings = cls(**kept)
        if not stages:
            try:
                spec = get_preset(settings.preset)
            except ParameterError:  # a preset catdog no longer has, or a hand-made run
                return settings
            network = get_backbone(settings.backbone) if settings.backbone else None
            stages = plan(spec, network, settings.epochs, settings.learning_rate)
        return dataclasses.replace(settings, stages=stages)


def resolve_precision(precision: str, preset: Preset) -> str:
    """A Keras dtype policy. "auto" chooses by device: on GPUs, mixed bfloat16 from compute
    capability 8.0 (Ampere) on, mixed float16 (with loss scaling, which Keras adds) on 7.x, and
    float32 before; on CPUs, mixed bfloat16 for presets that train as well in it where the CPU
    has bfloat16 instructions (measured: see `Preset.bfloat16`), else float32."""
    from catdog.environment import cpu_has_bfloat16, gpu_compute_capability

    if precision not in PRECISIONS:
        raise ParameterError("precision", f"unknown {{name}} {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    capability = gpu_compute_capability()
    if capability is not None:
        return "mixed_bfloat16" if capability >= (8, 0) else "mixed_float16" if capability >= (7, 0) else "float32"
    return "mixed_bfloat16" if preset.bfloat16 and cpu_has_bfloat16() else "float32"


def _at_least_one(parameter: str, value: int) -> int:
    if value < 1:
        raise ParameterError(parameter, f"{{name}} must be at least 1, got {value}")
    return value


def _patience(value: int | None) -> int | None:
    """Epochs without improvement before training ends; 0 and None mean never."""
    if value is not None and value < 0:
        raise ParameterError("patience", f"{{name}} must be 0 (run every epoch) or more, got {value}")
    return value or None


def _learning_rate(rate: float) -> float:
    if not (math.isfinite(rate) and rate > 0):
        raise ParameterError("learning_rate", f"{{name}} must be a finite number above 0, got {rate}")
    return rate
