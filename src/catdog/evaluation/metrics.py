"""Scores from true classes and predicted probabilities: accuracy, loss, per-class precision,
recall and F1, the confusion matrix, and for many classes balanced accuracy, macro averages,
top-5 accuracy and the most confused pairs. NumPy only."""

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
