"""Calibration: how far a model's confidence is from how often it is right, and temperature scaling.

A probability of 0.9 should be right nine times in ten. The expected calibration error
(ECE) measures the gap: predictions are grouped into equal-width bins of confidence (the
probability of the predicted class), and the ECE is the mean over predictions of
|accuracy - confidence| of their bin (Guo et al., "On Calibration of Modern Neural
Networks", 2017, with their 15 bins).

Temperature scaling (same paper) divides the logits by one number T fitted on held-out
data: T > 1 softens over-confident probabilities, T < 1 sharpens under-confident ones,
and no prediction changes class. `calibrate` keeps a fitted T only if, on validation images
it was not fitted on (k-fold), it lowers both measures a report shows, the cross-entropy and
the ECE, else T = 1: a model that is calibrated already is left alone rather than moved by the
noise of a few images, and a temperature that trades a lower loss for a worse ECE (a few
confident mistakes can pull T away from what the bulk of the predictions needs) is not kept.

Models end in a softmax, so the logits are recovered as log-probabilities (equal to the
logits up to a constant per image, which the softmax ignores):
`scale(p, T) = softmax(log(p) / T)`. `catdog.models.inference.TemperatureScaling`
is the same formula as a Keras layer, for the graphs that prediction, serving and exports run.

A multi-label model's tag is a two-class problem (the tag, or not): its sigmoid probability p
is the softmax of the two logits (0, logit(p)), so each tag gets its own temperature by the same
rule (`calibrate_tags`), and sigmoid(logit(p) / T) is `scale` of the pair (1 - p, p). The
calibration error of tags is that of every image-tag pair taken as one such prediction
(`as_pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from catdog import defaults

# Equal-width bins of confidence for the expected calibration error (Guo et al.'s 15), and the
# folds of the validation split that check a fitted temperature (see `calibrate`).
ECE_BINS = 15
CALIBRATION_FOLDS = 5

# The smallest probability taken to the log: float32's smallest normal number.
TINY = float(np.finfo("float32").tiny)
# Inverse temperatures searched: T from 1/20 to 20.
_BETA_RANGE = (0.05, 20.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits, row by row, as float32."""
    logits = np.asarray(logits, dtype="float64")
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype("float32")


def scale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature-scaled probabilities: softmax(log(p) / T), row by row."""
    return softmax(np.log(np.maximum(np.asarray(probabilities, dtype="float64"), TINY)) / temperature)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of the true classes."""
    true = np.asarray(probabilities)[np.arange(len(labels)), labels]
    return float(-np.log(np.maximum(true, TINY)).mean()) + 0.0 if len(labels) else 0.0  # + 0.0: never -0.0


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray, tolerance: float = 1e-4) -> float:
    """The temperature that minimises the cross-entropy of `probabilities` (N, classes) on `labels`.

    The cross-entropy is convex in the inverse temperature, so a golden-section search
    over it finds the minimum. 1.0 when there is nothing to fit on, when no temperature
    lowers the cross-entropy (every probability already 0 or 1), or when the search ends at
    the edge of its range: the cross-entropy then falls for ever towards a temperature of 0
    (every prediction right, where sharper always looks better) or of infinity, and the
    images do not pin one down.
    """
    labels = np.asarray(labels)
    if len(labels) == 0:
        return 1.0
    logits = np.log(np.maximum(np.asarray(probabilities, dtype="float64"), TINY))
    rows = np.arange(len(labels))

    def loss(beta: float) -> float:
        scaled = beta * logits
        top = scaled.max(axis=1)
        log_sum = top + np.log(np.exp(scaled - top[:, None]).sum(axis=1))
        return float((log_sum - scaled[rows, labels]).mean())

    low, high = _BETA_RANGE
    ratio = (np.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    while high - low > tolerance:
        if loss_a <= loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    best = (low + high) / 2
    at_an_edge = min(best - _BETA_RANGE[0], _BETA_RANGE[1] - best) <= 2 * tolerance
    return float(1 / best) if loss(best) < loss(1.0) and not at_an_edge else 1.0


def calibrate(probabilities: np.ndarray, labels: np.ndarray, folds: int = CALIBRATION_FOLDS,
              seed: int = defaults.SEED) -> tuple[float, dict[str, float | int | bool]]:
    """The temperature to keep for a model whose validation probabilities are `probabilities`,
    and the cross-validated figures that decided it.

    Each of `folds` folds is scaled by a temperature fitted on the others; if, over all the
    images so scaled, both the cross-entropy and the expected calibration error are lower than
    at T = 1, the temperature fitted on all the images is kept (`kept`), else 1 (also with
    fewer images than folds, when there are no figures).
    """
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    if len(labels) < folds:
        return 1.0, {}
    fold = np.random.default_rng(seed).permutation(len(labels)) % folds
    held_out = np.empty(probabilities.shape, dtype="float32")
    for k in range(folds):
        temperature = fit_temperature(probabilities[fold != k], labels[fold != k])
        held_out[fold == k] = scale(probabilities[fold == k], temperature)
    figures = {
        "folds": folds,
        "loss_held_out": negative_log_likelihood(probabilities, labels),
        "loss_held_out_calibrated": negative_log_likelihood(held_out, labels),
        "ece_held_out": expected_calibration_error(probabilities, labels),
        "ece_held_out_calibrated": expected_calibration_error(held_out, labels),
    }
    figures["kept"] = bool(figures["loss_held_out_calibrated"] < figures["loss_held_out"]
                           and figures["ece_held_out_calibrated"] < figures["ece_held_out"])
    return (fit_temperature(probabilities, labels) if figures["kept"] else 1.0), figures


@dataclass(frozen=True)
class Reliability:
    """Predictions grouped by confidence into `bins` equal-width bins: per bin, how many
    fell in it, their mean confidence and their accuracy (NaN for an empty bin)."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        """The expected calibration error: the count-weighted mean |accuracy - confidence|."""
        filled = self.counts > 0
        total = self.counts.sum()
        if not total:
            return 0.0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float((gaps * self.counts[filled]).sum() / total)


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Bin the predictions of `probabilities` (N, classes) by confidence, against `labels`."""
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels)
    confidence = probabilities.max(axis=1) if len(probabilities) else np.zeros(0)
    correct = probabilities.argmax(axis=1) == labels if len(probabilities) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are (lower, upper]: a confidence of exactly 1 belongs to the last one.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / counts
        accuracy = np.bincount(index, weights=correct.astype(float), minlength=bins) / counts
    return Reliability(edges, counts, mean_confidence, accuracy)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE with `bins` equal-width bins of confidence (see `Reliability.ece`)."""
    return reliability(probabilities, labels, bins).ece


def as_pairs(probabilities: np.ndarray, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Tag probabilities (N, tags) as two-class probabilities, one row per image-tag pair
    (1 - p, p), and their labels (N, tags; 0 or 1) as class indices of those rows."""
    p = np.asarray(probabilities, dtype="float64").reshape(-1)
    pairs = np.stack([1 - p, p], axis=1)
    return pairs, None if labels is None else np.asarray(labels).reshape(-1).astype("int64")


def scale_tags(probabilities: np.ndarray, temperatures) -> np.ndarray:
    """Tag probabilities (N, tags) each scaled by its tag's temperature: sigmoid(logit(p) / T)."""
    probabilities = np.asarray(probabilities, dtype="float64")
    columns = [scale(as_pairs(probabilities[:, i])[0], t)[:, 1] for i, t in enumerate(temperatures)]
    return np.stack(columns, axis=1).astype("float32") if columns else probabilities.astype("float32")


def calibrate_tags(probabilities: np.ndarray, labels: np.ndarray, folds: int = CALIBRATION_FOLDS,
                   seed: int = defaults.SEED) -> tuple[list[float], dict[str, float]]:
    """Each tag's temperature, kept by `calibrate`'s rule on that tag's two-class probabilities,
    and the held-out cross-entropies summed over the tags."""
    temperatures, unscaled, scaled = [], 0.0, 0.0
    labels = np.asarray(labels)
    for i in range(labels.shape[1]):
        pairs, classes = as_pairs(probabilities[:, i], labels[:, i])
        temperature, figures = calibrate(pairs, classes, folds, seed)
        temperatures.append(float(temperature))
        unscaled += figures.get("loss_held_out", 0.0)
        scaled += figures.get("loss_held_out_calibrated", 0.0)
    return temperatures, {"folds": folds, "loss_held_out": unscaled, "loss_held_out_calibrated": scaled}
