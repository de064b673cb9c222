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
    GET  /model     {"run", "preset", "classes", "image_size", "runtime", "test_accuracy", "task",
                     "thresholds"} (a multi-label run's rows have "labels" and "thresholds" instead of
                     "label" and "probability": see catdog.deploy.predict)

`/docs` and `/redoc` (interactive docs, whose scripts come from a CDN) only with `docs=True`.

Errors are JSON, `{"detail": "<one sentence>"}`, and never stop the server:

    400  no file sent, more files than `max_files` (than one for /explain), or a `Host` that is not a loopback name
         on a connection to a loopback address (a defence against DNS rebinding); a request
         head that is malformed or grows past `max_header_bytes` gets uvicorn's plain-text 400
    408  request headers not complete within `header_timeout_s` of connecting (or of the
         previous response), or no upload data for `body_timeout_s`; the connection is closed
    413  request body over `max_upload_bytes` (counted while it streams in), or images that
         together declare more than `max_request_pixels` pixels (read from their headers)
    422  an empty file, a file that is not an image, or one with more than `max_pixels` pixels
    503  more than `max_open` connections (the new one is closed)

The model is loaded once, in `create_app`. Uploads are received within the server's limits
(catdog.deploy.serve.uploads); then a `Batcher` puts the images of every request waiting at
that moment through the model in one call.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from importlib import resources

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from catdog import __version__
from catdog.deploy.predict import Predictor
from catdog.deploy.serve.batcher import Batcher
from catdog.deploy.serve.connections import Connections, LoopbackHostOnly, listening_socket, uvicorn_config
from catdog.deploy.serve.limits import HOST, PORT, Limits
from catdog.deploy.serve.uploads import Uploads
from catdog.formats import AUTO
from catdog.runs import Run, as_run

logger = logging.getLogger(__name__)


def create_app(
    run: Run | str | os.PathLike, limits: Limits | None = None, runtime: str = AUTO, docs: bool = False
) -> FastAPI:
    """The app serving `run`'s model (loaded, and warmed up with one call, before this returns);
    `runtime` as for `catdog.predict.Predictor`; `docs` serves the interactive API docs at
    /docs and /redoc (their pages load scripts from a CDN)."""
    limits = limits or Limits()
    predictor = Predictor(run, max_pixels=limits.max_pixels, runtime=runtime)
    size = predictor.image_size
    predictor.predict_arrays(np.zeros((1, size, size, 3), dtype="float32"))
    batcher = Batcher(predictor)
    uploads = Uploads(predictor, limits)
    explainer = _LazyExplainer(predictor)
    static = resources.files(__package__).joinpath("static")
    page_html = static.joinpath("index.html").read_text(encoding="utf-8")
    icon = static.joinpath("favicon.svg").read_bytes()

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

    @app.get("/favicon.svg", include_in_schema=False)
    @app.get("/favicon.ico", include_in_schema=False)  # where browsers look when a page names no icon
    def favicon() -> Response:
        return Response(icon, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

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
            "task": predictor.run.config.task,
            "thresholds": None if predictor.run.thresholds is None else list(predictor.run.thresholds),
        }

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        """Predict every image sent in the multipart field `files`, as one batch."""
        names, pixels = await uploads.receive(request)
        return {"predictions": predictor.results(names, await batcher.scores(pixels))}

    @app.post("/explain", response_class=Response)
    async def explain(request: Request) -> Response:
        """The Grad-CAM picture (PNG) of the one image sent in the multipart field `files`."""
        names, pixels = await uploads.receive(request, max_files=1)
        return Response(await run_in_threadpool(explainer.png, names[0], pixels), media_type="image/png")

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
    host: str = HOST,
    port: int = PORT,
    limits: Limits | None = None,
    runtime: str = AUTO,
    docs: bool = False,
    connections: Connections | None = None,
) -> None:
    """Serve `run` with uvicorn until interrupted; the port is taken before the model is loaded.
    `connections`: see catdog.deploy.serve.connections (default: `Connections()`)."""
    run = as_run(run)
    sock = listening_socket(host, port)
    try:
        app = create_app(run, limits, runtime, docs=docs)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        logger.info(f"serving {run.path.name} at http://{shown}:{bound_port}/ (Ctrl+C stops)")
        uvicorn.Server(uvicorn_config(app, connections or Connections())).run(sockets=[sock])
    finally:
        sock.close()
