"""Out-of-distribution ("none of these") detection: is an image like the training images?

A classifier answers with one of its classes whatever it is shown. This module keeps what
the training images look like in the model's feature space (see `catdog.trust.features`)
and scores how far a new image's features are from them:

- `KNearest` ("knn", Sun et al., "Out-of-Distribution Detection with Deep Nearest
  Neighbors", 2022): the cosine distance from the features to their k-th nearest
  training image's, k being `NEIGHBOUR_SHARE` of the training images (as in that paper,
  a share, so that it suits small and large data sets alike). Stores the training
  features (at most `MAX_BANK` images).
- `Mahalanobis` (Lee et al., "A Simple Unified Framework for Detecting
  Out-of-Distribution Samples", 2018): one Gaussian per class with a shared covariance
  (shrunk by Ledoit and Wolf's formula); the distance to the nearest class mean.

The distance that counts as too far is set on the validation split: the threshold
passes all but `rate` of the validation images (the split-conformal quantile, so that new
images like the training ones are flagged at most `rate` of the time on average).
`OutOfDistribution.scores` divides distances by it: a score above 1 means "unlike the
training images".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catdog import defaults, files
from catdog.errors import ParameterError

# Training images the k-nearest-neighbour detector keeps at most (a random sample beyond that).
MAX_BANK = 10_000
# Features with more dimensions are first randomly projected to this many (distances are kept
# approximately; Johnson-Lindenstrauss), so that a flattened feature map stays small.
MAX_DIMENSIONS = 2048
# k of the k-th nearest neighbour, as a share of the training images (at least 1): 10 of the reference
# data's 2,000. Measured against other shares in benchmarks/trust.md.
NEIGHBOUR_SHARE = 0.005
# The share of validation images the threshold flags (false alarms on images like the training
# ones), and the default way of measuring distance (a key of `METHODS`, below).
OOD_RATE = 0.05
OOD_METHOD = "knn"


def _normalised(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype="float32")
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class KNearest:
    """Cosine distance to the `k`-th nearest of the (L2-normalised) training features `bank`."""

    bank: np.ndarray
    k: int

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, seed: int = defaults.SEED,
            share: float = NEIGHBOUR_SHARE) -> KNearest:
        features = _normalised(features)
        k = max(1, round(share * len(features)))
        if len(features) > MAX_BANK:
            features = features[np.random.default_rng(seed).choice(len(features), MAX_BANK, replace=False)]
        return cls(features, min(k, len(features)))

    def distances(self, features: np.ndarray) -> np.ndarray:
        similarity = _normalised(features) @ self.bank.T
        kth = -np.partition(-similarity, self.k - 1, axis=1)[:, self.k - 1]
        return (1.0 - kth).astype("float32")

    def arrays(self) -> dict[str, np.ndarray]:
        return {"bank": self.bank, "k": np.array(self.k)}

    @classmethod
    def from_arrays(cls, arrays) -> KNearest:
        return cls(arrays["bank"], int(arrays["k"]))


@dataclass(frozen=True)
class Mahalanobis:
    """Squared Mahalanobis distance to the nearest class mean, with a shared covariance."""

    means: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, seed: int = defaults.SEED):
        features = np.asarray(features, dtype="float64")
        labels = np.asarray(labels)
        classes = np.unique(labels)
        means = np.stack([features[labels == c].mean(axis=0) for c in classes])
        centred = features - means[np.searchsorted(classes, labels)]
        covariance = ledoit_wolf(centred)
        return cls(means.astype("float32"), np.linalg.pinv(covariance, hermitian=True).astype("float32"))

    def distances(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype="float32")
        each = [((features - mean) @ self.precision * (features - mean)).sum(axis=1) for mean in self.means]
        return np.min(each, axis=0).astype("float32")

    def arrays(self) -> dict[str, np.ndarray]:
        return {"means": self.means, "precision": self.precision}

    @classmethod
    def from_arrays(cls, arrays) -> Mahalanobis:
        return cls(arrays["means"], arrays["precision"])


def ledoit_wolf(centred: np.ndarray) -> np.ndarray:
    """The covariance of `centred` (N, D) shrunk towards a multiple of the identity by the
    amount Ledoit and Wolf's formula estimates ("A well-conditioned estimator for
    large-dimensional covariance matrices", 2004; as in scikit-learn's `LedoitWolf`)."""
    n, d = centred.shape
    empirical = centred.T @ centred / n
    mu = np.trace(empirical) / d
    target_gap = empirical.copy()
    target_gap.flat[:: d + 1] -= mu
    delta = (target_gap**2).sum() / d
    squared = centred**2
    beta = min(((squared.T @ squared) / n - empirical**2).sum() / (d * n), delta)
    shrinkage = beta / delta if delta > 0 else 1.0
    shrunk = (1 - shrinkage) * empirical
    shrunk.flat[:: d + 1] += shrinkage * mu
    return shrunk


METHODS = {"knn": KNearest, "mahalanobis": Mahalanobis}


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ParameterError("ood_method", f"unknown {{name}} {method!r}; choose one of: {', '.join(METHODS)}")
    return method


def check_rate(rate: float) -> float:
    if not (isinstance(rate, int | float) and 0 < rate < 1):
        raise ParameterError("ood_rate", f"{{name}} must be a share of false alarms between 0 and 1 (0.05 is 5 %), "
                                         f"got {rate}")
    return float(rate)


def threshold_for(distances: np.ndarray, rate: float) -> float:
    """The distance that all but `rate` of `distances` (of in-distribution images) stay at or
    below: their ceil((n + 1)(1 - rate))-th smallest, or the largest if there are too few."""
    ordered = np.sort(np.asarray(distances, dtype="float64"))
    if not len(ordered):
        return math.inf
    rank = min(math.ceil((len(ordered) + 1) * (1 - rate)), len(ordered))
    return float(ordered[rank - 1])


def _projection(dimensions: int, seed: int) -> np.ndarray | None:
    """A fixed random projection to `MAX_DIMENSIONS`, made again from its seed when loaded."""
    if dimensions <= MAX_DIMENSIONS:
        return None
    rng = np.random.default_rng(seed)
    return rng.standard_normal((dimensions, MAX_DIMENSIONS), dtype="float32") / np.sqrt(MAX_DIMENSIONS)


@dataclass(frozen=True)
class OutOfDistribution:
    """A fitted detector, with its threshold: what a run stores and prediction uses."""

    method: str
    detector: KNearest | Mahalanobis
    threshold: float
    rate: float
    dimensions: int
    seed: int = defaults.SEED

    def __post_init__(self):
        object.__setattr__(self, "_projection", _projection(self.dimensions, self.seed))

    def distances(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype="float32").reshape(len(features), -1)
        if features.shape[1] != self.dimensions:
            raise ValueError(f"features have {features.shape[1]} dimensions, the detector {self.dimensions}")
        if self._projection is not None:
            features = features @ self._projection
        return self.detector.distances(features)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Distances in units of the threshold: above 1 means unlike the training images."""
        return (self.distances(features) / max(self.threshold, 1e-12)).astype("float32")

    def save(self, path: str | Path) -> Path:
        """Write the detector as a NumPy `.npz` file (no pickled objects), atomically."""
        with files.atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, method=np.array(self.method), threshold=np.array(self.threshold), rate=np.array(self.rate),
                     dimensions=np.array(self.dimensions), seed=np.array(self.seed), **self.detector.arrays())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> OutOfDistribution:
        with np.load(path, allow_pickle=False) as arrays:
            method = str(arrays["method"])
            return cls(method, METHODS[method].from_arrays(arrays), float(arrays["threshold"]), float(arrays["rate"]),
                       int(arrays["dimensions"]), int(arrays["seed"]))


def fit(train_features: np.ndarray, train_labels: np.ndarray, validation_features: np.ndarray,
        method: str = OOD_METHOD, rate: float = OOD_RATE, seed: int = defaults.SEED) -> OutOfDistribution:
    """A detector of `method` fitted on the training images' features, with the threshold that
    flags `rate` of the validation images."""
    check_method(method)
    check_rate(rate)
    train_features = np.asarray(train_features, dtype="float32").reshape(len(train_features), -1)
    dimensions = train_features.shape[1]
    projection = _projection(dimensions, seed)
    if projection is not None:
        train_features = train_features @ projection
    unthresholded = OutOfDistribution(method, METHODS[method].fit(train_features, train_labels, seed=seed),
                                      math.inf, rate, dimensions, seed)
    threshold = threshold_for(unthresholded.distances(validation_features), rate)
    return OutOfDistribution(method, unthresholded.detector, threshold, rate, dimensions, seed)
