"""What a request may upload, and how uploads become pixels.

`Uploads.receive` reads the images of a request's multipart field `files` within the
server's `Limits`: the body is counted while it streams in (413 past `max_upload_bytes`, 408
when it stalls), each image's size is read from its header before anything is decoded (413
past `max_request_pixels` for the request, 422 for an image that is not one or is over
`max_pixels`), and images are decoded one at a time in worker threads, at most
`max_decoding` at once across all requests, so that the event loop keeps serving and a burst
of large images queues instead of piling up in memory.
"""

from __future__ import annotations

import asyncio
import ctypes
import io
import threading
import warnings

import numpy as np
from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive

from catdog.data import images
from catdog.deploy.predict import Predictor
from catdog.deploy.serve.limits import Limits
from catdog.errors import BadImageError

UPLOAD_FIELD = "files"
# After decoding an image this large, hand the memory it freed back to the system (see `_trim`).
TRIM_AFTER_PIXELS = 4_000_000


class Uploads:
    """Receives the images of requests within `limits`, decoding them as `predictor` does."""

    def __init__(self, predictor: Predictor, limits: Limits):
        self.predictor, self.limits = predictor, limits
        self.decoding = asyncio.Semaphore(limits.max_decoding)
        self.too_large = f"upload is larger than the server's limit of {limits.max_upload_bytes / 2**20:g} MB"
        self.stalled = f"upload stalled: nothing received for {limits.body_timeout_s:g} s"

    async def receive(self, request: Request, max_files: int | None = None) -> tuple[list[str], np.ndarray]:
        """The names and decoded pixels of the images in the multipart field `files`, within
        the limits (an `HTTPException` saying which one otherwise); `max_files` lowers the
        server's limit on the number of files for one endpoint (checked before decoding)."""
        uploads = await self._read(request)
        if max_files is not None and len(uploads) > max_files:
            wanted = "one image" if max_files == 1 else f"at most {max_files} images"
            raise HTTPException(400, f"{len(uploads)} files sent, but this endpoint takes {wanted} per request")
        limits = self.limits
        try:
            sizes = await run_in_threadpool(_header_pixels, uploads, limits.max_pixels)
            if sum(sizes) > limits.max_request_pixels:
                raise HTTPException(413, f"the images have {sum(sizes)} pixels in all, more than the server's limit "
                                         f"of {limits.max_request_pixels} per request: send fewer or smaller images")
            decoded = []
            for (name, contents), pixels in zip(uploads, sizes, strict=True):
                if await request.is_disconnected():
                    raise HTTPException(400, GONE)
                async with self.decoding:
                    decoded.append(await run_in_threadpool(self._decode, name, contents, pixels))
        except BadImageError as e:
            raise HTTPException(422, str(e)) from e
        return [name for name, _ in uploads], np.concatenate(decoded)

    async def _read(self, request: Request) -> list[tuple[str, bytes]]:
        """The (name, contents) of each file of the multipart field, within the size limits."""
        limits = self.limits
        if int(request.headers.get("content-length") or 0) > limits.max_upload_bytes:
            raise HTTPException(413, self.too_large)
        receive = _limit_body(request.receive, limits.max_upload_bytes, limits.body_timeout_s)
        try:
            form = await Request(request.scope, receive).form(max_files=limits.max_files)
        except _BodyTooLarge as e:
            raise HTTPException(413, self.too_large) from e
        except _BodyStalled as e:
            raise HTTPException(408, self.stalled, headers={"Connection": "close"}) from e
        except ClientDisconnect as e:  # nobody to answer; uvicorn drops the response
            raise HTTPException(400, GONE) from e
        try:
            files = [item for item in form.getlist(UPLOAD_FIELD) if not isinstance(item, str)]
            if not files:
                raise HTTPException(400, "no file sent: post one or more images in the multipart field "
                                         f"{UPLOAD_FIELD!r}")
            return [(file.filename or f"file {i + 1}", await file.read()) for i, file in enumerate(files)]
        finally:
            await form.close()

    def _decode(self, name: str, contents: bytes, pixels: int) -> np.ndarray:
        decoded = self.predictor.decode_uploads([(name, contents)])
        if pixels >= TRIM_AFTER_PIXELS:
            _trim()
        return decoded


GONE = "the client disconnected before its request was answered"


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
                raise BadImageError(e.reason, name) from e
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

    Pillow (in `inspect_image`) decodes into large blocks, which glibc keeps in its per-thread
    arenas once freed, and `malloc_trim` gives back. TensorFlow's decode is not affected by this:
    its oneDNN allocator keeps a pool for reuse, which grows to the largest images decoded at once
    (hence `max_decoding`); its system-allocator mode frees it, but is slower. The measurements:
    benchmarks/decisions.md.
    """
    if _malloc_trim is not None:
        _malloc_trim(0)
