"""Multi-label scores against scikit-learn's on fixed arrays, thresholds fitted for the best F1, and
each tag's temperature."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from catdog.metrics import average_precision, fit_thresholds, multilabel_metrics, precision_recall_curve
from catdog.trust import calibration


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    true = rng.random((80, 5)) < [0.5, 0.3, 0.2, 0.1, 0.6]
    true[0, 3] = True  # every tag has a positive
    scores = np.clip(true * 0.35 + rng.random(true.shape) * 0.65, 0, 1)
    scores[:10] = np.round(scores[:10], 1)  # ties
    return true, scores


def test_the_scores_are_scikit_learns(arrays):
    true, scores = arrays
    thresholds = np.array([0.5, 0.4, 0.6, 0.5, 0.45])
    m = multilabel_metrics(true, scores, list("abcde"), thresholds)
    predicted = scores >= thresholds
    assert m["mean_average_precision"] == pytest.approx(sk.average_precision_score(true, scores, average="macro"))
    assert m["micro_f1"] == pytest.approx(sk.f1_score(true, predicted, average="micro"))
    assert m["macro_f1"] == pytest.approx(sk.f1_score(true, predicted, average="macro"))
    assert m["subset_accuracy"] == m["accuracy"] == pytest.approx(sk.accuracy_score(true, predicted))
    assert m["hamming_loss"] == pytest.approx(sk.hamming_loss(true, predicted))
    assert m["loss"] == pytest.approx(np.mean([sk.log_loss(true[:, i], scores[:, i], labels=[0, 1])
                                                for i in range(5)]), rel=1e-4)
    for i, tag in enumerate("abcde"):
        row = m["per_tag"][tag]
        assert row["precision"] == pytest.approx(sk.precision_score(true[:, i], predicted[:, i], zero_division=0))
        assert row["recall"] == pytest.approx(sk.recall_score(true[:, i], predicted[:, i]))
        assert row["average_precision"] == pytest.approx(sk.average_precision_score(true[:, i], scores[:, i]))
        assert row["n"] == true[:, i].sum() and row["threshold"] == thresholds[i]
        assert sum(row["confusion"].values()) == len(true)


def test_the_precision_recall_curve_is_scikit_learns(arrays):
    true, scores = arrays
    precision, recall, cuts = precision_recall_curve(true[:, 0], scores[:, 0])
    expected_p, expected_r, expected_cuts = sk.precision_recall_curve(true[:, 0], scores[:, 0])
    # scikit-learn lists the thresholds rising and ends with the point (recall 0, precision 1).
    np.testing.assert_allclose(precision, expected_p[:-1][::-1])
    np.testing.assert_allclose(recall, expected_r[:-1][::-1])
    np.testing.assert_allclose(cuts, expected_cuts[::-1])
    assert average_precision(np.zeros(5), np.linspace(0, 1, 5)) == 0.0


def test_thresholds_maximise_each_tags_f1_and_keep_the_default_where_too_few_are_positive(arrays):
    true, scores = arrays
    thresholds = fit_thresholds(true, scores, min_positives=5)
    for i in range(true.shape[1]):
        best = max(sk.f1_score(true[:, i], scores[:, i] >= t) for t in np.unique(scores[:, i]))
        if true[:, i].sum() < 5:
            assert thresholds[i] == 0.5
        else:
            assert sk.f1_score(true[:, i], scores[:, i] >= thresholds[i]) == pytest.approx(best)
    # A threshold fitted on a tag with no negative would be meaningless: the default stays.
    assert fit_thresholds(np.ones((10, 1)), np.linspace(0, 1, 10)[:, None]).tolist() == [0.5]


def test_each_tag_has_its_own_temperature_as_the_sigmoid_of_its_scaled_logit():
    probabilities = np.array([[0.9, 0.2], [0.6, 0.99]])
    scaled = calibration.scale_tags(probabilities, [2.0, 0.5])
    logits = np.log(probabilities / (1 - probabilities)) / np.array([2.0, 0.5])
    np.testing.assert_allclose(scaled, 1 / (1 + np.exp(-logits)), rtol=1e-5)


def test_a_calibrated_tag_keeps_temperature_one_and_an_overconfident_one_is_softened():
    rng = np.random.default_rng(1)
    n = 400
    calibrated_p = rng.uniform(0.05, 0.95, n)
    calibrated_y = rng.random(n) < calibrated_p
    truth = rng.random(n) < 0.5
    overconfident_p = np.where(rng.random(n) < 0.8, np.where(truth, 0.99, 0.01), np.where(truth, 0.01, 0.99))
    temperatures, figures = calibration.calibrate_tags(np.stack([calibrated_p, overconfident_p], 1),
                                                       np.stack([calibrated_y, truth], 1).astype(int))
    assert temperatures[0] == pytest.approx(1.0, abs=0.3) and temperatures[1] > 2
    assert figures["loss_held_out_calibrated"] < figures["loss_held_out"]
