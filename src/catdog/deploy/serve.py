"""The web app: a page to drop photos on and a JSON API, over one loaded model.

Endpoints::

    GET  /          the page (self-contained: no build step, nothing fetched from the internet)
    POST /predict   multipart/form-data, one or more images in the field `files`
                    -> {"predictions": [{"path", "label", "probability", "probabilities",
                                         "ood_score", "in_distribution"}, ...]}
                    (the rows of `catdog predict --json`)
    POST /explain   multipart/form-data, one image in the field `files` -> image/png: the
                    photo with the Grad-CAM heatmap of its predicted class over it
                    (catdog.explain; the run's Keras model, loaded at the first request)
    GET  /health    {"status": "ok"}
    GET  /model     {"run", "preset", "classes", "image_size", "test_accuracy"}

`/docs` and `/redoc` (interactive docs, whose scripts come from a CDN) only with `docs=True`.

Errors are JSON, `{"detail": "<one sentence>"}`, and never stop the server:

    400  no file sent, more files than `max_files`, or a `Host` that is not a loopback name
         on a connection to a loopback address (a defence against DNS rebinding); a request
         head that is malformed or grows past `max_header_bytes` gets uvicorn's plain-text 400
    408  request headers not complete within `header_timeout_s` of connecting (or of the
         previous response), or no upload data for `body_timeout_s`; the connection is closed
    413  request body over `max_upload_bytes` (counted while it streams in), or images that
         together declare more than `max_request_pixels` pixels (read from their headers)
    422  an empty file, a file that is not an image, or one with more than `max_pixels` pixels
    503  more than `max_open` connections (the new one is closed)

The limits on connections and the Host rule are in catdog.deploy.connections.

The model is loaded once, in `create_app`. Uploads are checked from their headers first,
then decoded one at a time in worker threads, at most `max_decoding` at once across all
requests, so the event loop keeps serving and a burst of large images queues instead of
piling up in memory; then a `Batcher` puts the images of every request waiting at that
moment through the model in one call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import io
import logging
import os
import queue
import threading
import warnings
from dataclasses import dataclass
from importlib import resources

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive

from catdog import __version__, config
from catdog.data import images
from catdog.deploy.connections import Connections, LoopbackHostOnly, listening_socket, uvicorn_config
from catdog.deploy.predict import Predictor, Scores
from catdog.errors import BadImageError
from catdog.runs import Run, open_run

UPLOAD_FIELD = "files"
# After decoding an image this large, hand the memory it freed back to the system (see _trim).
TRIM_AFTER_PIXELS = 4_000_000

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What one request may send, and how much decoding the server takes on at once."""

    max_upload_bytes: int = config.MAX_UPLOAD_MB * 1024 * 1024
    max_pixels: int = config.MAX_IMAGE_PIXELS
    max_files: int = config.MAX_UPLOAD_FILES
    max_request_pixels: int = config.MAX_REQUEST_PIXELS
    max_decoding: int = config.MAX_CONCURRENT_DECODES
    body_timeout_s: float = config.SERVE_BODY_TIMEOUT_S


class _BodyTooLarge(Exception):
    pass


class _BodyStalled(Exception):
    pass


def _limit_body(receive: Receive, max_bytes: int, timeout_s: float) -> Receive:
    """`receive`, raising `_BodyTooLarge` as soon as the request body exceeds `max_bytes`,
    and `_BodyStalled` when nothing arrives for `timeout_s` seconds."""
    received = 0

    async def limited() -> Message:
        nonlocal received
        try:
            async with asyncio.timeout(timeout_s):
                message = await receive()
        except TimeoutError:
            raise _BodyStalled from None
        received += len(message.get("body", b""))
        if received > max_bytes:
            raise _BodyTooLarge
        return message

    return limited


_HEADER_LOCK = threading.Lock()  # `warnings.catch_warnings` swaps process-wide state


def _declared_pixels(contents: bytes) -> int | None:
    """Width x height as the image's header declares them (nothing is decoded), or None
    when Pillow cannot read a header (or refuses to: more than twice its own limit)."""
    from PIL import Image

    try:
        with _HEADER_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(contents)) as image:
                width, height = image.size
    except Exception:  # Pillow signals unreadable headers with many exception types
        return None
    return width * height


def _header_pixels(uploads: list[tuple[str, bytes]], max_pixels: int) -> list[int]:
    """Each upload's pixels from its header. An upload whose header is unreadable or declares
    more than `max_pixels` is refused here, by `images.inspect_image` (which says why before
    decoding anything): `BadImageError` naming it."""
    sizes = []
    for name, contents in uploads:
        pixels = _declared_pixels(contents)
        if pixels is None or pixels > max_pixels:
            try:
                images.inspect_image(contents, max_pixels=max_pixels)
            except BadImageError as e:
                raise BadImageError(e.reason, name) from None
        sizes.append(pixels or 0)
    return sizes


def _load_malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_malloc_trim = _load_malloc_trim()


def _trim() -> None:
    """Give the memory freed by a large decode back to the system.

    Pillow (in `inspect_image`) decodes into 16 MB blocks, which glibc keeps in its per-thread
    arenas once freed: after 4 threads checked 36-megapixel PNGs, resident memory stayed 400 MB
    up, and `malloc_trim` brought it back. TensorFlow's decode is not affected by this: its
    oneDNN allocator keeps a pool for reuse, which grows to the largest images decoded at once
    (hence `max_decoding`); its system-allocator mode frees it, but made a MobileNetV2 batch
    take 1.6 times as long.
    """
    if _malloc_trim is not None:
        _malloc_trim(0)


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


def create_app(
    run: Run | str | os.PathLike, limits: Limits = Limits(), runtime: str = "auto", docs: bool = False
) -> FastAPI:
    """The app serving `run`'s model (loaded, and warmed up with one call, before this returns);
    `runtime` as for `catdog.predict.Predictor`; `docs` serves the interactive API docs at
    /docs and /redoc (their pages load scripts from a CDN)."""
    predictor = Predictor(run, max_pixels=limits.max_pixels, runtime=runtime)
    size = predictor.image_size
    predictor.predict_arrays(np.zeros((1, size, size, 3), dtype="float32"))
    batcher = Batcher(predictor)
    decoding = asyncio.Semaphore(limits.max_decoding)
    page_html = resources.files("catdog.deploy").joinpath("static/index.html").read_text(encoding="utf-8")
    too_large = f"upload is larger than the server's limit of {limits.max_upload_bytes / 2**20:g} MB"
    stalled = f"upload stalled: nothing received for {limits.body_timeout_s:g} s"
    gone = "the client disconnected before its request was answered"

    def decode(name: str, contents: bytes, pixels: int) -> np.ndarray:
        decoded = predictor.decode_uploads([(name, contents)])
        if pixels >= TRIM_AFTER_PIXELS:
            _trim()
        return decoded

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await run_in_threadpool(batcher.stop)

    app = FastAPI(
        title="catdog",
        version=__version__,
        description="Predict the class of images.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.add_middleware(LoopbackHostOnly)

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

    async def receive_images(request: Request) -> tuple[list[str], np.ndarray]:
        """The names and decoded pixels of the images in the multipart field `files`, within
        the limits (an `HTTPException` saying which one otherwise)."""
        if int(request.headers.get("content-length") or 0) > limits.max_upload_bytes:
            raise HTTPException(413, too_large)
        receive = _limit_body(request.receive, limits.max_upload_bytes, limits.body_timeout_s)
        try:
            form = await Request(request.scope, receive).form(max_files=limits.max_files)
        except _BodyTooLarge:
            raise HTTPException(413, too_large) from None
        except _BodyStalled:
            raise HTTPException(408, stalled, headers={"Connection": "close"}) from None
        except ClientDisconnect:  # nobody to answer; uvicorn drops the response
            raise HTTPException(400, gone) from None
        try:
            files = [item for item in form.getlist(UPLOAD_FIELD) if not isinstance(item, str)]
            if not files:
                raise HTTPException(400, "no file sent: post one or more images in the multipart field "
                                         f"{UPLOAD_FIELD!r}")
            uploads = [(file.filename or f"file {i + 1}", await file.read()) for i, file in enumerate(files)]
        finally:
            await form.close()
        try:
            sizes = await run_in_threadpool(_header_pixels, uploads, limits.max_pixels)
            if sum(sizes) > limits.max_request_pixels:
                raise HTTPException(413, f"the images have {sum(sizes)} pixels in all, more than the server's limit "
                                         f"of {limits.max_request_pixels} per request: send fewer or smaller images")
            decoded = []
            for (name, contents), pixels in zip(uploads, sizes, strict=True):
                if await request.is_disconnected():
                    raise HTTPException(400, gone)
                async with decoding:
                    decoded.append(await run_in_threadpool(decode, name, contents, pixels))
        except BadImageError as e:
            raise HTTPException(422, str(e)) from None
        return [name for name, _ in uploads], np.concatenate(decoded)

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        """Predict every image sent in the multipart field `files`, as one batch."""
        names, pixels = await receive_images(request)
        return {"predictions": predictor.results(names, await batcher.scores(pixels))}

    explainer = _LazyExplainer(predictor)

    @app.post("/explain", response_class=Response)
    async def explain(request: Request) -> Response:
        """The Grad-CAM picture (PNG) of the first image sent in the multipart field `files`."""
        names, pixels = await receive_images(request)
        return Response(await run_in_threadpool(explainer.png, names[0], pixels[:1]), media_type="image/png")

    return app


class _LazyExplainer:
    """The run's `catdog.explain.Explainer`, made at the first request that needs it: it holds
    the Keras model (and TensorFlow), which a server running an export otherwise never loads."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self._explainer = None
        self._lock = threading.Lock()

    def png(self, name: str, pixels: np.ndarray) -> bytes:
        from PIL import Image

        with self._lock:
            if self._explainer is None:
                from catdog.explain.explainer import Explainer

                self._explainer = Explainer(self.predictor.run, self.predictor.max_pixels)
            (explanation,) = self._explainer.explain_pixels([name], pixels)
        out = io.BytesIO()
        Image.fromarray(explanation.overlay()).save(out, "PNG")
        return out.getvalue()


def serve(
    run: Run | str | os.PathLike,
    host: str = config.SERVE_HOST,
    port: int = config.SERVE_PORT,
    limits: Limits = Limits(),
    runtime: str = "auto",
    docs: bool = False,
    connections: Connections | None = None,
) -> None:
    """Serve `run` with uvicorn until interrupted; the port is taken before the model is loaded.
    `connections`: see catdog.deploy.connections (default: `Connections()`)."""
    run = run if isinstance(run, Run) else open_run(run)
    sock = listening_socket(host, port)
    try:
        app = create_app(run, limits, runtime, docs=docs)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        logger.info(f"serving {run.path.name} at http://{shown}:{bound_port}/ (Ctrl+C stops)")
        uvicorn.Server(uvicorn_config(app, connections or Connections())).run(sockets=[sock])
    finally:
        sock.close()
