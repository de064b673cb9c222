"""What the audit compares images by: the pooled features of a frozen pretrained backbone.

The network is the one `transfer` trains its head on (MobileNetV2 by default, at its own
224 px, built by `catdog.models.create_model` and run by `catdog.models.inference`), so an
image is described as the models see it. The features are scaled to unit length: their
dot product is the cosine similarity that near-duplicates are found by.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

import numpy as np

from catdog import defaults, environment
from catdog.errors import CatdogError, ParameterError
from catdog.terminal import duration, progress

logger = logging.getLogger(__name__)

# The preset whose frozen bottom gives the features.
FEATURE_PRESET = "transfer"


def describe(backbone: str | None = None) -> str:
    """Which features `backbone_features` computes, in words."""
    from catdog.models import default_image_size, get_preset, resolve_backbone

    spec = get_preset(FEATURE_PRESET)
    network = resolve_backbone(spec, backbone)
    return f"{network.name} pooled features at {default_image_size(spec, network)} px"


def backbone_features(paths: Sequence[str | os.PathLike], *, backbone: str | None = None,
                      weights: str | os.PathLike | None = None, batch_size: int = defaults.BATCH_SIZE) -> np.ndarray:
    """Unit-length features, (len(paths), channels) float32, of image files already checked
    by a scan (at least one). `weights` as for `transfer` (`catdog.models.resolve_weights`);
    random weights are refused, since they would describe nothing."""
    from catdog.data.pipeline import make_dataset
    from catdog.models import create_model, default_image_size, get_preset, resolve_backbone, resolve_weights
    from catdog.models.inference import inference_function, pooled_bottom

    spec = get_preset(FEATURE_PRESET)
    network = resolve_backbone(spec, backbone)
    resolved = resolve_weights(spec, network, weights)
    if resolved is None:
        raise ParameterError("weights", "{name} none: comparing images needs the backbone's pretrained weights "
                                        f"(imagenet, or ${environment.ENV_WEIGHTS} for mobilenet_v2)")
    size = default_image_size(spec, network)
    started = time.perf_counter()
    bottom = inference_function(pooled_bottom(create_model(FEATURE_PRESET, 2, backbone=network.name,
                                                           weights=resolved)))
    dataset = make_dataset([os.fspath(p) for p in paths], np.zeros(len(paths), "int32"), size, batch_size,
                           shuffle=False, cache=False)
    with progress(f"features of {len(paths):,} images for the audit", total=len(paths)) as bar:
        features = []
        for images, _ in dataset:
            features.append(bottom(images).numpy())
            bar.update(len(images))
    features = np.concatenate(features)
    if len(features) != len(paths):
        raise CatdogError(f"{len(paths) - len(features)} of {len(paths)} images could not be read any more "
                          "(changed since they were checked?); run the audit again")
    logger.info(f"audit: {len(paths):,} images described by a pretrained network ({describe(backbone)}) in "
                f"{duration(time.perf_counter() - started)}")
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, 1e-12)).astype("float32")
