"""Calibration: the expected calibration error, reliability bins and temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest

from catdog.models.inference import TemperatureScaling
from catdog.trust.calibration import (
    calibrate,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability,
    scale,
)


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_ece_is_the_count_weighted_gap_between_accuracy_and_confidence_per_bin():
    # Four predictions at 0.9 confidence (three right) and two at 0.6 (both wrong).
    probabilities = np.array([[0.9, 0.1]] * 4 + [[0.4, 0.6]] * 2)
    labels = np.array([0, 0, 0, 1, 0, 0])
    bins = reliability(probabilities, labels, bins=10)

    assert bins.counts.tolist() == [0, 0, 0, 0, 0, 2, 0, 0, 4, 0]
    assert bins.accuracy[8] == pytest.approx(0.75) and bins.confidence[8] == pytest.approx(0.9)
    assert bins.accuracy[5] == 0.0 and bins.confidence[5] == pytest.approx(0.6)
    expected = (4 * abs(0.75 - 0.9) + 2 * abs(0.0 - 0.6)) / 6
    assert bins.ece == pytest.approx(expected)
    assert expected_calibration_error(probabilities, labels, bins=10) == pytest.approx(expected)


def test_a_confidence_of_one_falls_in_the_last_bin_and_15_bins_are_the_default():
    bins = reliability(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([0, 1]))
    assert len(bins.counts) == 15
    assert bins.counts[-1] == 1 and bins.counts[7] == 1  # 0.5 lies in (7/15, 8/15]


def test_perfectly_calibrated_predictions_have_an_ece_near_zero():
    rng = np.random.default_rng(0)
    probabilities = softmax(rng.normal(0, 2, (50_000, 3)))
    labels = np.array([rng.choice(3, p=p) for p in probabilities])
    assert expected_calibration_error(probabilities, labels) < 0.01


def test_temperature_scaling_recovers_the_temperature_that_made_predictions_overconfident():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (20_000, 4))
    labels = np.array([rng.choice(4, p=p) for p in softmax(logits / 2.0)])  # the truth is twice as soft
    overconfident = softmax(logits)

    temperature = fit_temperature(overconfident, labels)

    assert temperature == pytest.approx(2.0, rel=0.05)
    calibrated = scale(overconfident, temperature)
    assert negative_log_likelihood(calibrated, labels) < negative_log_likelihood(overconfident, labels)
    assert expected_calibration_error(calibrated, labels) < expected_calibration_error(overconfident, labels) / 3
    np.testing.assert_array_equal(calibrated.argmax(axis=1), overconfident.argmax(axis=1))


def test_scaling_by_one_changes_nothing_and_saturated_predictions_keep_temperature_one():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.05, 0.9, 0.05]], dtype="float32")
    np.testing.assert_allclose(scale(probabilities, 1.0), probabilities, atol=1e-7)
    assert fit_temperature(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])) == 1.0
    assert fit_temperature(np.zeros((0, 2)), np.zeros(0, int)) == 1.0


def test_the_keras_layer_computes_the_same_as_scale():
    probabilities = softmax(np.random.default_rng(2).normal(0, 4, (64, 5))).astype("float32")
    probabilities[0] = [1.0, 0.0, 0.0, 0.0, 0.0]  # a probability that underflowed to 0
    for temperature in (0.5, 1.0, 2.5):
        layer = np.asarray(TemperatureScaling(temperature)(probabilities))
        np.testing.assert_allclose(layer, scale(probabilities, temperature), atol=1e-6)


def test_a_temperature_is_kept_only_if_it_helps_on_validation_images_it_was_not_fitted_on():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (2000, 2))
    overconfident = softmax(logits)
    labels = np.array([rng.choice(2, p=p) for p in softmax(logits / 2.0)])
    temperature, figures = calibrate(overconfident, labels)
    assert temperature == pytest.approx(fit_temperature(overconfident, labels)) and temperature > 1.5
    assert figures["folds"] == 5 and figures["loss_held_out_calibrated"] < figures["loss_held_out"]
    assert figures["ece_held_out_calibrated"] < figures["ece_held_out"] and figures["kept"]

    # Probabilities calibrated already: a fitted temperature is mostly noise, and mostly not kept.
    kept = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        probabilities = softmax(rng.normal(0, 3, (200, 2)))
        calibrated_labels = np.array([rng.choice(2, p=p) for p in probabilities])
        temperature, figures = calibrate(probabilities, calibrated_labels, seed=seed)
        helps = (figures["loss_held_out_calibrated"] < figures["loss_held_out"]
                 and figures["ece_held_out_calibrated"] < figures["ece_held_out"])
        assert figures["kept"] == helps
        assert temperature == (pytest.approx(fit_temperature(probabilities, calibrated_labels)) if helps else 1.0)
        kept.append(helps)
    assert sum(kept) < 10
    assert calibrate(overconfident[:3], labels[:3]) == (1.0, {})
