"""A run from settings to a finished run folder: training, then the steps after it.

    >>> settings = catdog.runs.TrainSettings.resolve("transfer", epochs=3)
    >>> run = catdog.workflow.train_run(settings, "cats_and_dogs_filtered")
    >>> run.metrics["accuracy"], run.temperature

Training (catdog.training) ends at the model. `finish` then runs the steps of `STEPS`, in
order, each writing its files into the run folder:

1. **calibrate**: the run's model over the training and validation splits (or the head's
   stored inputs, which training leaves for a frozen model); `calibration.json`, the
   temperature that minimises the validation split's cross-entropy, kept only if it also
   lowers both the cross-entropy and the calibration error of validation images it was not
   fitted on (catdog.trust.calibration), with the figures before and after; `ood.npz`, the
   out-of-distribution detector fitted on the training images' features, with the threshold
   that flags the run's `ood_rate` of the validation images (catdog.trust.ood);
2. **curves**: `accuracy.png` and `loss.png`, by epoch;
3. **score**: the test split's `metrics.json` and figures (catdog.evaluation).

A step whose files are all there, and newer than the model and than the files of the steps
before it, is done and skipped: so `finish` (and `catdog train --resume`) completes a run
whichever step was interrupted, and a run trained before a step existed gets it. Then the
run's cache folder goes.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np

from catdog import files, training
from catdog.data import Data, DataArgument
from catdog.data.pack import named_read_errors
from catdog.data.splits import TRAIN, VALIDATION
from catdog.errors import CatdogError, ParameterError
from catdog.evaluation import evaluate
from catdog.outputs import FEATURES, PROBABILITIES
from catdog.report import plots
from catdog.runs import Run, TrainSettings, as_run, folder
from catdog.trust import calibration, ood

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One step after training: the files it writes into the run folder, and what writes them."""

    name: str
    outputs: tuple[str, ...]
    write: Callable[[Run], None]


def fit_trust(run: Run) -> None:
    """The calibration step (see the module's docstring)."""
    settings = run.settings
    _, train_features, train_labels = _outputs(run, TRAIN)
    probabilities, validation_features, labels = _outputs(run, VALIDATION)
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
    files.write_json(run.path / folder.CALIBRATION_FILE, {"temperature": temperature, "validation": figures})
    detector = ood.fit(train_features, train_labels, validation_features, method=settings.ood_method,
                       rate=settings.ood_rate, seed=settings.seed)
    detector.save(run.path / folder.OOD_FILE)
    if "ece_held_out" in checked:
        logger.info(f"calibration: temperature {temperature:.3f} ({'kept' if checked['kept'] else 'none kept'}: on "
                    f"held-out validation folds, loss {checked['loss_held_out']:.4f} -> "
                    f"{checked['loss_held_out_calibrated']:.4f}, ECE {checked['ece_held_out']:.2%} -> "
                    f"{checked['ece_held_out_calibrated']:.2%})")
    else:
        logger.info(f"calibration: temperature {temperature:.3f} (too few validation images to check one)")
    logger.info(f"out of distribution: {detector.method} on {detector.dimensions} features of "
                f"{len(train_labels)} training images, flagging {detector.rate:.0%} of validation images")


def _outputs(run: Run, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The uncalibrated probabilities, the features and the labels of `split`'s images: from the
    head's inputs that training stored, where it did, else by running the model over the split."""
    from catdog.models.inference import numpy_function, run_over, served

    model = run.keras_model()
    stored = folder.head_inputs_path(run.path, split)
    if stored.is_file():
        with np.load(stored) as arrays:
            features, labels = arrays["features"], arrays["labels"]
        head = model.layers[-1]
        probabilities = np.concatenate([keras.ops.convert_to_numpy(head(features[i:i + 512], training=False))
                                        for i in range(0, len(features), 512)])
        return probabilities, features, labels
    outputs, labels = run_over(numpy_function(served(model)), getattr(run.data(), split))
    return outputs[PROBABILITIES], outputs[FEATURES], labels


def draw_curves(run: Run) -> None:
    """The curves step: accuracy and loss by epoch, with the assignment's minimum line."""
    history, settings = run.history, run.settings
    try:
        minimum = settings.spec.minimum_accuracy
    except ParameterError:  # a preset catdog no longer has
        minimum = None
    fine_tuning_from = settings.fine_tunes_from if settings.stages else None
    plots.training_curve(history, "accuracy", run.path / folder.ACCURACY_PLOT, minimum, fine_tuning_from)
    plots.training_curve(history, "loss", run.path / folder.LOSS_PLOT, fine_tuning_from=fine_tuning_from)


def score_test(run: Run) -> None:
    """The score step: the test split's metrics and figures."""
    metrics = evaluate(run)
    logger.info(f"{run.preset}: test accuracy {metrics['accuracy']:.4f} on {metrics['n']} images")


STEPS: tuple[Step, ...] = (
    Step("calibrate", (folder.CALIBRATION_FILE, folder.OOD_FILE), fit_trust),
    Step("curves", (folder.ACCURACY_PLOT, folder.LOSS_PLOT), draw_curves),
    Step("score", (folder.METRICS_FILE, folder.CONFUSION_MATRIX_PLOT, folder.MISCLASSIFIED_PLOT,
                   folder.RELIABILITY_PLOT), score_test),
)


def missing_steps(run: Run) -> list[Step]:
    """The steps whose files are missing, or older than the model or an earlier step's files."""
    since = _mtime(run.path / folder.MODEL_FILE)
    missing = []
    for step in STEPS:
        times = [_mtime(run.path / name) for name in step.outputs]
        if missing or None in times or min(times) < since:
            missing.append(step)
        else:
            since = max(since, *times)
    return missing


def _mtime(path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def is_finished(run: Run) -> bool:
    """Whether training has ended and every step after it is done (and its cache is gone)."""
    trained = (run.path / folder.MODEL_FILE).is_file() and (run.path / folder.TRAINING_FILE).is_file()
    return trained and not missing_steps(run) and not (run.path / folder.CACHE_DIR).exists()


def finish(run: Run | str | os.PathLike) -> Run:
    """Run the steps after training that `run` is missing (see the module's docstring)."""
    run = as_run(run)
    if not (run.path / folder.TRAINING_FILE).is_file():
        raise CatdogError(f"run {run.path} has not finished training; continue it with "
                          f"`catdog train --resume {run.path}`")
    with run.locked(), named_read_errors(run.config.data):
        for step in missing_steps(run):
            step.write(run)
        shutil.rmtree(run.path / folder.CACHE_DIR, ignore_errors=True)
    return run


def train_run(settings: TrainSettings, data: DataArgument | Data = None, *, out: str | os.PathLike | None = None,
              strategy: str = "auto", callbacks: Sequence[keras.callbacks.Callback] = ()) -> Run:
    """Train a model with `settings` on `data` (see `catdog.training.train`), then finish the
    run (on the chief worker only, under the multiworker strategy)."""
    run = training.train(settings, data, out=out, strategy=strategy, callbacks=callbacks)
    return finish(run) if training.is_chief(strategy) else run


def resume_run(run: Run | str | os.PathLike, data: DataArgument | Data = None, *, strategy: str = "auto",
               callbacks: Sequence[keras.callbacks.Callback] = ()) -> Run:
    """Complete an interrupted run with its own settings: its training from its last finished
    epoch (see `catdog.training.resume`), then the steps after training it is missing."""
    run = as_run(run)
    if is_finished(run):
        raise CatdogError(f"run {run.path} has already finished its {len(run.history)} epochs")
    return finish(training.resume(run, data, strategy=strategy, callbacks=callbacks))
