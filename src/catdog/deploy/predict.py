"""Prediction: class probabilities for image files, folders, uploads and pixel arrays.

A `Predictor` loads a run's model once and feeds it whole batches: files are read and
decoded (by `catdog.data.images.decode`, as in training) in worker threads while the
model works on the previous batch, so no image goes through the model on its own.

The model runs with Keras, or with the runtime of one of the run's exports (see
catdog.deploy.runtimes): with its ONNX export, on a 2-core CPU `catdog predict` reads 220
images/s with MobileNetV2 at 160 px, against 121 with Keras (benchmarks/results.md).

Every result is a plain dict, the same for the CLI's `--json` lines and the HTTP API::

    {"path": "cat.1.jpg", "label": "cats", "probability": 0.97,
     "probabilities": {"cats": 0.97, "dogs": 0.03}}
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from catdog import config
from catdog.data import images
from catdog.deploy import runtimes
from catdog.errors import BadImageError, CatdogError
from catdog.runs import Run, open_run

Prediction = dict[str, Any]
SkipHandler = Callable[[str, str], None]


class Predictor:
    """A run's model, loaded once, with its class names and image size.

    `runtime`: see catdog.deploy.runtimes; the one chosen is in `self.runtime`, and the
    file it runs in `self.model_path`.
    Calls into the model are serialised by a lock, so one predictor can be shared by the
    threads of a web server; reading and decoding images happens outside the lock.
    """

    def __init__(
        self, run: Run | str | os.PathLike, max_pixels: int = config.MAX_IMAGE_PIXELS, runtime: str = "auto"
    ):
        self.run = run if isinstance(run, Run) else open_run(run)
        self.class_names = self.run.class_names
        self.image_size = self.run.image_size
        self.max_pixels = max_pixels
        self._model = runtimes.load(self.run, runtime)
        self.runtime, self.model_path = self._model.runtime, self._model.path
        self._lock = threading.Lock()

    def predict_arrays(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities, shape (N, classes), for float 0..255 pixels of shape (N, S, S, 3)."""
        pixels = np.asarray(pixels, dtype="float32")
        expected = (self.image_size, self.image_size, 3)
        if pixels.ndim != 4 or pixels.shape[1:] != expected:
            raise CatdogError(f"expected images of shape (N, {', '.join(map(str, expected))}), got {pixels.shape}")
        if len(pixels) == 0:
            return np.zeros((0, len(self.class_names)), dtype="float32")
        with self._lock:
            return self._model(pixels)

    def predict_bytes(self, uploads: Sequence[tuple[str, bytes]]) -> list[Prediction]:
        """Predict a batch of uploaded files given as `(name, contents)` pairs (see `decode_uploads`)."""
        pixels = self.decode_uploads(uploads)
        return [self.result(name, p) for (name, _), p in zip(uploads, self.predict_arrays(pixels), strict=True)]

    def decode_uploads(self, uploads: Sequence[tuple[str, bytes]]) -> np.ndarray:
        """The pixels of uploaded files, all inspected first: the first bad one raises
        `BadImageError` naming it, and nothing is decoded."""
        for name, contents in uploads:
            try:
                images.inspect_image(contents, max_pixels=self.max_pixels)
            except BadImageError as e:
                raise BadImageError(e.reason, name) from None
        return images.load_images([contents for _, contents in uploads], self.image_size)

    def predict_paths(
        self,
        sources: Iterable[str | os.PathLike],
        batch_size: int = config.BATCH_SIZE,
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
            probabilities = self.predict_arrays(np.stack(pixels))
            yield from (self.result(path, p) for path, p in zip(paths, probabilities, strict=True))

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

    def result(self, path: str, probabilities: np.ndarray) -> Prediction:
        """The prediction dict for one image's probabilities."""
        best = int(np.argmax(probabilities))
        return {
            "path": path,
            "label": self.class_names[best],
            "probability": float(probabilities[best]),
            "probabilities": {name: float(p) for name, p in zip(self.class_names, probabilities, strict=True)},
        }
