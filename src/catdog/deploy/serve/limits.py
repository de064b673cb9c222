"""Where the server listens, and what one request may send: plain settings, read by the command line
without loading the server."""

from __future__ import annotations

import os
from dataclasses import dataclass

from catdog.data.images import MAX_IMAGE_PIXELS

# Where `catdog serve` listens by default: this machine only.
HOST = "127.0.0.1"
PORT = 8000


@dataclass(frozen=True)
class Limits:
    """What one request may send, and how much decoding the server takes on at once.

    `max_request_pixels`: all the images of one request together, from their headers (eight
    12-megapixel photos, or two at the per-image limit). `max_decoding`: uploads decoded at the
    same time, across all requests (decoding is CPU- and memory-bound). `body_timeout_s`: the
    longest silence while a client sends a request body."""

    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = MAX_IMAGE_PIXELS
    max_files: int = 32
    max_request_pixels: int = 100_000_000
    max_decoding: int = max(1, min(4, os.cpu_count() or 1))
    body_timeout_s: float = 30
