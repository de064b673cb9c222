"""Evaluation: a run's model scored on its test split, or on a folder of labelled images.

    >>> metrics = catdog.evaluate.evaluate("runs/transfer-20250101-120000")
    >>> metrics["accuracy"], metrics["per_class"]["cats"]["recall"]

The test split is the one the run's `splits.csv` recorded, never seen in training or model
selection. Results are written with the figures: to the run folder for the test split, to
`evaluation-<folder name>/` inside it for a `data` folder, so the run's own test score stays.

The probabilities scored are the calibrated ones that prediction gives (the run's
temperature, catdog.trust.fitting); `metrics["calibration"]` has the expected calibration
error before and after, `reliability.png` draws both, and `metrics["ood"]` the share of
images the run's out-of-distribution detector flags. `tta` averages each image's
probabilities with its mirror image's (catdog.trust.tta).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from catdog import config, files, plots, runs
from catdog.data.scan import scan
from catdog.data.splits import TEST
from catdog.errors import CatdogError
from catdog.plots import Mistake
from catdog.trust import FEATURES, PROBABILITIES, calibration, fitting
from catdog.trust.tta import with_mirror

logger = logging.getLogger(__name__)

MAX_MISTAKES_SHOWN = 16
# Top-k accuracy is reported with more than this many classes; and the most confused pairs, at most this many.
TOP_K = 5
MOST_CONFUSED = 10


def evaluate(run: str | os.PathLike | runs.Run, data=None, batch_size: int = config.BATCH_SIZE,
             tta: bool = False) -> dict[str, Any]:
    """Score the run's model on its test split, or on every image of `data` (a folder of class
    folders whose names the model knows, or a `catdog.data.Source` with labels), and write
    `metrics.json`, `confusion_matrix.png`, `misclassified.png` and `reliability.png`. Returns
    the metrics (see `score`, and the module's docstring for "calibration", "ood" and `tta`)."""
    run = run if isinstance(run, runs.Run) else runs.open_run(run)
    with runs.locked(run.path):
        return _evaluate(run, data, batch_size, tta)


class _Recorder:
    """A run's served model as `predict_all` calls it: calibrated probabilities out, keeping
    the uncalibrated probabilities and the features of every batch."""

    UNCALIBRATED = "uncalibrated"

    def __init__(self, model, temperature: float, mirror: bool):
        from catdog.models.inference import numpy_function, served

        outputs = numpy_function(served(model))
        self.uncalibrated: list[np.ndarray] = []
        self.features: list[np.ndarray] = []

        def both(images):
            out = outputs(images)
            return {**out, self.UNCALIBRATED: out[PROBABILITIES],
                    PROBABILITIES: calibration.scale(out[PROBABILITIES], temperature)}

        self.function = with_mirror(both, averaged=(PROBABILITIES, self.UNCALIBRATED)) if mirror else both

    def __call__(self, images: np.ndarray) -> np.ndarray:
        out = self.function(images)
        self.uncalibrated.append(out[self.UNCALIBRATED])
        self.features.append(out[FEATURES])
        return out[PROBABILITIES]


def _evaluate(run: runs.Run, data, batch_size: int, mirror: bool) -> dict[str, Any]:
    from catdog.data import load, resolve_data_dir
    from catdog.data.pipeline import make_dataset

    trust = fitting.read(run.path)
    keras_model = run.load_model()
    model = _Recorder(keras_model, trust.temperature, mirror)
    if data is None:
        manifest = run.manifest()
        paths = manifest.files(TEST)[0]
        if not paths:
            raise CatdogError(f"run {run.path} has no test split to evaluate on")
        dataset = load(run.config.data, image_size=run.image_size, batch_size=batch_size, manifest=manifest).test
        source, folder = "test split", run.path
    else:
        paths, labels = labelled_images(data, run.class_names)
        dataset = make_dataset(paths, labels, run.image_size, batch_size, shuffle=False, cache=False)
        root = resolve_data_dir(data)
        source, folder = str(root), run.path / f"evaluation-{root.resolve().name}"
    true, probabilities, mistakes = predict_all(model, dataset, run.class_names)
    mistakes = _explained(keras_model, mistakes)
    metrics = _metrics(paths, true, probabilities, run.class_names)
    metrics["data"] = source
    metrics["tta"] = mirror
    uncalibrated = np.concatenate(model.uncalibrated) if model.uncalibrated else probabilities
    before = calibration.reliability(uncalibrated, true)
    after = calibration.reliability(probabilities, true)
    metrics["calibration"] = {"temperature": trust.temperature, "ece": after.ece, "ece_uncalibrated": before.ece}
    if trust.ood is not None and model.features:
        scores = trust.ood.scores(np.concatenate(model.features))
        metrics["ood"] = {"method": trust.ood.method, "rate": trust.ood.rate, "flagged": float(np.mean(scores > 1))}
    files.write_json(folder / runs.METRICS_FILE, metrics)
    plots.confusion_matrix(metrics["confusion_matrix"], run.class_names, folder / runs.CONFUSION_MATRIX_PLOT)
    plots.misclassified(mistakes, folder / runs.MISCLASSIFIED_PLOT)
    plots.reliability(before, after, trust.temperature, folder / runs.RELIABILITY_PLOT)
    return metrics


def _explained(model, mistakes: list[Mistake]) -> list[Mistake]:
    """`mistakes` with the Grad-CAM heatmaps of their predictions (catdog.explain)."""
    if not mistakes:
        return mistakes
    from catdog.explain.gradcam import GradCAM

    heatmaps = GradCAM(model)(np.stack([m.image for m in mistakes])).heatmaps
    return [dataclasses.replace(m, heatmap=heatmap) for m, heatmap in zip(mistakes, heatmaps, strict=True)]


def labelled_images(data, class_names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The usable images of a folder of class folders (or a `catdog.data.Source`) and their
    indices in `class_names`."""
    from catdog.data import as_source, resolve_data_dir

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


def score(model, dataset, class_names: Sequence[str], max_mistakes: int = MAX_MISTAKES_SHOWN,
          paths: Sequence[str] | None = None) -> tuple[dict[str, Any], list[Mistake]]:
    """Predict every batch of (images, labels) in `dataset` with `model` (a function from a
    pixel batch to probabilities) and score the predictions.

    Returns the metrics, `{"accuracy", "loss", "n", "per_class": {name: {"precision",
    "recall", "f1", "n"}}, "confusion_matrix"}` (rows: true class, columns: predicted), and
    up to `max_mistakes` wrongly classified images. With `paths`, the files `dataset` reads,
    in order, the metrics also list every misclassified file (see `misclassified_files`).
    """
    true, probabilities, mistakes = predict_all(model, dataset, class_names, max_mistakes)
    return _metrics(paths, true, probabilities, class_names), mistakes


def predict_all(model, dataset, class_names: Sequence[str], max_mistakes: int = MAX_MISTAKES_SHOWN
                ) -> tuple[np.ndarray, np.ndarray, list[Mistake]]:
    """The true classes and `model`'s probabilities for every batch of (images, labels) in
    `dataset`, and up to `max_mistakes` wrongly classified images."""
    true_parts, prob_parts, mistakes = [], [], []
    for images, labels in dataset.as_numpy_iterator():
        probabilities = np.asarray(model(images))
        true_parts.append(labels)
        prob_parts.append(probabilities)
        predicted = probabilities.argmax(axis=1)
        for i in np.flatnonzero(predicted != labels)[: max_mistakes - len(mistakes)]:
            mistakes.append(Mistake(images[i], class_names[labels[i]], class_names[predicted[i]],
                                    float(probabilities[i, predicted[i]])))
    true = np.concatenate(true_parts) if true_parts else np.zeros(0, "int32")
    probabilities = np.concatenate(prob_parts) if prob_parts else np.zeros((0, len(class_names)), "float32")
    return true, probabilities, mistakes


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


def misclassified_files(paths: Sequence[str], true: np.ndarray, probabilities: np.ndarray,
                        class_names: Sequence[str]) -> list[dict[str, Any]]:
    """`{"path", "true", "predicted", "probability"}` for each wrongly classified file, the
    most confident mistakes first."""
    predicted = probabilities.argmax(axis=1)
    wrong = [{"path": str(paths[i]), "true": class_names[true[i]], "predicted": class_names[predicted[i]],
              "probability": float(probabilities[i, predicted[i]])}
             for i in np.flatnonzero(predicted != true)]
    return sorted(wrong, key=lambda mistake: -mistake["probability"])


def metrics_from(true: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, mean cross-entropy, per-class precision/recall/F1 and the confusion matrix, and
    for many classes: balanced accuracy (the mean recall of the classes present), macro-averaged
    precision, recall and F1 (over the classes present or predicted, as scikit-learn does),
    top-5 accuracy (with more than 5 classes) and the most confused pairs."""
    predicted = probabilities.argmax(axis=1)
    n_classes = len(class_names)
    matrix = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(matrix, (true, predicted), 1)
    true_p = probabilities[np.arange(len(true)), true]
    per_class = {}
    for i, name in enumerate(class_names):
        hits, support, claimed = matrix[i, i], matrix[i].sum(), matrix[:, i].sum()
        precision = hits / claimed if claimed else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1), "n": int(support)}
    present = matrix.sum(axis=1) > 0
    seen = present | (matrix.sum(axis=0) > 0)
    rows = list(per_class.values())

    def macro(key: str, which: np.ndarray) -> float:
        return float(np.mean([row[key] for row, keep in zip(rows, which, strict=True) if keep])) if which.any() else 0.0

    metrics = {
        "accuracy": float(np.trace(matrix) / len(true)) if len(true) else 0.0,
        "loss": float(-np.log(np.clip(true_p, 1e-7, 1.0)).mean()) if len(true) else 0.0,
        "n": int(len(true)),
        "balanced_accuracy": macro("recall", present),
        "macro_precision": macro("precision", seen),
        "macro_recall": macro("recall", seen),
        "macro_f1": macro("f1", seen),
    }
    if n_classes > TOP_K:
        top = np.argpartition(-probabilities, TOP_K - 1, axis=1)[:, :TOP_K] if len(true) else np.zeros((0, TOP_K))
        metrics[f"top_{TOP_K}_accuracy"] = float((top == true[:, None]).any(axis=1).mean()) if len(true) else 0.0
    return {
        **metrics,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "most_confused": most_confused(matrix, class_names),
        "class_names": list(class_names),
    }


def most_confused(matrix: np.ndarray, class_names: Sequence[str], limit: int = MOST_CONFUSED) -> list[dict[str, Any]]:
    """`{"true", "predicted", "count"}` for the largest off-diagonal counts of a confusion matrix."""
    off = np.array(matrix, dtype=int)
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:limit]
    return [{"true": class_names[i], "predicted": class_names[j], "count": int(off[i, j])}
            for i, j in zip(*np.unravel_index(order, off.shape), strict=True) if off[i, j]]
