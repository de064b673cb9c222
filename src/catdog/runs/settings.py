"""A run's settings: every choice training makes, resolved once into one frozen object.

    >>> settings = TrainSettings.resolve("transfer", epochs=3)
    >>> settings.image_size, settings.stages
    (224, (Stage(start=0, end=3, learning_rate=0.001, unfreeze_from=None),))

`TrainSettings.resolve` starts from the preset's and the backbone's defaults (see
`catdog.models.presets` and `catdog.models.backbones`), applies the user's overrides, then
what depends on the machine (`precision="auto"`, `$CATDOG_WEIGHTS`), and checks every value,
raising `ParameterError` that names the one that was wrong. The preset, the backbone and the
training stages are resolved into it. The command line and the Python API build it the same
way; training takes it (`catdog.training.train`), a run's `config.json` records it
(`catdog.runs.RunConfig`), and `--resume` reads it back from there.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from catdog import defaults, environment
from catdog.errors import ParameterError
from catdog.models import (
    NO_WEIGHTS,
    Backbone,
    Preset,
    default_image_size,
    get_preset,
    resolve_backbone,
    resolve_weights,
)
from catdog.trust import ood

# Keras dtype policies training accepts; "auto" picks one (see `resolve_precision`).
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
# How training weighs the classes' losses: none, balanced (each class as much in total), or auto
# (balanced beyond `catdog.data.IMBALANCE_RATIO`); auto chosen by measurement (benchmarks/class-weights.md).
CLASS_WEIGHTS = ("none", "balanced", "auto")

# What a run recorded before a setting existed trained with, for reading its `config.json`.
RECORDED_BEFORE = {"backbone": None, "epochs": 0, "batch_size": defaults.BATCH_SIZE, "seed": defaults.SEED,
                   "weights": NO_WEIGHTS, "learning_rate": 1e-3, "frozen_features": True, "views": 1,
                   "precision": "float32", "jit_compile": False, "class_weight": "none", "patience": None,
                   "ood_method": ood.OOD_METHOD, "ood_rate": ood.OOD_RATE}


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
    def from_dict(cls, values: Mapping[str, Any]) -> Stage:
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


@dataclass(frozen=True)
class TrainSettings:
    """Everything a run trains with (see the module's docstring; `resolve` builds it).

    `weights`: "imagenet", a weights file's path, or "none" (random; see
    `catdog.models.resolve_weights`). `precision`: a Keras dtype policy. `class_weight`: see
    `catdog.training.recipe.class_weights`. `patience`: epochs without improvement before
    training ends (None: never). `frozen_features`, `views`: see catdog.training.frozen.
    `ood_method`, `ood_rate`: the out-of-distribution detector fitted after training (see
    catdog.trust.ood). `stages`: the training stages, so that a resumed run follows its own
    schedule even if the preset's has changed since.
    """

    preset: str
    image_size: int
    epochs: int
    batch_size: int
    seed: int
    backbone: str | None
    weights: str
    learning_rate: float
    frozen_features: bool
    views: int
    precision: str
    jit_compile: bool
    class_weight: str
    patience: int | None
    ood_method: str
    ood_rate: float
    stages: tuple[Stage, ...]

    @classmethod
    def resolve(
        cls,
        preset: str,
        *,
        epochs: int | None = None,
        image_size: int | None = None,
        batch_size: int | None = None,
        seed: int | None = None,
        backbone: str | None = None,
        weights: str | None = None,
        learning_rate: float | None = None,
        frozen_features: bool = True,
        views: int | None = None,
        precision: str | None = None,
        jit_compile: bool = False,
        class_weight: str | None = None,
        patience: int | None = None,
        ood_method: str | None = None,
        ood_rate: float | None = None,
    ) -> TrainSettings:
        """The settings of training `preset` with the given overrides (None: the default).

        Defaults: `epochs`, `image_size`, `learning_rate`, `views`, `patience` the preset's
        (the image size its backbone's where the preset has none; `patience` 0 means never);
        the default backbone (MobileNetV2) for pretrained presets; `weights` ImageNet's for
        those, none otherwise; `precision` "auto"; `class_weight` "auto"; the detector's
        `ood_method` and `ood_rate` catdog.trust.ood's.
        """
        spec = get_preset(preset)
        network = resolve_backbone(spec, backbone)
        epochs = _at_least_one("epochs", _given(epochs, spec.epochs))
        learning_rate = _learning_rate(_given(learning_rate, spec.learning_rate))
        return cls(
            preset=spec.name,
            image_size=_at_least_one("image_size", _given(image_size, default_image_size(spec, network))),
            epochs=epochs,
            batch_size=_at_least_one("batch_size", _given(batch_size, defaults.BATCH_SIZE)),
            seed=_given(seed, defaults.SEED),
            backbone=network.name if network else None,
            weights=resolve_weights(spec, network, weights) or NO_WEIGHTS,
            learning_rate=learning_rate,
            frozen_features=frozen_features,
            views=_at_least_one("views", _given(views, spec.views)),
            precision=resolve_precision(precision or "auto", spec),
            jit_compile=jit_compile,
            class_weight=_class_weight(class_weight or "auto"),
            patience=_patience(_given(patience, spec.patience)),
            ood_method=ood.check_method(ood_method or ood.OOD_METHOD),
            ood_rate=ood.check_rate(_given(ood_rate, ood.OOD_RATE)),
            stages=plan(spec, network, epochs, learning_rate),
        )

    @functools.cached_property
    def spec(self) -> Preset:
        """The preset's row (`catdog.models.PRESETS`)."""
        return get_preset(self.preset)

    @functools.cached_property
    def network(self) -> Backbone | None:
        """The backbone's row (`catdog.models.BACKBONES`); None for a preset without one."""
        return resolve_backbone(self.spec, self.backbone)

    @property
    def initial_weights(self) -> str | None:
        """`weights` as `catdog.models.create_model` takes them: None for random weights."""
        return None if self.weights == NO_WEIGHTS else self.weights

    @property
    def fine_tunes_from(self) -> int | None:
        """The first epoch (1-based) of a fine-tuning stage, if the last stage fine-tunes."""
        last = self.stages[-1]
        return last.start + 1 if last.unfreeze_from is not None else None

    def to_dict(self) -> dict[str, Any]:
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {**values, "stages": [stage.to_dict() for stage in self.stages]}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainSettings:
        """The settings a `config.json` recorded (`preset` and `image_size` at least); what it
        lacks is what runs trained with before the setting existed (`RECORDED_BEFORE`), and
        stages it lacks are the preset's."""
        names = {field.name for field in dataclasses.fields(cls)}
        kept = {**RECORDED_BEFORE, **{name: value for name, value in values.items() if name in names}}
        if "stages" in values:
            kept["stages"] = tuple(Stage.from_dict(stage) for stage in values["stages"])
        else:
            kept["stages"] = _recorded_plan(kept)
        return cls(**kept)


def _recorded_plan(values: Mapping[str, Any]) -> tuple[Stage, ...]:
    """The stages of a run recorded without them: its preset's, for its epochs (none if catdog no
    longer has that preset)."""
    try:
        spec = get_preset(values["preset"])
        network = resolve_backbone(spec, values["backbone"])
    except ParameterError:
        return ()
    return plan(spec, network, values["epochs"], values["learning_rate"])


def _given(value, default):
    """The override if one was given (None: not given), else the default."""
    return default if value is None else value


def resolve_precision(precision: str, preset: Preset) -> str:
    """A Keras dtype policy. "auto" chooses by device: on GPUs, mixed bfloat16 from compute
    capability 8.0 (Ampere) on, mixed float16 (with loss scaling, which Keras adds) on 7.x, and
    float32 before; on CPUs, mixed bfloat16 for presets that train as well in it where the CPU
    has bfloat16 instructions (`Preset.bfloat16`), else float32."""
    if precision not in PRECISIONS:
        raise ParameterError("precision", f"unknown {{name}} {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    capability = environment.gpu_compute_capability()
    if capability is not None:
        return "mixed_bfloat16" if capability >= (8, 0) else "mixed_float16" if capability >= (7, 0) else "float32"
    return "mixed_bfloat16" if preset.bfloat16 and environment.cpu_has_bfloat16() else "float32"


def _class_weight(class_weight: str) -> str:
    if class_weight not in CLASS_WEIGHTS:
        raise ParameterError("class_weight", f"unknown {{name}} {class_weight!r}; choose one of: "
                                             f"{', '.join(CLASS_WEIGHTS)}")
    return class_weight


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
