"""The web app: a page to drop photos on and a JSON API, over one loaded model.

Endpoints::

    GET  /          the page (self-contained: no build step, nothing fetched from the internet)
    POST /predict   multipart/form-data, one or more images in the field `files`
                    -> {"predictions": [{"path", "label", "probability", "probabilities"}, ...]}
    GET  /health    {"status": "ok"}
    GET  /model     {"run", "preset", "classes", "image_size", "test_accuracy"}

Errors are JSON, `{"detail": "<one sentence>"}`, and never stop the server:

    400  no file sent, or more files than `max_files`
    413  request body over `max_upload_bytes` (counted while it streams in)
    422  an empty file, a file that is not an image, or one with more than `max_pixels` pixels

The model is loaded once, in `create_app`. Uploads are checked and decoded in worker
threads, so the event loop keeps serving; then a `Batcher` puts the images of every
request waiting at that moment through the model in one call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import threading
from dataclasses import dataclass
from importlib import resources

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from starlette.types import Message, Receive

from catdog import __version__, config
from catdog.deploy.predict import Predictor
from catdog.errors import BadImageError
from catdog.runs import Run

UPLOAD_FIELD = "files"


@dataclass(frozen=True)
class Limits:
    """What one request may send."""

    max_upload_bytes: int = config.MAX_UPLOAD_MB * 1024 * 1024
    max_pixels: int = config.MAX_IMAGE_PIXELS
    max_files: int = config.MAX_UPLOAD_FILES


class _BodyTooLarge(Exception):
    pass


def _limit_body(receive: Receive, max_bytes: int) -> Receive:
    """`receive`, raising `_BodyTooLarge` as soon as the request body exceeds `max_bytes`."""
    received = 0

    async def limited() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > max_bytes:
            raise _BodyTooLarge
        return message

    return limited


class Batcher:
    """Gathers the images of concurrent requests into one model call.

    Requests queue their pixels; a worker thread takes all that are waiting (up to about
    `max_images` images), calls the model once and hands each request its rows. Under load
    the model sees full batches rather than one request at a time; alone, a request waits
    for nothing.
    """

    def __init__(self, predictor: Predictor, max_images: int = config.BATCH_SIZE):
        self.predictor = predictor
        self.max_images = max_images
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="catdog-batcher", daemon=True)
        self._worker.start()

    async def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """The model's probabilities for `pixels`, computed with whatever else is waiting."""
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
            probabilities = self.predictor.predict_arrays(np.concatenate([pixels for pixels, _ in batch]))
        except Exception as e:  # the requests waiting for this batch get the error; the worker goes on
            for _, future in batch:
                future.set_exception(e)
            return
        start = 0
        for pixels, future in batch:
            future.set_result(probabilities[start : start + len(pixels)])
            start += len(pixels)


def create_app(run: Run | str | os.PathLike, limits: Limits = Limits(), runtime: str = "auto") -> FastAPI:
    """The app serving `run`'s model (loaded, and warmed up with one call, before this returns);
    `runtime` as for `catdog.predict.Predictor`."""
    predictor = Predictor(run, max_pixels=limits.max_pixels, runtime=runtime)
    size = predictor.image_size
    predictor.predict_arrays(np.zeros((1, size, size, 3), dtype="float32"))
    batcher = Batcher(predictor)
    page_html = resources.files("catdog.deploy").joinpath("static/index.html").read_text(encoding="utf-8")
    too_large = f"upload is larger than the server's limit of {limits.max_upload_bytes / 2**20:g} MB"

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await run_in_threadpool(batcher.stop)

    app = FastAPI(title="catdog", version=__version__, description="Predict the class of images.", lifespan=lifespan)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return page_html

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/model")
    def model_info() -> dict:
        metrics = predictor.run.metrics or {}
        return {
            "run": predictor.run.path.name,
            "preset": predictor.run.preset,
            "classes": predictor.class_names,
            "image_size": size,
            "runtime": predictor.runtime,
            "test_accuracy": metrics.get("accuracy"),
        }

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        """Predict every image sent in the multipart field `files`, as one batch."""
        if int(request.headers.get("content-length") or 0) > limits.max_upload_bytes:
            raise HTTPException(413, too_large)
        limited = Request(request.scope, _limit_body(request.receive, limits.max_upload_bytes))
        try:
            form = await limited.form(max_files=limits.max_files)
        except _BodyTooLarge:
            raise HTTPException(413, too_large) from None
        try:
            files = [item for item in form.getlist(UPLOAD_FIELD) if not isinstance(item, str)]
            if not files:
                raise HTTPException(400, "no file sent: post one or more images in the multipart field "
                                         f"{UPLOAD_FIELD!r}")
            uploads = [(file.filename or f"file {i + 1}", await file.read()) for i, file in enumerate(files)]
        finally:
            await form.close()
        try:
            pixels = await run_in_threadpool(predictor.decode_uploads, uploads)
        except BadImageError as e:
            raise HTTPException(422, str(e)) from None
        probabilities = await batcher.probabilities(pixels)
        return {"predictions": [predictor.result(name, p) for (name, _), p in zip(uploads, probabilities, strict=True)]}

    return app


def serve(
    run: Run | str | os.PathLike,
    host: str = config.SERVE_HOST,
    port: int = config.SERVE_PORT,
    limits: Limits = Limits(),
    runtime: str = "auto",
) -> None:
    """Serve `run` with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(run, limits, runtime), host=host, port=port)
