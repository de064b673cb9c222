"""`create_model`: the one way to build a model, from a preset, a backbone and weights.

    >>> model = create_model("transfer", num_classes=3, backbone="efficientnet_v2_b0", weights="none")

Errors name the parameter that was wrong (see `catdog.errors.ParameterError`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catdog import defaults, environment
from catdog.errors import CatdogError, ParameterError
from catdog.models.backbones import BACKBONES, DEFAULT_BACKBONE, IMAGENET, Backbone, get_backbone
from catdog.models.presets import PRESETS, Preset, get_preset

if TYPE_CHECKING:
    import keras

NO_WEIGHTS = "none"


def resolve_backbone(preset: Preset, backbone: str | None = None) -> Backbone | None:
    """The backbone of a pretrained preset (default: `DEFAULT_BACKBONE`); None for the others."""
    if not preset.pretrained:
        if backbone is not None:
            raise ParameterError("backbone", f"model {preset.name!r} has no pretrained backbone; leave out {{name}}")
        return None
    return get_backbone(backbone or DEFAULT_BACKBONE)


def default_image_size(preset: Preset, backbone: Backbone | None) -> int:
    return preset.image_size or (backbone.image_size if backbone else defaults.IMAGE_SIZE)


def resolve_weights(preset: Preset, backbone: Backbone | None = None, weights: str | os.PathLike | None = None
                    ) -> str | None:
    """The weights a model starts from: "imagenet", a local file's path, or None (random).

    `weights` None means the preset's default: for a pretrained preset, Keras' ImageNet
    download, except that `$CATDOG_WEIGHTS`, a local copy of MobileNetV2's, is used for the
    `mobilenet_v2` backbone (and only for it). "none" means random weights. A file is
    loaded into the backbone of a pretrained preset and into the whole model otherwise.
    """
    if weights is None:
        if backbone is None:
            return None
        local = environment.local_weights() if backbone.name == DEFAULT_BACKBONE else None
        weights = local or IMAGENET
    weights = os.fspath(weights)
    if weights.lower() == NO_WEIGHTS:
        return None
    if weights.lower() == IMAGENET:
        if backbone is None:
            raise ParameterError("weights", f"model {preset.name!r} has no pretrained backbone: set {{name}} to "
                                            "none or to a weights file")
        return IMAGENET
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ParameterError("weights", f"{{name}}: weights file {path} does not exist; give an .h5 or .weights.h5 "
                                        "file, imagenet, or none")
    if path.suffix != ".h5":
        raise ParameterError("weights", f"{{name}}: weights file {path} is not an .h5 or .weights.h5 file")
    return str(path)


def create_model(preset: str, num_classes: int, *, multilabel: bool = False, image_size: int | None = None,
                 backbone: str | None = None, weights: str | os.PathLike | None = None,
                 seed: int | None = None) -> keras.Model:
    """Build `preset` for `num_classes` classes (with `multilabel`, tags: a sigmoid each) and square
    `image_size` images (default: the preset's, or its backbone's), on `backbone` for a
    pretrained preset.

    `weights`: see `resolve_weights`. With `seed`, the same seed gives the same initial weights.
    """
    import keras

    from catdog.models import builders

    spec = get_preset(preset)
    if num_classes < (1 if multilabel else 2):
        raise ParameterError("num_classes", f"a classifier needs at least {1 if multilabel else 2} classes, got "
                                            f"{{name}}={num_classes}")
    network = resolve_backbone(spec, backbone)
    image_size = image_size or default_image_size(spec, network)
    resolved = resolve_weights(spec, network, weights)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    build = getattr(builders, spec.builder)
    if network is not None:
        model = build(image_size=image_size, num_classes=num_classes, multilabel=multilabel, backbone=network,
                      weights=resolved, **spec.kwargs)
    else:
        model = build(image_size=image_size, num_classes=num_classes, multilabel=multilabel, **spec.kwargs)
        if resolved:
            _load_weights(model, resolved)
    model.name = spec.name
    return model


def _load_weights(model: keras.Model, path: str) -> None:
    try:
        model.load_weights(path)
    except (ValueError, OSError) as e:
        raise CatdogError(f"cannot load weights {path} into model {model.name!r}: {str(e).splitlines()[0]}") from e


def describe(num_classes: int = 2) -> dict[str, list[dict[str, Any]]]:
    """What `catdog models` lists: every preset (parameters at its default size, on the
    default backbone) and every backbone (parameters without a top)."""
    presets = []
    for preset in PRESETS.values():
        network = resolve_backbone(preset)
        model = create_model(preset.name, num_classes, weights=NO_WEIGHTS)
        presets.append({
            "name": preset.name,
            "description": preset.description,
            "image_size": default_image_size(preset, network),
            "backbone": network.name if network else None,
            "parameters": model.count_params(),
            "trainable": sum(math.prod(w.shape) for w in model.trainable_weights),
            "weights": IMAGENET if network else NO_WEIGHTS,
            "learning_rate": preset.learning_rate,
            "epochs": preset.epochs,
        })
    backbones = [{
        "name": backbone.name,
        "description": backbone.description,
        "keras_application": backbone.constructor,
        "image_size": backbone.image_size,
        "fine_tune_from": backbone.fine_tune_from,
        "imagenet_weights_file": backbone.weights_file(backbone.image_size),
        "parameters": backbone.build(backbone.image_size, None).count_params(),
    } for backbone in BACKBONES.values()]
    return {"presets": presets, "backbones": backbones}
