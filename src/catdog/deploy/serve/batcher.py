"""The batcher: the images of concurrent requests put through the model in one call."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading

import numpy as np

from catdog import defaults
from catdog.deploy.predict import Predictor, Scores


class Batcher:
    """Gathers the images of concurrent requests into one model call.

    Requests queue their pixels; a worker thread takes all that are waiting (up to about
    `max_images` images), calls the model once and hands each request its rows. Under load
    the model sees full batches rather than one request at a time; alone, a request waits
    for nothing.
    """

    def __init__(self, predictor: Predictor, max_images: int = defaults.BATCH_SIZE):
        self.predictor = predictor
        self.max_images = max_images
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self.start()

    def start(self) -> None:
        """Start the worker, unless it is running (an app's server may stop, and a new one start)."""
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="catdog-batcher", daemon=True)
            self._worker.start()

    async def scores(self, pixels: np.ndarray) -> Scores:
        """The model's probabilities and out-of-distribution scores for `pixels`, computed
        with whatever else is waiting."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((pixels, future))
        return await asyncio.wrap_future(future)

    def stop(self) -> None:
        """Finish what is queued, then end the worker."""
        self._queue.put(None)
        self._worker.join()

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            while batch[-1] is not None and sum(len(pixels) for pixels, _ in batch) < self.max_images:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = batch[-1] is None
            if stopping:
                batch.pop()
            if batch:
                self._predict(batch)
            if stopping:
                return

    def _predict(self, batch: list[tuple[np.ndarray, concurrent.futures.Future]]) -> None:
        try:
            scores = self.predictor.score_arrays(np.concatenate([pixels for pixels, _ in batch]))
        except Exception as e:  # the requests waiting for this batch get the error; the worker goes on
            for _, future in batch:
                future.set_exception(e)
            return
        start = 0
        for pixels, future in batch:
            future.set_result(scores[start : start + len(pixels)])
            start += len(pixels)
