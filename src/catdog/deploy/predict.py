"""Prediction: class probabilities for image files, folders, uploads and pixel arrays.

A `Predictor` loads a run's model once and feeds it whole batches: files are read and
decoded (by `catdog.data.images.decode`, as in training) in worker threads while the
model works on the previous batch, so no image goes through the model on its own.

The model runs with Keras, or with the runtime of one of the run's exports (see
`catdog.runs.Run.model`); how fast each is: benchmarks/results.md.

Every result is a plain dict, the same for the CLI's `--json` lines and the HTTP API::

    {"path": "cat.1.jpg", "label": "cats", "probability": 0.97,
     "probabilities": {"cats": 0.97, "dogs": 0.03}, "ood_score": 0.62, "in_distribution": true}

The probabilities are calibrated by the run's temperature (catdog.workflow);
`ood_score` is the run's out-of-distribution score (above 1: unlike the training images;
both it and `in_distribution` are null for a run without a detector). The label is the
most probable class, or `UNKNOWN` for an image unlike the training images when
`reject_unknown`, or `UNSURE` when its probability is under `min_confidence`. With `tta`,
each image's probabilities are averaged with its mirror image's (catdog.trust.tta).

A multi-label run's result has `labels` instead of `label` and `probability`: the tags whose
probability (independent of the others') reaches the tag's threshold (chosen on validation,
in `thresholds`) and `min_confidence`, possibly none; `[UNKNOWN]` for an image unlike the
training images when `reject_unknown`::

    {"path": "pair.jpg", "labels": ["cats", "dogs"], "probabilities": {"cats": 0.98, "dogs": 0.91},
     "thresholds": {"cats": 0.42, "dogs": 0.5}, "ood_score": 0.7, "in_distribution": true}
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from catdog import defaults
from catdog.data import images
from catdog.data.images import MAX_IMAGE_PIXELS
from catdog.errors import BadImageError, CatdogError, ParameterError
from catdog.formats import AUTO
from catdog.outputs import FEATURES, PROBABILITIES
from catdog.runs import Run, as_run
from catdog.trust.tta import with_mirror

Prediction = dict[str, Any]
SkipHandler = Callable[[str, str], None]

# Labels besides the classes: unlike the training images (with `reject_unknown`), or not probable enough.
UNKNOWN = "unknown"
UNSURE = "unsure"


@dataclass(frozen=True)
class Scores:
    """A batch's calibrated probabilities (N, classes) and out-of-distribution scores (N,; None
    without a detector)."""

    probabilities: np.ndarray
    ood: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.probabilities)

    def __getitem__(self, rows: slice) -> Scores:
        return Scores(self.probabilities[rows], None if self.ood is None else self.ood[rows])

    def rows(self) -> Iterator[tuple[np.ndarray, float | None]]:
        for i, probabilities in enumerate(self.probabilities):
            yield probabilities, None if self.ood is None else float(self.ood[i])


class Predictor:
    """A run's model, loaded once, with its class names, image size, temperature and
    out-of-distribution detector.

    `runtime`: see `catdog.runs.Run.model`; the one chosen is in `self.runtime`, and the
    file it runs in `self.model_path`. `tta`, `reject_unknown`, `min_confidence`: see the
    module's docstring.
    Calls into the model are serialised by a lock, so one predictor can be shared by the
    threads of a web server; reading and decoding images happens outside the lock.
    """

    def __init__(
        self, run: Run | str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS, runtime: str = AUTO, *,
        tta: bool = False, reject_unknown: bool = False, min_confidence: float | None = None,
    ):
        self.run = as_run(run)
        self.class_names = self.run.class_names
        self.image_size = self.run.image_size
        self.max_pixels = max_pixels
        self.detector = self.run.detector
        check_labels(self.run, reject_unknown, min_confidence)
        self.reject_unknown, self.min_confidence = reject_unknown, min_confidence
        self._model = self.run.model(runtime)
        self.runtime, self.model_path = self._model.runtime, self._model.path
        self._outputs = with_mirror(self._model) if tta else self._model
        self._lock = threading.Lock()

    def predict_arrays(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities, shape (N, classes), for float 0..255 pixels of shape (N, S, S, 3)."""
        return self.score_arrays(pixels).probabilities

    def score_arrays(self, pixels: np.ndarray) -> Scores:
        """Probabilities and out-of-distribution scores for float 0..255 pixels of shape (N, S, S, 3)."""
        pixels = np.asarray(pixels, dtype="float32")
        expected = (self.image_size, self.image_size, 3)
        if pixels.ndim != 4 or pixels.shape[1:] != expected:
            raise CatdogError(f"expected images of shape (N, {', '.join(map(str, expected))}), got {pixels.shape}")
        if len(pixels) == 0:
            return Scores(np.zeros((0, len(self.class_names)), dtype="float32"))
        with self._lock:
            outputs = self._outputs(pixels)
        features = outputs.get(FEATURES)
        ood = self.detector.scores(features) if self.detector is not None and features is not None else None
        return Scores(outputs[PROBABILITIES], ood)

    def predict_bytes(self, uploads: Sequence[tuple[str, bytes]]) -> list[Prediction]:
        """Predict a batch of uploaded files given as `(name, contents)` pairs (see `decode_uploads`)."""
        return self.results([name for name, _ in uploads], self.score_arrays(self.decode_uploads(uploads)))

    def decode_uploads(self, uploads: Sequence[tuple[str, bytes]]) -> np.ndarray:
        """The pixels of uploaded files, all inspected first: the first bad one raises
        `BadImageError` naming it, and nothing is decoded."""
        for name, contents in uploads:
            try:
                images.inspect_image(contents, max_pixels=self.max_pixels)
            except BadImageError as e:
                raise BadImageError(e.reason, name) from e
        return images.load_images([contents for _, contents in uploads], self.image_size)

    def predict_paths(
        self,
        sources: Iterable[str | os.PathLike],
        batch_size: int = defaults.BATCH_SIZE,
        on_skip: SkipHandler | None = None,
    ) -> Iterator[Prediction]:
        """Yield one prediction per readable image in `sources` (files and folders), in order.

        Unreadable files are left out and reported as `on_skip(path, reason)`.
        """
        batch_paths, batch_pixels = [], []
        for path, decoded in self._decoded(images.find_images(sources), lookahead=4 * batch_size):
            if isinstance(decoded, str):
                if on_skip is not None:
                    on_skip(path, decoded)
                continue
            batch_paths.append(path)
            batch_pixels.append(decoded)
            if len(batch_paths) == batch_size:
                yield from self._predict_batch(batch_paths, batch_pixels)
                batch_paths, batch_pixels = [], []
        yield from self._predict_batch(batch_paths, batch_pixels)

    def _predict_batch(self, paths: list[str], pixels: list[np.ndarray]) -> Iterator[Prediction]:
        if paths:
            yield from self.results(paths, self.score_arrays(np.stack(pixels)))

    def _decoded(self, paths: list[Path], lookahead: int) -> Iterator[tuple[str, np.ndarray | str]]:
        """(path, pixels) for each readable file, (path, reason) for the others, in order:
        decoded by worker threads up to `lookahead` files ahead of the model (Pillow releases
        the GIL while it decodes, and the runtimes while they compute)."""

        def decode(path: Path) -> np.ndarray | str:
            try:
                return images.decode(path, self.image_size, max_pixels=self.max_pixels)
            except BadImageError as e:
                return e.reason

        with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
            pending: deque = deque()
            for path in paths:
                pending.append((os.fspath(path), pool.submit(decode, path)))
                if len(pending) > lookahead:
                    name, future = pending.popleft()
                    yield name, future.result()
            for name, future in pending:
                yield name, future.result()

    def results(self, paths: Sequence[str], scores: Scores) -> list[Prediction]:
        """The prediction dicts of a batch of images (see the module's docstring)."""
        return [self.result(path, *row) for path, row in zip(paths, scores.rows(), strict=True)]

    def result(self, path: str, probabilities: np.ndarray, ood_score: float | None = None) -> Prediction:
        """The prediction dict for one image's probabilities and out-of-distribution score."""
        in_distribution = None if ood_score is None else bool(ood_score <= 1.0)
        if self.run.multilabel:
            return self._tags(path, probabilities, ood_score, in_distribution)
        best = int(np.argmax(probabilities))
        label = self.class_names[best]
        if self.reject_unknown and in_distribution is False:
            label = UNKNOWN
        elif self.min_confidence is not None and probabilities[best] < self.min_confidence:
            label = UNSURE
        return {
            "path": path,
            "label": label,
            "probability": float(probabilities[best]),
            "probabilities": {name: float(p) for name, p in zip(self.class_names, probabilities, strict=True)},
            "ood_score": ood_score,
            "in_distribution": in_distribution,
        }

    def _tags(self, path: str, probabilities: np.ndarray, ood_score: float | None,
              in_distribution: bool | None) -> Prediction:
        floor = self.min_confidence or 0.0
        labels = [name for name, p, threshold in zip(self.class_names, probabilities, self.run.thresholds, strict=True)
                  if p >= max(threshold, floor)]
        if self.reject_unknown and in_distribution is False:
            labels = [UNKNOWN]
        return {
            "path": path,
            "labels": labels,
            "probabilities": {name: float(p) for name, p in zip(self.class_names, probabilities, strict=True)},
            "thresholds": dict(zip(self.class_names, self.run.thresholds, strict=True)),
            "ood_score": ood_score,
            "in_distribution": in_distribution,
        }


def check_labels(run: Run, reject_unknown: bool, min_confidence: float | None) -> None:
    """Refuse labels that cannot be given: without a detector, or that a class already has."""
    if reject_unknown and run.detector is None:
        raise CatdogError(f"run {run.path} has no out-of-distribution detector (it was trained before catdog had "
                          f"one); add it with: catdog train --resume {run.path}")
    if min_confidence is not None and not 0 < min_confidence <= 1:
        raise ParameterError("min_confidence", f"{{name}} must be a probability above 0 and at most 1, "
                                               f"got {min_confidence}")
    for label, asked in ((UNKNOWN, reject_unknown), (UNSURE, min_confidence is not None)):
        if asked and label in run.class_names:
            raise CatdogError(f"run {run.path} has a class named {label!r}, which the {label} label would be "
                              "confused with")
