"""Evaluation: a run's model scored on its test split, or on a folder of labelled images.

    >>> metrics = catdog.evaluation.evaluate("runs/transfer-20250101-120000")
    >>> metrics["accuracy"], metrics["per_class"]["cats"]["recall"]

- `evaluate.py`: `evaluate` (scores and figures, written beside the run), `score` (any model
  function over any dataset).

The scores themselves, from labels and probabilities, are `catdog.metrics` (NumPy only, below
the data in the layers: the data summary's baseline is scored by them too).
"""

from catdog.evaluation.evaluate import evaluate, labelled_images, score
from catdog.metrics import metrics_from, misclassified_files, most_confused, multilabel_metrics

__all__ = ["evaluate", "labelled_images", "metrics_from", "misclassified_files", "most_confused", "multilabel_metrics",
           "score"]
