"""Suspected label errors and outliers, from the backbone's features of every image.

Label errors are found by confident learning (cleanlab's `find_label_issues`): a logistic
regression on the frozen features predicts each image's class from the other images only
(k-fold, so that no image votes on itself); an image whose given label gets less
probability than that class's images usually give it, while another class's usual
probability is met, counts as a disagreement, cleanlab estimates from those counts how many
labels are wrong, and flags that many (`confident`). On a few hundred images its estimate is
cautious (benchmarks/decisions.md), so an image whose out-of-fold prediction is another class is
listed too: the list holds about as many images as the out-of-fold predictions miss. It is
ranked by the out-of-fold probability of the given label, and an image's score is 1 minus it:
0.97 means the other images make its label 3 % likely. A class with a single image cannot be
checked this way and is left out; and where the other images do not predict classes clearly
better than chance (out-of-fold accuracy under halfway from chance, 1/k for k classes, to
every image: `LABEL_CHECK_MARGIN`), every label would look doubtful, so none is listed.

Outliers are images unlike the rest (cleanlab's `OutOfDistribution` on the features): the
mean cosine distance to an image's 10 nearest neighbours, over the data set's median of that
distance, is its score (1: as typical as the median image); above `OUTLIER_DISTANCE_RATIO`
it is listed. The neighbourhoods need a data set of some size: a photo that stands out
among thousands may not among a hundred (benchmarks/decisions.md).

Both need the `audit` extra (`pip install 'catdog[audit]'`: cleanlab, scikit-learn).
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np

from catdog import defaults
from catdog.errors import CatdogError

# Labels are judged only where the other images predict an image's class clearly better than
# chance: an out-of-fold accuracy at least this share of the way from chance (1/k) to 1 (0.75 for
# two classes, 0.55 for ten); below it, every label looks doubtful.
LABEL_CHECK_MARGIN = 0.5
# An image is an outlier when its mean distance to its nearest neighbours (in the backbone's
# features) is at least this many times the data set's median of that distance.
OUTLIER_DISTANCE_RATIO = 1.5
FOLDS = 5


@dataclass(frozen=True)
class LabelIssue:
    index: int  # into the images the features describe
    suggested: int  # the class the other images point to
    score: float  # 1 - the out-of-fold probability of the given label
    confident: bool  # flagged by confident learning, not only by the out-of-fold prediction


def _cleanlab():
    try:
        import cleanlab.filter
        import cleanlab.outlier
        import sklearn  # noqa: F401
    except ImportError as e:
        raise CatdogError("finding label errors and outliers needs cleanlab and scikit-learn: "
                          "pip install 'catdog[audit]'") from e
    return cleanlab


def label_check_accuracy(n_classes: int) -> float:
    """The out-of-fold accuracy labels are judged from, for `n_classes` classes (see `LABEL_CHECK_MARGIN`)."""
    chance = 1 / n_classes
    return chance + (1 - chance) * LABEL_CHECK_MARGIN


def folds_for(labels: np.ndarray) -> int:
    """The folds the out-of-fold predictions of `labels` are made in: `FOLDS`, fewer where no
    class has that many images."""
    return min(FOLDS, max(Counter(np.asarray(labels).tolist()).values()))


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, n_classes: int,
                              seed: int = defaults.SEED) -> np.ndarray:
    """(n, n_classes) probabilities of each image's class, each from a logistic regression
    that did not see the image (stratified k-fold, in `folds_for(labels)` folds)."""
    _cleanlab()
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = folds_for(labels)
    probabilities = np.zeros((len(labels), n_classes))
    present = np.unique(labels)
    with warnings.catch_warnings():
        # Classes smaller than the folds: a fold may lack one; scikit-learn says so and fills in zeros.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        found = cross_val_predict(LogisticRegression(C=1.0, max_iter=1000), features, labels,
                                  cv=StratifiedKFold(folds, shuffle=True, random_state=seed), method="predict_proba")
    probabilities[:, present] = found
    return probabilities


@dataclass(frozen=True)
class LabelCheck:
    """The suspects, most suspicious first, and how often the other images predict an image's
    class (out-of-fold accuracy); `judged` is false when that is not clearly better than chance
    (under `needed`). `folds`: how many folds the out-of-fold predictions were made in;
    `classes`: how many classes were checked (those with two images or more)."""

    issues: list[LabelIssue]
    accuracy: float | None
    judged: bool
    folds: int | None = None
    needed: float | None = None
    classes: int | None = None


def find_label_issues(features: np.ndarray, labels: np.ndarray, n_classes: int,
                      seed: int = defaults.SEED) -> LabelCheck:
    """The images whose labels the other images doubt (see the module docstring). When the
    other images do not predict an image's class clearly better than chance
    (`label_check_accuracy`; too few images per class for the backbone's features, say),
    every label would look doubtful, so none is listed."""
    cleanlab = _cleanlab()
    counts = Counter(labels.tolist())
    checked = np.flatnonzero([counts[label] > 1 for label in labels.tolist()])
    if len(np.unique(labels[checked])) < 2:
        return LabelCheck([], None, False)
    # cleanlab wants the classes numbered 0..k-1 without gaps: renumber those that are checked.
    classes = np.unique(labels[checked])
    local = np.searchsorted(classes, labels[checked])
    probabilities = out_of_fold_probabilities(features[checked], local, len(classes), seed)
    accuracy = float((probabilities.argmax(axis=1) == local).mean())
    folds, needed = folds_for(local), label_check_accuracy(len(classes))
    if accuracy < needed:
        return LabelCheck([], accuracy, False, folds, needed, len(classes))
    confident = cleanlab.filter.find_label_issues(local, probabilities, n_jobs=1)
    given = probabilities[np.arange(len(local)), local]
    flagged = np.flatnonzero(confident | (probabilities.argmax(axis=1) != local))
    issues = [LabelIssue(int(checked[i]), int(classes[probabilities[i].argmax()]), float(1 - given[i]),
                         bool(confident[i])) for i in flagged[np.argsort(given[flagged], kind="stable")]]
    return LabelCheck(issues, accuracy, True, folds, needed, len(classes))


def outlier_scores(features: np.ndarray) -> np.ndarray:
    """Each image's mean distance to its nearest neighbours over the data set's median of it."""
    cleanlab = _cleanlab()
    if len(features) < 3:
        return np.ones(len(features))
    k = min(10, len(features) - 1)
    scores = cleanlab.outlier.OutOfDistribution({"k": k}).fit_score(features=features, verbose=False)
    # cleanlab's score is exp(-distance / median distance): 1 is a duplicate, low is far from everything.
    return -np.log(np.clip(scores, 1e-12, 1.0))
