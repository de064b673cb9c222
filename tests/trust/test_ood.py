"""Out-of-distribution detection on features: both methods, the threshold, and storage."""

from __future__ import annotations

import numpy as np
import pytest

from catdog.errors import ParameterError
from catdog.trust import ood


def clusters(rng, n: int, dimensions: int = 64, spread: float = 1.0):
    """Two classes of features around two centres, like a classifier's penultimate layer."""
    centres = np.zeros((2, dimensions))
    centres[0, :8], centres[1, 8:16] = 4.0, 4.0
    labels = rng.integers(0, 2, n)
    return np.abs(centres[labels] + rng.normal(0, spread, (n, dimensions))).astype("float32"), labels


@pytest.mark.parametrize("method", sorted(ood.METHODS))
def test_both_methods_flag_unlike_features_and_few_like_ones(method):
    rng = np.random.default_rng(0)
    train, train_labels = clusters(rng, 600)
    validation, _ = clusters(rng, 400)
    test, _ = clusters(rng, 2000)
    unlike = np.abs(rng.normal(0, 1.0, (300, 64))).astype("float32")
    unlike[:, 30:40] += 4.0  # features the training images never have

    detector = ood.fit(train, train_labels, validation, method=method, rate=0.05)

    assert detector.method == method and detector.rate == 0.05 and detector.dimensions == 64
    assert np.mean(detector.scores(validation) > 1) <= 0.05
    assert 0.02 <= np.mean(detector.scores(test) > 1) <= 0.09  # about the rate, on new images like the training ones
    assert np.mean(detector.scores(unlike) > 1) >= 0.95


def test_the_threshold_is_the_split_conformal_quantile():
    distances = np.arange(1, 101, dtype=float)[::-1]
    assert ood.threshold_for(distances, 0.05) == 96.0  # ceil(101 * 0.95) = 96th smallest
    assert ood.threshold_for(distances, 0.001) == 100.0  # too few to spare one: the largest
    assert ood.threshold_for(np.array([]), 0.05) == np.inf


def test_a_saved_detector_scores_the_same_when_loaded(tmp_path):
    rng = np.random.default_rng(1)
    train, labels = clusters(rng, 200)
    for method in ood.METHODS:
        detector = ood.fit(train, labels, clusters(rng, 100)[0], method=method, rate=0.1)
        loaded = ood.OutOfDistribution.load(detector.save(tmp_path / f"{method}.npz"))
        probe = clusters(rng, 50)[0]
        np.testing.assert_array_equal(loaded.scores(probe), detector.scores(probe))
        assert (loaded.method, loaded.threshold, loaded.rate) == (method, detector.threshold, 0.1)


def test_wide_features_are_projected_and_still_separate(tmp_path):
    rng = np.random.default_rng(2)
    wide = ood.MAX_DIMENSIONS + 500
    train, labels = clusters(rng, 300, dimensions=wide)
    detector = ood.fit(train, labels, clusters(rng, 200, dimensions=wide)[0], method="knn")
    unlike = np.abs(rng.normal(0, 1.0, (100, wide))).astype("float32")
    unlike[:, 100:140] += 4.0

    assert detector.dimensions == wide
    assert detector.detector.bank.shape == (300, ood.MAX_DIMENSIONS)
    assert np.mean(detector.scores(unlike) > 1) >= 0.95
    loaded = ood.OutOfDistribution.load(detector.save(tmp_path / "wide.npz"))
    np.testing.assert_allclose(loaded.scores(unlike), detector.scores(unlike), rtol=1e-6)


def test_the_nearest_neighbour_bank_is_capped(monkeypatch):
    monkeypatch.setattr(ood, "MAX_BANK", 50)
    rng = np.random.default_rng(3)
    train, labels = clusters(rng, 120)
    detector = ood.KNearest.fit(train, labels)
    assert detector.bank.shape == (50, 64)
    np.testing.assert_allclose(np.linalg.norm(detector.bank, axis=1), 1.0, atol=1e-5)


def test_k_is_a_share_of_the_training_images():
    features, labels = np.ones((2000, 3), "float32"), np.zeros(2000, int)
    assert ood.KNearest.fit(features, labels).k == round(2000 * ood.NEIGHBOUR_SHARE) == 10
    assert ood.KNearest.fit(features[:100], labels[:100]).k == 1
    assert ood.KNearest.fit(features, labels, share=0.1).k == 200


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"method": "isolation_forest"}, "unknown ood_method 'isolation_forest'; choose one of: knn, mahalanobis"),
    ({"rate": 1.5}, "ood_rate must be a share of false alarms between 0 and 1"),
    ({"rate": 0}, "ood_rate must be a share"),
])
def test_bad_settings_name_their_parameter(kwargs, message):
    features = np.ones((4, 3), "float32")
    with pytest.raises(ParameterError, match=message):
        ood.fit(features, np.array([0, 1, 0, 1]), features, **kwargs)
