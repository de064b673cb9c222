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
from catdog.data.labels import MULTILABEL
from catdog.data.pack import named_read_errors
from catdog.data.scan import scan
from catdog.data.splits import TEST
from catdog.errors import CatdogError
from catdog.metrics import metrics_from, misclassified_files, multilabel_metrics
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

        paths, labels = labelled_images(data, run.class_names, run.multilabel)
        dataset = make_dataset(paths, labels, run.image_size, batch_size, shuffle=False, cache=False)
        root = resolve_data_dir(data)
        return _evaluate(run, dataset, paths, str(root), run.path / f"evaluation-{root.resolve().name}", tta)


def _evaluate(run: Run, dataset, paths: Sequence[str], source: str, out: Path, mirror: bool) -> dict[str, Any]:
    from catdog.models.inference import numpy_function, run_over

    served_model = numpy_function(run.served_model(calibrated=False))

    def calibrated(images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = served_model(images)
        return {**outputs, UNCALIBRATED: outputs[PROBABILITIES], PROBABILITIES: run.calibrated(outputs[PROBABILITIES])}

    function = with_mirror(calibrated, averaged=(PROBABILITIES, UNCALIBRATED)) if mirror else calibrated
    gallery = _TagGallery(run.class_names, run.thresholds) if run.multilabel else _Gallery(run.class_names)
    outputs, true = run_over(function, dataset, keep=gallery.keep, what=f"scoring the {source}", total=len(paths))
    probabilities = outputs.get(PROBABILITIES, np.zeros((0, len(run.class_names)), "float32"))
    uncalibrated = outputs.get(UNCALIBRATED, probabilities)
    if run.multilabel:
        metrics = multilabel_metrics(true, probabilities, run.class_names, run.thresholds)
        if len(paths) == len(true):
            metrics["misclassified"] = _wrong_tag_sets(paths, true, probabilities, run)
        before = calibration.reliability(*calibration.as_pairs(uncalibrated, true))
        after = calibration.reliability(*calibration.as_pairs(probabilities, true))
    else:
        metrics = _metrics(paths, true, probabilities, run.class_names)
        before, after = calibration.reliability(uncalibrated, true), calibration.reliability(probabilities, true)
    metrics["data"] = source
    metrics["tta"] = mirror
    metrics["calibration"] = {"temperature": run.temperature, "ece": after.ece, "ece_uncalibrated": before.ece}
    if run.detector is not None and FEATURES in outputs:
        detector = run.detector
        flagged = float(np.mean(detector.scores(outputs[FEATURES]) > 1))
        metrics["ood"] = {"method": detector.method, "rate": detector.rate, "flagged": flagged}
    files.write_json(out / folder.METRICS_FILE, metrics)
    if run.multilabel:
        plots.tag_confusion(metrics["per_tag"], out / folder.CONFUSION_MATRIX_PLOT)
        plots.pr_curves(true, probabilities, run.class_names, run.thresholds, out / folder.PR_CURVES_PLOT)
        plots.tag_examples(gallery.examples(), out / folder.TAG_EXAMPLES_PLOT)
    else:
        plots.confusion_matrix(metrics["confusion_matrix"], run.class_names, out / folder.CONFUSION_MATRIX_PLOT)
    plots.misclassified(_explained(run, gallery.mistakes), out / folder.MISCLASSIFIED_PLOT)
    plots.reliability(before, after, run.temperature, out / folder.RELIABILITY_PLOT)
    return metrics


class _Gallery:
    """A `run_over` callback (`keep`) that keeps the first `limit` wrongly classified images."""

    def __init__(self, class_names: Sequence[str], limit: int = MAX_MISTAKES_SHOWN):
        self.class_names, self.limit = list(class_names), limit
        self.mistakes: list[Mistake] = []

    def keep(self, images: np.ndarray, labels: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
        probabilities = outputs[PROBABILITIES]
        predicted = probabilities.argmax(axis=1)
        for i in np.flatnonzero(predicted != labels)[: self.limit - len(self.mistakes)]:
            self.mistakes.append(Mistake(images[i], self.class_names[labels[i]], self.class_names[predicted[i]],
                                         float(probabilities[i, predicted[i]]), explained=int(predicted[i])))


class _TagGallery(_Gallery):
    """For a multi-label run: the first images whose tags were not all right (each explained by
    its most wrong tag), and per tag a few of its false positives and false negatives."""

    PER_TAG = 3

    def __init__(self, class_names: Sequence[str], thresholds: Sequence[float], limit: int = MAX_MISTAKES_SHOWN):
        super().__init__(class_names, limit)
        self.thresholds = np.asarray(thresholds)
        self.wrong = {name: ([], []) for name in self.class_names}

    def keep(self, images: np.ndarray, labels: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
        probabilities = outputs[PROBABILITIES]
        given, true = probabilities >= self.thresholds, labels.astype(bool)
        for i in np.flatnonzero((given != true).any(axis=1))[: self.limit - len(self.mistakes)]:
            worst = int(np.argmax(np.abs(probabilities[i] - true[i])))
            self.mistakes.append(Mistake(images[i], _tags(true[i], self.class_names),
                                         _tags(given[i], self.class_names), None, explained=worst))
        for t, name in enumerate(self.class_names):
            false_positives, false_negatives = self.wrong[name]
            false_positives += [images[i] for i in np.flatnonzero(given[:, t] & ~true[:, t])][
                : self.PER_TAG - len(false_positives)]
            false_negatives += [images[i] for i in np.flatnonzero(~given[:, t] & true[:, t])][
                : self.PER_TAG - len(false_negatives)]

    def examples(self) -> list[plots.TagExamples]:
        return [plots.TagExamples(name, *self.wrong[name]) for name in self.class_names if any(self.wrong[name])]


def _tags(present: np.ndarray, class_names: Sequence[str]) -> str:
    return " ".join(name for name, on in zip(class_names, present, strict=True) if on) or "no tag"


def _wrong_tag_sets(paths: Sequence[str], true: np.ndarray, probabilities: np.ndarray, run: Run) -> list[dict]:
    """`{"path", "true", "predicted", "missing", "extra"}` for each file whose tags were not all
    right, the most wrong first."""
    given, true = probabilities >= np.asarray(run.thresholds), true.astype(bool)
    rows = []
    for i in np.flatnonzero((given != true).any(axis=1)):
        names = np.asarray(run.class_names)
        rows.append({"path": str(paths[i]), "true": names[true[i]].tolist(), "predicted": names[given[i]].tolist(),
                     "missing": names[true[i] & ~given[i]].tolist(), "extra": names[given[i] & ~true[i]].tolist(),
                     "error": float(np.abs(probabilities[i] - true[i]).max())})
    return sorted(rows, key=lambda row: -row["error"])


def _explained(run: Run, mistakes: list[Mistake]) -> list[Mistake]:
    """`mistakes` with the Grad-CAM heatmaps of their predictions (catdog.explain)."""
    if not mistakes:
        return mistakes
    from catdog.explain.gradcam import GradCAM

    gradcam = GradCAM(run.keras_model(), multilabel=run.multilabel)
    heatmaps = gradcam(np.stack([m.image for m in mistakes]), np.array([m.explained for m in mistakes])).heatmaps
    return [dataclasses.replace(m, heatmap=heatmap) for m, heatmap in zip(mistakes, heatmaps, strict=True)]


def labelled_images(data: DataArgument, class_names: Sequence[str], multilabel: bool = False
                    ) -> tuple[list[str], np.ndarray]:
    """The usable images of a folder of class folders (or a `catdog.data.Source`) and their labels
    for a model of `class_names`: class indices, or with `multilabel` rows of 0s and 1s, a column
    per tag (an image of a class folder has that one tag)."""
    source = as_source(data)
    found = scan(resolve_data_dir(source), labels=source.labels, find_duplicates=False)
    unknown = sorted({name for image in found.images for name in image.labels} - set(class_names))
    if unknown:
        raise CatdogError(f"{found.root} has classes the model does not know: {', '.join(unknown)} "
                          f"(it knows {', '.join(class_names)})")
    for path, reason in found.skipped:
        logger.warning(f"skipped {path}: {reason}")
    paths = [str(found.root / image.path) for image in found.images]
    index = {name: i for i, name in enumerate(class_names)}
    if multilabel:
        labels = np.zeros((len(found.images), len(class_names)), "float32")
        for i, image in enumerate(found.images):
            labels[i, [index[name] for name in image.labels]] = 1.0
        return paths, labels
    if found.task == MULTILABEL:
        raise CatdogError(f"{found.root}'s labels give images several tags, but the model gives each image one class")
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

    gallery = _Gallery(class_names, max_mistakes)
    outputs, true = run_over(lambda images: {PROBABILITIES: np.asarray(model(images))}, dataset, keep=gallery.keep)
    probabilities = outputs.get(PROBABILITIES, np.zeros((0, len(class_names)), "float32"))
    return _metrics(paths, true, probabilities, class_names), gallery.mistakes


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
