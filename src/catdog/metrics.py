"""Scores from true labels and predicted probabilities. NumPy only.

- One class per image (`metrics_from`): accuracy, loss, per-class precision, recall and F1, the
  confusion matrix, and for many classes balanced accuracy, macro averages, top-5 accuracy and
  the most confused pairs.
- Tags (`multilabel_metrics`, multi-label): mean average precision (the macro mean of each tag's
  average precision), micro and macro F1, subset accuracy (every tag of an image right), Hamming
  loss (the share of image-tag pairs wrong), the mean binary cross-entropy, and per tag its
  support, precision, recall, F1, average precision, threshold and confusion counts. The
  definitions are scikit-learn's (tests/test_metrics.py compares them on fixed arrays).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Top-k accuracy is reported with more than this many classes; and the most confused pairs, at most this many.
TOP_K = 5
MOST_CONFUSED = 10


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


def multilabel_metrics(true: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str],
                       thresholds: Sequence[float] | np.ndarray | None = None) -> dict[str, Any]:
    """The scores of tag `probabilities` (N, tags) against `true` (N, tags; 0 or 1), a tag given
    where its probability reaches its threshold (default 0.5). `accuracy` is the subset accuracy,
    so that tables comparing runs can rank multi-label runs too."""
    true = np.asarray(true, dtype=bool).reshape(-1, len(class_names))
    probabilities = np.asarray(probabilities, dtype="float64").reshape(-1, len(class_names))
    thresholds = np.full(len(class_names), 0.5) if thresholds is None else np.asarray(thresholds, dtype="float64")
    predicted = probabilities >= thresholds
    tp, fp = (predicted & true).sum(axis=0), (predicted & ~true).sum(axis=0)
    fn, tn = (~predicted & true).sum(axis=0), (~predicted & ~true).sum(axis=0)
    per_tag = {}
    for i, name in enumerate(class_names):
        precision = tp[i] / (tp[i] + fp[i]) if tp[i] + fp[i] else 0.0
        recall = tp[i] / (tp[i] + fn[i]) if tp[i] + fn[i] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_tag[name] = {"n": int(tp[i] + fn[i]), "precision": float(precision), "recall": float(recall),
                         "f1": float(f1), "average_precision": average_precision(true[:, i], probabilities[:, i]),
                         "threshold": float(thresholds[i]),
                         "confusion": {"tp": int(tp[i]), "fp": int(fp[i]), "fn": int(fn[i]), "tn": int(tn[i])}}
    n = len(true)
    denominator = 2 * tp.sum() + fp.sum() + fn.sum()
    with_positives = [row["average_precision"] for row in per_tag.values() if row["n"]]
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    subset = float(np.mean((predicted == true).all(axis=1))) if n else 0.0
    return {
        "accuracy": subset,
        "subset_accuracy": subset,
        "mean_average_precision": float(np.mean(with_positives)) if with_positives else 0.0,
        "micro_f1": float(2 * tp.sum() / denominator) if denominator else 0.0,
        "macro_f1": float(np.mean([row["f1"] for row in per_tag.values()])) if per_tag else 0.0,
        "hamming_loss": float(np.mean(predicted != true)) if n else 0.0,
        "loss": float(-np.mean(true * np.log(clipped) + ~true * np.log(1 - clipped))) if n else 0.0,
        "n": int(n),
        "label_cardinality": float(true.sum(axis=1).mean()) if n else 0.0,
        "per_tag": per_tag,
        "class_names": list(class_names),
    }


def average_precision(true: np.ndarray, scores: np.ndarray) -> float:
    """The area under the precision-recall curve as a step function: the mean of the precision at
    each distinct score, weighted by the recall it adds (scikit-learn's `average_precision_score`);
    0 for a tag without positives."""
    true = np.asarray(true, dtype=bool)
    positives = true.sum()
    if not positives:
        return 0.0
    order = np.argsort(-np.asarray(scores, dtype="float64"), kind="stable")
    scores, true = np.asarray(scores)[order], true[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # the last index of each distinct score
    hits = np.cumsum(true)[last]
    precision = hits / (last + 1)
    recall_gain = np.diff(np.r_[0, hits]) / positives
    return float(np.sum(precision * recall_gain))


def precision_recall_curve(true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at each distinct score taken as the threshold, from the highest down
    (scikit-learn's `precision_recall_curve`, less its closing point), and those thresholds."""
    true = np.asarray(true, dtype=bool)
    order = np.argsort(-np.asarray(scores, dtype="float64"), kind="stable")
    scores, true = np.asarray(scores, dtype="float64")[order], true[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    hits = np.cumsum(true)[last]
    return hits / (last + 1), hits / max(true.sum(), 1), scores[last]


def fit_thresholds(true: np.ndarray, probabilities: np.ndarray, min_positives: int = 5,
                   default: float = 0.5) -> np.ndarray:
    """Per tag, the threshold that maximises its F1 on (`true`, `probabilities`): a probability
    midway between two neighbouring scores, the one nearest `default` among equals. A tag with fewer
    than `min_positives` positives (or no negative) keeps `default`: a threshold fitted on two or
    three images would follow their noise."""
    true = np.asarray(true, dtype=bool)
    probabilities = np.asarray(probabilities, dtype="float64")
    thresholds = np.full(true.shape[1], default)
    for i in range(true.shape[1]):
        y, p = true[:, i], probabilities[:, i]
        if y.sum() < min_positives or y.all():
            continue
        values = np.unique(p)
        candidates = np.r_[(values[:-1] + values[1:]) / 2, default]
        predicted = p[:, None] >= candidates[None, :]
        tp = (predicted & y[:, None]).sum(axis=0)
        f1 = 2 * tp / (predicted.sum(axis=0) + y.sum())
        best = np.flatnonzero(f1 == f1.max())
        thresholds[i] = candidates[best[np.argmin(np.abs(candidates[best] - default))]]
    return thresholds
