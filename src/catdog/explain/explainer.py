"""Explanations: per image, the label, the Grad-CAM heatmap of the class it explains, and the
out-of-distribution score, computed with the run's Keras model (whatever runtime predicts).

    >>> for explanation in Explainer("runs/transfer").explain_paths(["cat.jpg"]):
    ...     write(explanation, "explanations/cat.png")

The probabilities are the calibrated ones `catdog predict` gives (the run's temperature
applied to the model's logits).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catdog import files
from catdog.data import images
from catdog.data.images import MAX_IMAGE_PIXELS
from catdog.errors import BadImageError, ParameterError
from catdog.explain.gradcam import GradCAM
from catdog.report import plots
from catdog.runs import Run, as_run
from catdog.trust import calibration


@dataclass(frozen=True)
class Explanation:
    """One image explained: `label` is the most probable class (for a multi-label run, the tags
    it is given, `labels`, joined, or "no tag"), `explained` the class or tag whose heatmap
    (S, S, 0..1) this is; `ood_score` and `in_distribution` as in `catdog predict`."""

    path: str
    photo: np.ndarray
    heatmap: np.ndarray
    label: str
    explained: str
    probabilities: dict[str, float]
    ood_score: float | None
    in_distribution: bool | None
    labels: list[str] | None = None

    @property
    def probability(self) -> float:
        """The probability of the explained tag (multi-label), or of the label."""
        return self.probabilities[self.explained if self.labels is not None else self.label]

    def overlay(self) -> np.ndarray:
        """The photo with the heatmap over it (uint8 RGB)."""
        return plots.overlay(self.photo, self.heatmap)

    def to_dict(self) -> dict:
        labels = {"labels": self.labels} if self.labels is not None else {"label": self.label}
        return {"path": self.path, **labels, "explained": self.explained, "probability": self.probability,
                "probabilities": self.probabilities, "ood_score": self.ood_score,
                "in_distribution": self.in_distribution}


class Explainer:
    """A run's Keras model ready for Grad-CAM, with its temperature and detector (see `catdog.runs.Run`)."""

    def __init__(self, run: Run | str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS):
        self.run = as_run(run)
        self.class_names = self.run.class_names
        self.image_size = self.run.image_size
        self.max_pixels = max_pixels
        self.gradcam = GradCAM(self.run.keras_model(), multilabel=self.run.multilabel)

    def class_index(self, class_name: str | None) -> int | None:
        """The index of `class_name` (None: each image's predicted class)."""
        if class_name is None:
            return None
        if class_name not in self.class_names:
            raise ParameterError("class_name", f"{{name}}: the model has no class {class_name!r}; it knows "
                                               f"{', '.join(self.class_names)}")
        return self.class_names.index(class_name)

    def explain_pixels(self, names: Sequence[str], pixels: np.ndarray, class_name: str | None = None
                       ) -> list[Explanation]:
        """Explain a batch of images (N, S, S, 3, 0..255) named `names`: by default each image's
        predicted class, or for a multi-label run each tag it is given (the most probable tag if it
        is given none), one explanation per image and tag."""
        index = self.class_index(class_name)
        if self.run.multilabel:
            return self._explain_tags(names, pixels, index)
        result = self.gradcam(pixels, None if index is None else np.full(len(pixels), index))
        probabilities = self.run.calibrated(calibration.softmax(result.logits))
        detector = self.run.detector
        scores = detector.scores(result.features) if detector is not None else [None] * len(pixels)
        return [
            Explanation(
                path=name, photo=photo, heatmap=heatmap, label=self.class_names[int(np.argmax(p))],
                explained=self.class_names[int(chosen)],
                probabilities={c: float(v) for c, v in zip(self.class_names, p, strict=True)},
                ood_score=None if score is None else float(score),
                in_distribution=None if score is None else bool(score <= 1.0),
            )
            for name, photo, heatmap, chosen, p, score in zip(
                names, pixels, result.heatmaps, result.classes, probabilities, scores, strict=True)
        ]

    def _explain_tags(self, names: Sequence[str], pixels: np.ndarray, index: int | None) -> list[Explanation]:
        probabilities = self.run.calibrated(1 / (1 + np.exp(-self.gradcam.logits(pixels))))
        given = probabilities >= np.asarray(self.run.thresholds)
        pairs = [(i, t) for i in range(len(pixels))
                 for t in ([index] if index is not None else np.flatnonzero(given[i]) if given[i].any()
                           else [int(np.argmax(probabilities[i]))])]
        images, tags = [i for i, _ in pairs], np.array([t for _, t in pairs])
        result = self.gradcam(pixels[images], tags)
        detector = self.run.detector
        scores = detector.scores(result.features) if detector is not None else [None] * len(pairs)
        explanations = []
        for (i, tag), heatmap, score in zip(pairs, result.heatmaps, scores, strict=True):
            labels = [name for name, on in zip(self.class_names, given[i], strict=True) if on]
            explanations.append(Explanation(
                path=names[i], photo=pixels[i], heatmap=heatmap, label=" ".join(labels) or "no tag",
                explained=self.class_names[int(tag)],
                probabilities={c: float(v) for c, v in zip(self.class_names, probabilities[i], strict=True)},
                ood_score=None if score is None else float(score),
                in_distribution=None if score is None else bool(score <= 1.0), labels=labels))
        return explanations

    def explain_paths(self, sources: Iterable[str | os.PathLike], class_name: str | None = None,
                      batch_size: int = 16, on_skip: Callable[[str, str], None] | None = None
                      ) -> Iterator[Explanation]:
        """Explain every readable image in `sources` (files and folders), in order; unreadable
        files are left out and reported as `on_skip(path, reason)`."""
        self.class_index(class_name)  # a bad class is an error before any image is read
        names, batch = [], []
        for path in images.find_images(sources):
            try:
                batch.append(images.decode(path, self.image_size, max_pixels=self.max_pixels))
            except BadImageError as e:
                if on_skip is not None:
                    on_skip(os.fspath(path), e.reason)
                continue
            names.append(os.fspath(path))
            if len(batch) == batch_size:
                yield from self.explain_pixels(names, np.stack(batch), class_name)
                names, batch = [], []
        if batch:
            yield from self.explain_pixels(names, np.stack(batch), class_name)


def write(explanation: Explanation, path: str | os.PathLike) -> Path:
    """The picture of `explanation` (photo, heatmap over it, label) as a PNG at `path`; a PNG
    catdog wrote there before is replaced, anything else is left alone (an error)."""
    return plots.explanation(explanation, path, kind=files.CATDOG_PNG)
