"""A run's model scored on its test split, or on a folder of labelled images, with its figures.

The test split is the one the run's `splits.csv` recorded, never seen in training or model
selection. Results are written with the figures: to the run folder for the test split, to
`evaluation-<folder name>/` inside it for a `data` folder, so the run's own test score stays.

The probabilities scored are the calibrated ones that prediction gives (the run's
temperature); `metrics["calibration"]` has the expected calibration error before and after,
`reliability.png` draws both, and `metrics["ood"]` the share of images the run's
out-of-distribution detector flags. `tta` averages each image's probabilities with its mirror
image's (catdog.trust.tta). The misclassified images are drawn under the Grad-CAM heatmaps of
their predictions (catdog.explain).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from catdog import defaults, files
from catdog.data import DataArgument, as_source, resolve_data_dir
from catdog.data.pack import named_read_errors
from catdog.data.scan import scan
from catdog.data.splits import TEST
from catdog.errors import CatdogError
from catdog.evaluation.metrics import metrics_from, misclassified_files
from catdog.outputs import FEATURES, PROBABILITIES
from catdog.report import plots
from catdog.report.plots import Mistake
from catdog.runs import Run, as_run, folder
from catdog.trust import calibration
from catdog.trust.tta import with_mirror

logger = logging.getLogger(__name__)

MAX_MISTAKES_SHOWN = 16
UNCALIBRATED = "uncalibrated"


def evaluate(run: Run | str | os.PathLike, data: DataArgument = None, batch_size: int = defaults.BATCH_SIZE,
             tta: bool = False) -> dict[str, Any]:
    """Score the run's model on its test split, or on every image of `data` (a folder of class
    folders whose names the model knows, or a `catdog.data.Source` with labels), and write
    `metrics.json`, `confusion_matrix.png`, `misclassified.png` and `reliability.png`. Returns
    the metrics (see `catdog.evaluation.metrics.metrics_from`, and the module's docstring for
    "calibration", "ood" and `tta`)."""
    run = as_run(run)
    with run.locked():
        run.keras_model()  # first: a model that does not fit its run is refused before any image is read
        if data is None:
            paths = run.manifest().files(TEST)[0]
            if not paths:
                raise CatdogError(f"run {run.path} has no test split to evaluate on")
            with named_read_errors(run.config.data):
                test = run.data().test
                if batch_size != run.settings.batch_size:
                    test = test.rebatch(batch_size)
                return _evaluate(run, test, paths, "test split", run.path, tta)
        from catdog.data.pipeline import make_dataset

        paths, labels = labelled_images(data, run.class_names)
        dataset = make_dataset(paths, labels, run.image_size, batch_size, shuffle=False, cache=False)
        root = resolve_data_dir(data)
        return _evaluate(run, dataset, paths, str(root), run.path / f"evaluation-{root.resolve().name}", tta)


def _evaluate(run: Run, dataset, paths: Sequence[str], source: str, out: Path, mirror: bool) -> dict[str, Any]:
    from catdog.models.inference import numpy_function, run_over, served

    served_model = numpy_function(served(run.keras_model()))
    temperature = run.temperature

    def calibrated(images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = served_model(images)
        return {**outputs, UNCALIBRATED: outputs[PROBABILITIES],
                PROBABILITIES: calibration.scale(outputs[PROBABILITIES], temperature)}

    function = with_mirror(calibrated, averaged=(PROBABILITIES, UNCALIBRATED)) if mirror else calibrated
    mistakes: list[Mistake] = []
    outputs, true = run_over(function, dataset, keep=_mistakes_into(mistakes, run.class_names))
    probabilities = outputs.get(PROBABILITIES, np.zeros((0, len(run.class_names)), "float32"))
    metrics = _metrics(paths, true, probabilities, run.class_names)
    metrics["data"] = source
    metrics["tta"] = mirror
    before = calibration.reliability(outputs.get(UNCALIBRATED, probabilities), true)
    after = calibration.reliability(probabilities, true)
    metrics["calibration"] = {"temperature": temperature, "ece": after.ece, "ece_uncalibrated": before.ece}
    if run.detector is not None and FEATURES in outputs:
        detector = run.detector
        flagged = float(np.mean(detector.scores(outputs[FEATURES]) > 1))
        metrics["ood"] = {"method": detector.method, "rate": detector.rate, "flagged": flagged}
    files.write_json(out / folder.METRICS_FILE, metrics)
    plots.confusion_matrix(metrics["confusion_matrix"], run.class_names, out / folder.CONFUSION_MATRIX_PLOT)
    plots.misclassified(_explained(run, mistakes), out / folder.MISCLASSIFIED_PLOT)
    plots.reliability(before, after, temperature, out / folder.RELIABILITY_PLOT)
    return metrics


def _mistakes_into(mistakes: list[Mistake], class_names: Sequence[str], limit: int = MAX_MISTAKES_SHOWN
                   ) -> Callable:
    """A `run_over` callback that keeps the first `limit` wrongly classified images in `mistakes`."""

    def keep(images: np.ndarray, labels: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
        probabilities = outputs[PROBABILITIES]
        predicted = probabilities.argmax(axis=1)
        for i in np.flatnonzero(predicted != labels)[: limit - len(mistakes)]:
            mistakes.append(Mistake(images[i], class_names[labels[i]], class_names[predicted[i]],
                                    float(probabilities[i, predicted[i]])))

    return keep


def _explained(run: Run, mistakes: list[Mistake]) -> list[Mistake]:
    """`mistakes` with the Grad-CAM heatmaps of their predictions (catdog.explain)."""
    if not mistakes:
        return mistakes
    from catdog.explain.gradcam import GradCAM

    heatmaps = GradCAM(run.keras_model())(np.stack([m.image for m in mistakes])).heatmaps
    return [dataclasses.replace(m, heatmap=heatmap) for m, heatmap in zip(mistakes, heatmaps, strict=True)]


def labelled_images(data: DataArgument, class_names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The usable images of a folder of class folders (or a `catdog.data.Source`) and their
    indices in `class_names`."""
    source = as_source(data)
    found = scan(resolve_data_dir(source), labels=source.labels, find_duplicates=False)
    unknown = sorted(set(found.class_names) - set(class_names))
    if unknown:
        raise CatdogError(f"{found.root} has classes the model does not know: {', '.join(unknown)} "
                          f"(it knows {', '.join(class_names)})")
    for path, reason in found.skipped:
        logger.warning(f"skipped {path}: {reason}")
    index = {name: i for i, name in enumerate(class_names)}
    paths = [str(found.root / image.path) for image in found.images]
    return paths, np.array([index[image.class_name] for image in found.images], dtype="int32")


def score(model: Callable[[np.ndarray], np.ndarray], dataset, class_names: Sequence[str],
          max_mistakes: int = MAX_MISTAKES_SHOWN, paths: Sequence[str] | None = None
          ) -> tuple[dict[str, Any], list[Mistake]]:
    """Predict every batch of (images, labels) in `dataset` with `model` (a function from a
    pixel batch to probabilities) and score the predictions.

    Returns the metrics (see `metrics_from`) and up to `max_mistakes` wrongly classified
    images. With `paths`, the files `dataset` reads, in order, the metrics also list every
    misclassified file (see `misclassified_files`).
    """
    from catdog.models.inference import run_over

    mistakes: list[Mistake] = []
    outputs, true = run_over(lambda images: {PROBABILITIES: np.asarray(model(images))}, dataset,
                             keep=_mistakes_into(mistakes, class_names, max_mistakes))
    probabilities = outputs.get(PROBABILITIES, np.zeros((0, len(class_names)), "float32"))
    return _metrics(paths, true, probabilities, class_names), mistakes


def _metrics(paths: Sequence[str] | None, true: np.ndarray, probabilities: np.ndarray,
             class_names: Sequence[str]) -> dict[str, Any]:
    metrics = metrics_from(true, probabilities, class_names)
    if paths is not None:
        if len(paths) == len(true):
            metrics["misclassified"] = misclassified_files(paths, true, probabilities, class_names)
        else:  # the pipeline dropped a file that changed after the scan: paths no longer line up
            logger.warning(f"{len(paths) - len(true)} of {len(paths)} files could not be read; "
                           "misclassified files are not listed")
    return metrics
