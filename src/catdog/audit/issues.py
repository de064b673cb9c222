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
# Tags are judged only where the other images tell a tag's presence apart at least this well (the
# mean over tags of their balanced accuracy, out of fold): halfway from chance (0.5) to certainty.
TAG_CHECK_MIN_BALANCED_ACCURACY = 0.75
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


@dataclass(frozen=True)
class TagIssue:
    """A multi-label image whose tags the other images doubt: the tags they give it (`suggested`,
    indices), those it lacks by them (`missing`) and those it has against them (`wrong`)."""

    index: int
    suggested: tuple[int, ...]
    missing: tuple[int, ...]
    wrong: tuple[int, ...]
    score: float  # the largest gap between a tag's out-of-fold probability and the image's label for it
    confident: bool


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

    issues: list[LabelIssue] | list[TagIssue]
    accuracy: float | None
    judged: bool
    folds: int | None = None
    needed: float | None = None
    classes: int | None = None
    tags: bool = False  # the check of a multi-label data set: `accuracy` is the tags' mean balanced accuracy

    def method(self) -> str:
        """How the labels were judged, in words (`audit.json`'s `methods`)."""
        if not self.folds:
            return f"not looked for: fewer than {'one tag' if self.tags else 'two classes'} with two images or more"
        if self.tags:
            return (f"confident learning for multi-label data (cleanlab) on the probabilities of a {self.folds}-fold "
                    "out-of-fold logistic regression per tag, and every tag the out-of-fold prediction gives otherwise")
        return (f"confident learning (cleanlab) on the probabilities of a {self.folds}-fold out-of-fold logistic "
                "regression, and every out-of-fold prediction of another class")

    def why_not_judged(self) -> str:
        """Why no label was judged, for an audit's warnings."""
        if self.tags:
            return (f"tags not judged: the other images tell whether an image has a tag with a balanced accuracy of "
                    f"only {self.accuracy:.1%} (the mean over tags, out of fold, {self.folds} folds), under the "
                    f"{self.needed:.1%} needed to judge tags by (halfway from chance to every image)")
        return (f"labels not judged: the other images predict an image's class only {self.accuracy:.1%} of the time "
                f"(out of fold, {self.folds} folds), under the {self.needed:.1%} needed to judge labels by (halfway "
                f"from chance, 1 in {self.classes}, to every image)")


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


def find_tag_issues(features: np.ndarray, tags: np.ndarray, seed: int = defaults.SEED) -> LabelCheck:
    """The images of a multi-label data set (`tags`: N x tags, 0 or 1) whose tags the other images
    doubt: each tag's presence is predicted by a logistic regression that did not see the image
    (k-fold), confident learning for multi-label data (cleanlab's `multilabel_classification`)
    flags images, and so does any tag whose out-of-fold prediction (at 0.5) disagrees with the image's
    label; most doubtful first. Tags with fewer than two images on either side are not checked;
    where the other images tell tags apart too poorly (`TAG_CHECK_MIN_BALANCED_ACCURACY`), none
    is listed. `LabelCheck.accuracy` is then that mean balanced accuracy."""
    _cleanlab()
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, cross_val_predict

    tags = np.asarray(tags).astype(int)
    positives = tags.sum(axis=0)
    checked = np.flatnonzero((positives >= 2) & (len(tags) - positives >= 2))
    if not len(checked) or len(tags) < FOLDS:
        return LabelCheck([], None, False, tags=True)
    probabilities = np.zeros((len(tags), len(checked)))
    folds = KFold(FOLDS, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        for k, tag in enumerate(checked):
            probabilities[:, k] = cross_val_predict(LogisticRegression(C=1.0, max_iter=1000), features, tags[:, tag],
                                                    cv=folds, method="predict_proba")[:, 1]
    given = tags[:, checked].astype(bool)
    predicted = probabilities >= 0.5
    recall_on = (predicted & given).sum(axis=0) / np.maximum(given.sum(axis=0), 1)
    recall_off = (~predicted & ~given).sum(axis=0) / np.maximum((~given).sum(axis=0), 1)
    accuracy = float(np.mean((recall_on + recall_off) / 2))
    checks = {"folds": FOLDS, "needed": TAG_CHECK_MIN_BALANCED_ACCURACY, "classes": len(checked), "tags": True}
    if accuracy < TAG_CHECK_MIN_BALANCED_ACCURACY:
        return LabelCheck([], accuracy, False, **checks)
    from cleanlab.multilabel_classification.filter import find_label_issues as find_multilabel_issues

    labels = [list(np.flatnonzero(row)) for row in given]
    confident = find_multilabel_issues(labels, probabilities, n_jobs=1)
    gaps = np.abs(probabilities - given)
    flagged = np.flatnonzero(confident | (predicted != given).any(axis=1))
    issues = [TagIssue(int(i), tuple(int(checked[t]) for t in np.flatnonzero(predicted[i])),
                       tuple(int(checked[t]) for t in np.flatnonzero(predicted[i] & ~given[i])),
                       tuple(int(checked[t]) for t in np.flatnonzero(~predicted[i] & given[i])),
                       float(gaps[i].max()), bool(confident[i]))
              for i in flagged[np.argsort(-gaps[flagged].max(axis=1), kind="stable")]]
    return LabelCheck(issues, accuracy, True, **checks)


def outlier_scores(features: np.ndarray) -> np.ndarray:
    """Each image's mean distance to its nearest neighbours over the data set's median of it."""
    cleanlab = _cleanlab()
    if len(features) < 3:
        return np.ones(len(features))
    k = min(10, len(features) - 1)
    scores = cleanlab.outlier.OutOfDistribution({"k": k}).fit_score(features=features, verbose=False)
    # cleanlab's score is exp(-distance / median distance): 1 is a duplicate, low is far from everything.
    return -np.log(np.clip(scores, 1e-12, 1.0))
