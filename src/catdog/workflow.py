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
3. **score**: the test split's `metrics.json` and figures (catdog.evaluation; for a multi-label
   run also each tag's precision-recall curve and examples of its mistakes).

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
from catdog.outputs import FEATURES, PROBABILITIES, UNLIKE_TRAINING_IMAGES
from catdog.report import plots
from catdog.runs import Run, TrainSettings, as_run, folder
from catdog.terminal import percent
from catdog.trust import calibration, ood

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One step after training: the files it writes into the run folder (and those it writes too
    for a multi-label run), and what writes them."""

    name: str
    outputs: tuple[str, ...]
    write: Callable[[Run], None]
    multilabel_outputs: tuple[str, ...] = ()

    def files(self, run: Run) -> tuple[str, ...]:
        """What this step writes for `run`."""
        return self.outputs + (self.multilabel_outputs if run.multilabel else ())


def fit_trust(run: Run) -> None:
    """The calibration step (see the module's docstring)."""
    settings = run.settings
    _, train_features, train_labels = _outputs(run, TRAIN)
    probabilities, validation_features, labels = _outputs(run, VALIDATION)
    if run.multilabel:
        recorded, calibrated = _fit_tags(probabilities, labels, settings.seed)
        pairs = calibration.as_pairs(probabilities, labels)
        calibrated_pairs = calibration.as_pairs(calibrated, labels)
    else:
        temperature, checked = calibration.calibrate(probabilities, labels, seed=settings.seed)
        recorded = {"temperature": temperature, "checked": checked}
        pairs, calibrated_pairs = (probabilities, labels), (calibration.scale(probabilities, temperature), labels)
    figures = {
        "n": int(len(labels)),
        **recorded.pop("checked"),
        "loss": calibration.negative_log_likelihood(*pairs),
        "loss_calibrated": calibration.negative_log_likelihood(*calibrated_pairs),
        "ece": calibration.expected_calibration_error(*pairs),
        "ece_calibrated": calibration.expected_calibration_error(*calibrated_pairs),
    }
    files.write_json(run.path / folder.CALIBRATION_FILE, {**recorded, "validation": figures})
    # The detector's classes: a multi-label model's images are one population.
    classes = train_labels if train_labels.ndim == 1 else np.zeros(len(train_labels), "int32")
    detector = ood.fit(train_features, classes, validation_features, method=settings.ood_method,
                       rate=settings.ood_rate, seed=settings.seed)
    detector.save(run.path / folder.OOD_FILE)
    logger.info(f"{run.preset}: {_calibration_in_words(recorded['temperature'], figures)}")
    logger.info(f"{run.preset}: {_detector_in_words(detector.method, detector.rate)}")


def _calibration_in_words(temperature: float | list[float], figures: dict) -> str:
    error = (f"calibration error on validation {percent(figures['ece'])} -> {percent(figures['ece_calibrated'])}: "
             "how far its confidence is from how often it is right")
    if not isinstance(temperature, int | float):
        return (f"each tag's probability adjusted by its own temperature, from {min(temperature):.1f} to "
                f"{max(temperature):.1f}, fitted on validation (1.0: left as it was; {error})")
    if temperature == 1.0:
        return ("probabilities left as they are: a temperature fitted on validation did not help on validation "
                f"images it was not fitted on ({error})")
    return f"probabilities adjusted by a temperature of {temperature:.1f} fitted on validation ({error})"


def _detector_in_words(method: str, rate: float) -> str:
    """How the out-of-distribution detector decides, in words (see catdog.trust.ood)."""
    measure = {"knn": "its nearest training images (k-nearest neighbours)",
               "mahalanobis": "the training images of each class (Mahalanobis distance)"}[method]
    return (f"a photo counts as {UNLIKE_TRAINING_IMAGES} when what the classifier sees in it is farther from "
            f"{measure} than for all but {percent(rate)} of the validation photos")


def _fit_tags(probabilities: np.ndarray, labels: np.ndarray, seed: int) -> tuple[dict, np.ndarray]:
    """A multi-label model's temperature per tag and, on the probabilities they calibrate, its
    threshold per tag (the best F1 on the validation split; see `catdog.metrics.fit_thresholds`)."""
    from catdog.metrics import fit_thresholds

    temperatures, checked = calibration.calibrate_tags(probabilities, labels, seed=seed)
    calibrated = calibration.scale_tags(probabilities, temperatures)
    thresholds = fit_thresholds(labels, calibrated)
    return {"temperature": temperatures, "thresholds": [float(t) for t in thresholds], "checked": checked}, calibrated


def _outputs(run: Run, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The uncalibrated probabilities, the features and the labels of `split`'s images: from the
    head's inputs that training stored, where it did, else by running the model over the split."""
    from catdog.models.inference import numpy_function, run_over

    model = run.keras_model()
    stored = folder.head_inputs_path(run.path, split)
    if stored.is_file():
        with np.load(stored) as arrays:
            features, labels = arrays["features"], arrays["labels"]
        head = model.layers[-1]
        probabilities = np.concatenate([keras.ops.convert_to_numpy(head(features[i:i + 512], training=False))
                                        for i in range(0, len(features), 512)])
        return probabilities, features, labels
    outputs, labels = run_over(numpy_function(run.served_model(calibrated=False)), getattr(run.data(), split),
                               what=f"{split} images through the model", total=len(run.manifest().files(split)[0]))
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
    if run.multilabel:
        logger.info(f"{run.preset}: test mean average precision {percent(metrics['mean_average_precision'])}, "
                    f"micro F1 {percent(metrics['micro_f1'])}, every tag right for "
                    f"{percent(metrics['subset_accuracy'])} of {metrics['n']:,} images")
    else:
        logger.info(f"{run.preset}: test accuracy {percent(metrics['accuracy'])} on {metrics['n']:,} images")


STEPS: tuple[Step, ...] = (
    Step("calibrate", (folder.CALIBRATION_FILE, folder.OOD_FILE), fit_trust),
    Step("curves", (folder.ACCURACY_PLOT, folder.LOSS_PLOT), draw_curves),
    Step("score", (folder.METRICS_FILE, folder.CONFUSION_MATRIX_PLOT, folder.MISCLASSIFIED_PLOT,
                   folder.RELIABILITY_PLOT), score_test, (folder.PR_CURVES_PLOT, folder.TAG_EXAMPLES_PLOT)),
)


def missing_steps(run: Run) -> list[Step]:
    """The steps whose files are missing, or older than the model or an earlier step's files."""
    since = _mtime(run.path / folder.MODEL_FILE)
    missing = []
    for step in STEPS:
        times = [_mtime(run.path / name) for name in step.files(run)]
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
