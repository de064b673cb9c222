"""What a run stores to be trusted, fitted once training has chosen its best epoch, and read back.

After training (`catdog.training.loop`), `fit` runs the run's best model over the training
and validation splits and writes into the run folder:

- `calibration.json`: the temperature that minimises the validation split's cross-entropy,
  kept if it also does on validation images it was not fitted on (see
  catdog.trust.calibration), with the validation figures before and after;
- `ood.npz`: the out-of-distribution detector fitted on the training images' features,
  with the threshold that flags the run's `ood_rate` of the validation images (see
  catdog.trust.ood; the method and rate are the run's settings, `RunConfig.ood_method`
  and `RunConfig.ood_rate`).

`read` gives them back for prediction, serving, evaluation and export; a run trained before
these existed reads as temperature 1 and no detector until `catdog train --resume` adds them.
"""

from __future__ import annotations

import logging
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catdog import files, runs
from catdog.data.splits import TRAIN, VALIDATION
from catdog.errors import CatdogError
from catdog.trust import FEATURES, PROBABILITIES, calibration, ood

logger = logging.getLogger(__name__)

Collected = tuple[np.ndarray, np.ndarray, np.ndarray]  # probabilities, features, labels


@dataclass(frozen=True)
class Trust:
    """A run's temperature and out-of-distribution detector (None if it has none)."""

    temperature: float = 1.0
    ood: ood.OutOfDistribution | None = None


def read(run: str | Path) -> Trust:
    """The trust statistics stored in the run folder `run` (defaults where there are none)."""
    run = Path(run)
    recorded = runs.read_json(run / runs.CALIBRATION_FILE) or {}
    temperature = recorded.get("temperature", 1.0)
    if not (isinstance(temperature, int | float) and math.isfinite(temperature) and temperature > 0):
        raise CatdogError(f"{run / runs.CALIBRATION_FILE}: temperature must be a number above 0, found {temperature!r}")
    detector = None
    if (path := run / runs.OOD_FILE).is_file():
        try:
            detector = ood.OutOfDistribution.load(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise CatdogError(f"{path} is damaged ({str(e)[:120]}); write it again with "
                              f"`catdog train --resume {run}` after removing it") from None
    return Trust(float(temperature), detector)


def fit(run: str | Path, data, frozen=None) -> Trust:
    """Fit the temperature and the out-of-distribution detector of the run folder `run` (a
    finished run) on `data` (its `catdog.data.Data`), write them, and return them.

    `frozen`: the run's `catdog.training.frozen.FrozenFeatures`, whose stored features are
    used instead of running the backbone again when they are the saved model's.
    """
    from catdog.models.inference import numpy_function, served

    opened = runs.open_run(run)
    settings = opened.config
    model = opened.load_model()
    outputs = numpy_function(served(model))
    head = model.layers[-1]

    def collect(split: str) -> Collected:
        stored = frozen.head_inputs(split) if frozen is not None else None
        if stored is not None:
            features, labels = stored
            probabilities = np.concatenate([np.asarray(head(features[i:i + 512], training=False))
                                            for i in range(0, len(features), 512)])
            return probabilities, features, labels
        parts = [(outputs(images), labels) for images, labels in getattr(data, split).as_numpy_iterator()]
        return (np.concatenate([out[PROBABILITIES] for out, _ in parts]),
                np.concatenate([out[FEATURES] for out, _ in parts]),
                np.concatenate([labels for _, labels in parts]))

    _, train_features, train_labels = collect(TRAIN)
    probabilities, validation_features, labels = collect(VALIDATION)
    temperature, checked = calibration.calibrate(probabilities, labels, seed=settings.seed)
    calibrated = calibration.scale(probabilities, temperature)
    figures = {
        "n": int(len(labels)),
        **checked,
        "loss": calibration.negative_log_likelihood(probabilities, labels),
        "loss_calibrated": calibration.negative_log_likelihood(calibrated, labels),
        "ece": calibration.expected_calibration_error(probabilities, labels),
        "ece_calibrated": calibration.expected_calibration_error(calibrated, labels),
    }
    files.write_json(opened.path / runs.CALIBRATION_FILE, {"temperature": temperature, "validation": figures})
    detector = ood.fit(train_features, train_labels, validation_features, method=settings.ood_method,
                       rate=settings.ood_rate, seed=settings.seed)
    detector.save(opened.path / runs.OOD_FILE)
    logger.info(f"calibration: temperature {temperature:.3f}; validation ECE {figures['ece']:.2%} -> "
                f"{figures['ece_calibrated']:.2%}")
    logger.info(f"out of distribution: {detector.method} on {detector.dimensions} features of "
                f"{len(train_labels)} training images, flagging {detector.rate:.0%} of validation images")
    return Trust(temperature, detector)


def describe(trust: Trust) -> dict:
    """What `GET /model` and `metrics.json` say about a run's trust statistics."""
    detector = trust.ood
    return {"temperature": trust.temperature,
            "ood": None if detector is None else {"method": detector.method, "rate": detector.rate,
                                                  "threshold": detector.threshold}}

