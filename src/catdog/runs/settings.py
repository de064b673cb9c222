"""`TrainSettings`: every choice a training run makes, resolved once and checked.

    >>> settings = TrainSettings.resolve("transfer", epochs=3)
    >>> settings.image_size, settings.stages

`resolve` starts from the preset's defaults (and its backbone's), applies the overrides the
user gave, then what the machine decides (`precision="auto"`), checks every value (a
`ParameterError` naming the setting), and plans the training stages (`plan`). What it
returns is what `config.json` records (see catdog.runs.config): a run resumed, evaluated or
served reads the same settings back, and `from_dict` reads them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from catdog import defaults
from catdog.errors import ParameterError
from catdog.models import (
    NO_WEIGHTS,
    Backbone,
    Preset,
    default_image_size,
    get_backbone,
    get_preset,
    resolve_backbone,
    resolve_weights,
)
from catdog.trust import ood

# Keras dtype policies training accepts; "auto" picks one (see `resolve_precision`).
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
# How training weighs the classes' losses: none, balanced (each class as much in total), or auto
# (balanced beyond `catdog.data.IMBALANCE_RATIO`); the default chosen by measurement
# (benchmarks/class-weights.md).
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


def plan(preset: Preset, backbone: Backbone | None, epochs: int, learning_rate: float | None = None
         ) -> tuple[Stage, ...]:
    """The training stages: one, or for a fine-tuning preset the head alone for the preset's
    share of the epochs (rounded; at least one, and one left) and then the backbone from its
    `fine_tune_from` layer up too, at a lower rate."""
    rate = learning_rate or preset.learning_rate
    if not preset.fine_tune or backbone is None or epochs < 2:
        return (Stage(0, epochs, rate),)
    split = min(max(round(epochs * preset.head_epochs_share), 1), epochs - 1)
    return (Stage(0, split, rate),
            Stage(split, epochs, rate * preset.fine_tune_learning_rate_factor, backbone.fine_tune_from))


def resolve_precision(precision: str, preset: Preset) -> str:
    """A Keras dtype policy. "auto" chooses by device: on GPUs, mixed bfloat16 from compute
    capability 8.0 (Ampere) on, mixed float16 (with loss scaling, which Keras adds) on 7.x, and
    float32 before; on CPUs, mixed bfloat16 for presets that train as well in it where the CPU
    has bfloat16 instructions (see `Preset.bfloat16`), else float32."""
    from catdog.environment import cpu_has_bfloat16, gpu_compute_capability

    if precision not in PRECISIONS:
        raise ParameterError("precision", f"unknown {{name}} {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    capability = gpu_compute_capability()
    if capability is not None:
        return "mixed_bfloat16" if capability >= (8, 0) else "mixed_float16" if capability >= (7, 0) else "float32"
    return "mixed_bfloat16" if preset.bfloat16 and cpu_has_bfloat16() else "float32"


@dataclass(frozen=True)
class TrainSettings:
    """Every training choice of a run (see the module's docstring).

    `backbone`: the pretrained network's name (None for models without one). `weights`:
    "imagenet", a weights file's path, or "none". `frozen_features` and `views`: see
    catdog.training.frozen. `precision`: a Keras dtype policy, resolved. `jit_compile`: XLA.
    `class_weight`: see `catdog.training.recipe.class_weights`. `patience`: epochs without
    improvement before training ends (None: never). `ood_method`, `ood_rate`: the
    out-of-distribution detector fitted after training (catdog.trust.ood). `stages`: the
    planned training stages, which a resumed run follows even if the preset has changed since.
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
    ood_method: str = ood.OOD_METHOD
    ood_rate: float = ood.OOD_RATE
    stages: tuple[Stage, ...] = ()

    @classmethod
    def resolve(cls, preset: str, *, epochs: int | None = None, image_size: int | None = None,
                batch_size: int | None = None, seed: int | None = None, backbone: str | None = None,
                weights: str | None = None, learning_rate: float | None = None, frozen_features: bool = True,
                views: int | None = None, precision: str = "auto", jit_compile: bool = False,
                class_weight: str = CLASS_WEIGHT, patience: int | None = None, ood_rate: float | None = None,
                ood_method: str | None = None) -> TrainSettings:
        """The settings of a new run of `preset`: its defaults, the overrides given (None: the
        default), and the machine's choices, each checked."""
        spec = get_preset(preset)
        network = resolve_backbone(spec, backbone)
        epochs = _at_least_one("epochs", spec.epochs if epochs is None else epochs)
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
            ood_method=ood.check_method(ood.OOD_METHOD if ood_method is None else ood_method),
            ood_rate=ood.check_rate(ood.OOD_RATE if ood_rate is None else ood_rate),
            stages=plan(spec, network, epochs, learning_rate),
        )

    @property
    def spec(self) -> Preset:
        """The preset (a `ParameterError` for a preset catdog no longer has)."""
        return get_preset(self.preset)

    @property
    def network(self) -> Backbone | None:
        """The pretrained backbone the model is built on (None for models without one)."""
        return get_backbone(self.backbone) if self.backbone else None

    @property
    def fine_tunes_from(self) -> int | None:
        """The first epoch (1-based) that trains part of the backbone, None if none does."""
        last = self.stages[-1] if self.stages else None
        return last.start + 1 if last is not None and last.unfreeze_from is not None else None

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["stages"] = [stage.to_dict() for stage in self.stages]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSettings:
        """The settings a `config.json` recorded (unknown keys ignored, missing ones at the
        defaults of the runs that lacked them); stages derived from the preset for a run
        recorded without them."""
        known = {f.name for f in dataclasses.fields(cls)}
        kept = {name: value for name, value in values.items() if name in known}
        stages = tuple(Stage.from_dict(stage) for stage in kept.pop("stages", None) or ())
        settings = cls(**kept)
        if not stages:
            stages = settings._planned()
        return dataclasses.replace(settings, stages=stages)

    def _planned(self) -> tuple[Stage, ...]:
        try:
            spec = self.spec
            return plan(spec, resolve_backbone(spec, self.backbone), self.epochs, self.learning_rate)
        except ParameterError:  # a preset or backbone catdog no longer has: no stages to follow
            return ()


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
