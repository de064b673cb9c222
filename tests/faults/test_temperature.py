"""Faults: calibration that makes calibration worse (issue 24, item 10).

A temperature is kept only if, on validation images it was not fitted on, it lowers both
measures the report shows, the loss and the expected calibration error; and where a kept
temperature makes the test split's calibration worse, the report says so plainly.
"""

from __future__ import annotations

import json

import numpy as np

from catdog.trust.calibration import (
    calibrate,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    scale,
)


def bulk_and_confident_mistakes(n: int = 200, mistakes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes: `n` predictions at a confidence of 0.9 that are right 90 % of the time (calibrated),
    and `mistakes` wrong ones at 0.9999. A temperature above 1 cuts the loss of the mistakes, and moves
    the calibrated bulk away from its accuracy."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n + mistakes)
    right = np.ones(n + mistakes, bool)
    right[rng.permutation(n)[: n // 10]] = False
    right[n:] = False
    confidence = np.where(np.arange(n + mistakes) < n, 0.9, 0.9999)
    predicted = np.where(right, labels, 1 - labels)
    probabilities = np.zeros((n + mistakes, 2))
    probabilities[np.arange(n + mistakes), predicted] = confidence
    probabilities[np.arange(n + mistakes), 1 - predicted] = 1 - confidence
    return probabilities.astype("float32"), labels


def test_a_temperature_that_lowers_the_loss_but_raises_the_calibration_error_is_not_kept():
    probabilities, labels = bulk_and_confident_mistakes()
    fitted = fit_temperature(probabilities, labels)
    scaled = scale(probabilities, fitted)
    # What the arrays are built to show: the fitted temperature lowers the loss and raises the ECE.
    assert fitted > 1.3
    assert negative_log_likelihood(scaled, labels) < negative_log_likelihood(probabilities, labels)
    assert expected_calibration_error(scaled, labels) > 3 * expected_calibration_error(probabilities, labels)

    temperature, figures = calibrate(probabilities, labels)
    assert temperature == 1.0 and figures["kept"] is False
    assert figures["loss_held_out_calibrated"] < figures["loss_held_out"]
    assert figures["ece_held_out_calibrated"] > figures["ece_held_out"]


def test_the_report_says_plainly_when_the_temperature_made_the_test_calibration_worse(tmp_path):
    from catdog.report.trust import trust_blocks
    from catdog.runs import folder

    (tmp_path / folder.RELIABILITY_PLOT).write_bytes(b"")
    metrics = {"calibration": {"temperature": 0.93, "ece": 0.108, "ece_uncalibrated": 0.093}}
    (tmp_path / folder.METRICS_FILE).write_text(json.dumps(metrics))
    (tmp_path / folder.CALIBRATION_FILE).write_text(json.dumps({"temperature": 0.93, "validation": {
        "folds": 5, "loss_held_out": 0.40, "loss_held_out_calibrated": 0.38, "ece_held_out": 0.059,
        "ece_held_out_calibrated": 0.051, "kept": True}}))
    text = " ".join(block.text for block in trust_blocks("transfer", tmp_path) if hasattr(block, "text"))
    assert "On the test split the temperature made the probabilities worse calibrated" in text
    assert "10.8 %" in text and "9.3 %" in text
    assert "the calibration error from 5.9 % to 5.1 %: kept, as it lowered both." in text

    metrics["calibration"] = {"temperature": 1.0, "ece": 0.059, "ece_uncalibrated": 0.059}
    (tmp_path / folder.METRICS_FILE).write_text(json.dumps(metrics))
    text = " ".join(block.text for block in trust_blocks("transfer", tmp_path) if hasattr(block, "text"))
    assert "its probabilities are left as they are: a temperature fitted on validation did not make them" in text


def test_a_validation_split_the_model_gets_all_right_pins_no_temperature_down():
    """Every prediction right: the loss falls for ever as the temperature goes to 0, and the search ends at the
    edge of its range (0.05, kept by a transfer run on 300 real photos with seed 4, which made every test
    probability 1.0). No temperature is fitted then."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 44)
    confidence = rng.uniform(0.6, 0.99, 44)
    probabilities = np.stack([np.where(labels == 0, confidence, 1 - confidence),
                              np.where(labels == 1, confidence, 1 - confidence)], axis=1).astype("float32")
    assert negative_log_likelihood(scale(probabilities, 0.05), labels) < negative_log_likelihood(probabilities, labels)
    assert fit_temperature(probabilities, labels) == 1.0
    assert calibrate(probabilities, labels)[0] == 1.0
