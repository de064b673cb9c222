"""Checking and decoding images: the one place that knows what a usable image is.

Two steps, used everywhere images enter catdog (scanning a data set, predicting,
serving an upload):

1. `inspect_image` checks a file or a byte string with Pillow: that it is not empty,
   that it is an image in a format TensorFlow decodes, that it is not too large to
   decode safely (checked from the header, before decoding), and that it decodes
   completely (truncated files fail here). It raises `BadImageError` with a short
   reason otherwise.
2. `decode_image` (inside `tf.data`) and `load_images` (for a handful of inputs)
   decode by content with TensorFlow and resize the same way, so the pixels a model
   sees when predicting are exactly those it saw in training.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from PIL import Image

from catdog import config
from catdog.errors import BadImageError

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf

# The formats `tf.io.decode_image` reads, with the file name extensions each goes by.
SUPPORTED_FORMATS: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png",),
    "GIF": (".gif",),
    "BMP": (".bmp", ".dib"),
}
IMAGE_SUFFIXES = frozenset(suffix for suffixes in SUPPORTED_FORMATS.values() for suffix in suffixes)
# Pillow names some JPEG files after the variant they are (multi-picture files from cameras).
_PILLOW_ALIASES = {"MPO": "JPEG"}

ImageSource = str | os.PathLike | bytes

# `warnings.catch_warnings` swaps process-wide state: scanning threads take turns with it.
_WARNINGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class ImageInfo:
    """What `inspect_image` found: the format read from the content, and the size."""

    format: str
    width: int
    height: int
    extension_mismatch: bool = False


def inspect_image(source: ImageSource, max_pixels: int = config.MAX_IMAGE_PIXELS) -> ImageInfo:
    """Check that `source` (a path or the bytes of a file) is an image catdog can use.

    Raises `BadImageError` naming the reason: an empty file, not an image, an
    unsupported format, too many pixels (from the header, before anything is
    decoded), or a truncated or corrupt image (found by decoding it completely).
    `extension_mismatch` is true when a path's extension does not match the content
    (a PNG named `.jpg`); such a file is still usable, since decoding goes by content.
    """
    path = None if isinstance(source, bytes) else os.fspath(source)
    try:
        with _open_source(source) as fp:
            return _inspect(fp, path, max_pixels)
    except BadImageError as e:
        raise BadImageError(e.reason, path) from None
    except OSError as e:
        raise BadImageError(f"cannot be read ({e.strerror or e})", path) from None


def _open_source(source: ImageSource) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")


def _inspect(fp: BinaryIO, path: str | None, max_pixels: int) -> ImageInfo:
    prefix = fp.read(16)
    if not prefix:
        raise BadImageError("empty file")
    fp.seek(0)
    try:
        image = _open_header(fp)
    except Image.DecompressionBombError:
        raise BadImageError("too large: more pixels than Pillow decodes safely") from None
    except Exception:
        # Pillow could not parse a header; say which format it was meant to be, if any.
        fmt = _format_by_signature(prefix)
        raise BadImageError(f"truncated or corrupt {fmt}" if fmt else "not an image") from None

    fmt = _PILLOW_ALIASES.get(image.format, image.format)
    if fmt not in SUPPORTED_FORMATS:
        raise BadImageError(f"unsupported format {fmt} (catdog reads {', '.join(SUPPORTED_FORMATS)})")
    width, height = image.size
    if width * height > max_pixels:
        raise BadImageError(f"too large: {width}x{height} pixels exceeds the {max_pixels}-pixel limit")
    # A JPEG decoded at 1/8 scale still reads all of its data, so truncation is still
    # found, in half the time of a full decode; other formats ignore the request.
    image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
    try:
        image.load()
    except Exception:  # Pillow's decoders signal bad data with many exception types
        raise BadImageError(f"truncated or corrupt {fmt}") from None

    mismatch = path is not None and Path(path).suffix.lower() not in SUPPORTED_FORMATS[fmt]
    return ImageInfo(format=fmt, width=width, height=height, extension_mismatch=mismatch)


def _open_header(fp: BinaryIO) -> Image.Image:
    """`Image.open`, which reads only the header, without Pillow's decompression-bomb warning.

    Pillow warns about images between its limit and twice that (and raises
    `DecompressionBombError` beyond); `inspect_image` applies its own limit to the
    size read here, with a clearer message, before anything is decoded.
    """
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(fp)


def _format_by_signature(prefix: bytes) -> str | None:
    """The supported format whose signature `prefix` starts with, using Pillow's own tests."""
    Image.preinit()
    return next((fmt for fmt in SUPPORTED_FORMATS if Image.OPEN[fmt][1](prefix)), None)


def decode_image(contents: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decode an encoded image (a scalar string tensor) to an (S, S, 3) float32 tensor of 0..255.

    Works inside `tf.data` maps. Decoding goes by content, so a PNG named `.jpg`
    decodes; animated GIFs give their first frame. The image is resized to
    (S, S) bilinearly, as `keras.utils.image_dataset_from_directory` does, then
    rounded to whole values so that storing it as uint8 (the pipeline's cache)
    loses nothing and training and prediction see identical pixels.
    """
    import tensorflow as tf

    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image = tf.image.resize(image, (image_size, image_size), method="bilinear")
    image = tf.clip_by_value(tf.round(image), 0.0, 255.0)
    image.set_shape((image_size, image_size, 3))
    return image


def load_images(sources: Sequence[ImageSource], image_size: int) -> np.ndarray:
    """Decode already-inspected images (paths or bytes) into an (N, S, S, 3) float32 array.

    Uses `decode_image`, so the pixels match the training pipeline's exactly.
    """
    import numpy as np
    import tensorflow as tf

    if not sources:
        return np.zeros((0, image_size, image_size, 3), dtype="float32")
    images = []
    for source in sources:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        try:
            images.append(decode_image(tf.constant(data), image_size))
        except tf.errors.InvalidArgumentError:
            path = None if isinstance(source, bytes) else os.fspath(source)
            raise BadImageError("cannot be decoded", path) from None
    return tf.stack(images).numpy()


def find_images(sources: Iterable[str | os.PathLike]) -> list[Path]:
    """Files named in `sources`, and the image files inside named folders (recursively, sorted).

    Files are kept whatever their suffix (they are inspected later); inside folders only
    files with an image suffix are taken, so a stray README is not reported as unreadable.
    """
    found: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found.extend(
                path
                for path in sorted(source.rglob("*"))
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            found.append(source)
    return found
