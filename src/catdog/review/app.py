"""The review page's web app, and `serve`, which runs it like `catdog serve` does.

Endpoints::

    GET  /                       the page (self-contained: no build step, nothing fetched from elsewhere)
    GET  /api/review             {"title", "mode", "who", "classes", "items": [...], "progress", "can_undo"}
                                 (`Review.state`: every item with its decision in force)
    GET  /api/items/{i}/files/{j}  the image file of member j of item i, as it is on disk
    POST /api/decide             {"item", "action": "keep"|"change"|"exclude"|"keep_one",
                                  "label" (change), "keep" (keep_one: the member's index)}
    POST /api/undo               {}: takes back the latest decision
    POST /api/export             {}: writes the labels CSV into the review folder (`reviewed.csv`)

Each POST answers `{"item", "decision", "progress", "can_undo"}` (export: what it wrote)
and takes JSON only (`Content-Type: application/json`), which a page of another site cannot
send without the browser asking first, and this server never agreeing. As for `catdog
serve`: on a loopback address only loopback `Host` names are answered (against DNS
rebinding), and errors are `{"detail": "<one sentence>"}`.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from catdog.deploy.serve.connections import Connections, LoopbackHostOnly, listening_socket, uvicorn_config
from catdog.errors import CatdogError
from catdog.review.session import Review

# Where `catdog review` listens by default: this machine only, beside `catdog serve`'s 8000.
HOST = "127.0.0.1"
PORT = 8001

logger = logging.getLogger(__name__)


class _Refused(Exception):
    def __init__(self, status: int, detail: str):
        self.status, self.detail = status, detail


def create_app(review: Review) -> FastAPI:
    """The app over the open `review` (which the caller closes)."""
    page_html = resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8")
    app = FastAPI(title="catdog review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(LoopbackHostOnly)

    @app.exception_handler(_Refused)
    async def refused(request: Request, error: _Refused) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status)

    @app.exception_handler(CatdogError)
    async def bad_input(request: Request, error: CatdogError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return page_html

    @app.get("/api/review")
    def state() -> dict[str, Any]:
        return review.state()

    @app.get("/api/items/{index}/files/{member}")
    def image(index: int, member: int) -> FileResponse:
        if not (0 <= index < len(review.items) and 0 <= member < len(review.items[index].members)):
            raise _Refused(404, f"no file {member} of item {index}")
        if not Path(review.items[index].members[member].file).is_file():
            raise _Refused(404, f"{review.items[index].members[member].path} is not there any more")
        return FileResponse(review.items[index].members[member].file, headers={"Cache-Control": "no-store"})

    @app.post("/api/decide")
    async def decide(request: Request) -> dict[str, Any]:
        body = await _json(request)
        record = await run_in_threadpool(review.decide, str(body.get("item")), str(body.get("action")),
                                  label=body.get("label"), keep=body.get("keep"))
        return review.item_state(record["item"])

    @app.post("/api/undo")
    async def undo(request: Request) -> dict[str, Any]:
        await _json(request)
        undone = await run_in_threadpool(review.undo)
        if undone is None:
            raise _Refused(409, "there is no decision to undo")
        return review.item_state(undone["item"])

    @app.post("/api/export")
    async def export(request: Request) -> dict[str, Any]:
        await _json(request)
        return await run_in_threadpool(review.export, review.default_export())

    return app


async def _json(request: Request) -> dict[str, Any]:
    """The request's JSON object; only JSON is taken (see the module's docstring)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise _Refused(415, "send JSON (Content-Type: application/json)")
    try:
        body = await request.json()
    except ValueError:
        raise _Refused(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise _Refused(400, "the request body must be a JSON object")
    return body


def serve(review: Review, host: str = HOST, port: int = PORT, connections: Connections | None = None) -> None:
    """Serve the page over `review` with uvicorn until interrupted."""
    sock = listening_socket(host, port)
    try:
        app = create_app(review)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        logger.info(f"reviewing {review.title} at http://{shown}:{bound_port}/ (Ctrl+C stops; decisions are "
                    f"kept in {review.path})")
        uvicorn.Server(uvicorn_config(app, connections or Connections(), log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()
