"""Checking and decoding images: the one place that knows what a usable image is.

Two steps, used everywhere images enter catdog (scanning a data set, training, evaluating,
predicting, serving an upload, checking an export):

1. `inspect_image` checks a file or a byte string with Pillow: that it is not empty,
   that it is an image Pillow reads, that it is not too large to decode safely (checked
   from the header, before decoding), and that it decodes completely (truncated files fail
   here). It raises `BadImageError` with a short reason otherwise. On request it also
   fingerprints the image it decoded (`catdog.data.duplicates.perceptual_hash`), which
   costs a scan a few percent more than checking alone.
2. `decode` turns one image into the (S, S, 3) uint8 pixels a model sees; `load_images`
   stacks several, and the `tf.data` pipeline calls `decode` too. It is the only decoder,
   so a file gives the same pixels in training, evaluation, prediction, serving and export
   checks, with or without TensorFlow.

Decoding follows the camera: the EXIF orientation is applied (a portrait phone photo is
upright), grayscale, palette, CMYK and 16-bit images become 8-bit RGB, an animation gives
its first frame, and transparency is dropped. The image is then squeezed to S x S (the
aspect ratio is not kept, as in `keras.utils.image_dataset_from_directory`) with Pillow's
antialiased bilinear filter; a JPEG much larger than that is first decoded at a reduced
scale (no less than 2 S), which keeps the quality and saves most of the time.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from catdog.data.duplicates import perceptual_hash
from catdog.errors import BadImageError

# Images with more pixels than this are skipped (scan) or refused (serve) rather than decoded.
MAX_IMAGE_PIXELS = 40_000_000

# Formats Pillow registers but cannot decode by itself (stubs, or needing outside programs).
_UNDECODABLE = frozenset({"BUFR", "GRIB", "HDF5", "MPEG", "WMF", "EPS"})
# Pillow names some JPEG files after the variant they are (multi-picture files from cameras).
_PILLOW_ALIASES = {"MPO": "JPEG"}
# 16- and 32-bit integer modes, scaled down to 8 bits rather than clipped.
_WIDE_MODES = {"I;16": 257, "I;16L": 257, "I;16B": 257, "I;16N": 257, "I": 257}

ImageSource = str | os.PathLike | bytes

# `warnings.catch_warnings` swaps process-wide state: scanning threads take turns with it.
_WARNINGS_LOCK = threading.Lock()


def _readable_formats() -> dict[str, tuple[str, ...]]:
    """Every format Pillow decodes, with the file name extensions it goes by."""
    Image.init()
    by_format: dict[str, list[str]] = {name: [] for name in Image.OPEN if name not in _UNDECODABLE}
    for extension, name in Image.registered_extensions().items():
        if name in by_format:
            by_format[name].append(extension)
    return {name: tuple(sorted(extensions)) for name, extensions in by_format.items()}


READABLE_FORMATS = _readable_formats()
IMAGE_SUFFIXES = frozenset(suffix for suffixes in READABLE_FORMATS.values() for suffix in suffixes)


@dataclass(frozen=True)
class ImageInfo:
    """What `inspect_image` found: the format read from the content, the size, and if asked
    for, the image's perceptual hash (upright, as decoded)."""

    format: str
    width: int
    height: int
    extension_mismatch: bool = False
    phash: int | None = None


def inspect_image(source: ImageSource, max_pixels: int = MAX_IMAGE_PIXELS, *,
                  fingerprint: bool = False) -> ImageInfo:
    """Check that `source` (a path or the bytes of a file) is an image catdog can use.

    Raises `BadImageError` naming the reason: an empty file, not an image, a format Pillow
    cannot decode, too many pixels (from the header, before anything is decoded), or a
    truncated or corrupt image (found by decoding it completely). `extension_mismatch` is
    true when a path's extension does not match the content (a PNG named `.jpg`); such a
    file is still usable, since decoding goes by content. With `fingerprint`, `phash` is set.
    """
    path = None if isinstance(source, bytes) else os.fspath(source)
    try:
        with _open_source(source) as fp:
            return _inspect(fp, path, max_pixels, fingerprint)
    except BadImageError as e:
        raise BadImageError(e.reason, path) from e
    except OSError as e:
        raise BadImageError(f"cannot be read ({e.strerror or e})", path) from e


def _open_source(source: ImageSource) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")


def _inspect(fp: BinaryIO, path: str | None, max_pixels: int, fingerprint: bool) -> ImageInfo:
    image, fmt = _open(fp, max_pixels)
    width, height = image.size
    # A JPEG decoded at 1/8 scale still reads all of its data, so truncation is still
    # found, faster than by a full decode; other formats ignore the request. The
    # fingerprint needs only 32x32 pixels, so it is taken from the same small decode.
    image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
    _load(image, fmt)
    mismatch = path is not None and Path(path).suffix.lower() not in READABLE_FORMATS[fmt]
    phash = perceptual_hash(_to_rgb(ImageOps.exif_transpose(image))) if fingerprint else None
    return ImageInfo(format=fmt, width=width, height=height, extension_mismatch=mismatch, phash=phash)


def _open(fp: BinaryIO, max_pixels: int) -> tuple[Image.Image, str]:
    """The image with only its header read, and its format, once both are known to be usable."""
    prefix = fp.read(16)
    if not prefix:
        raise BadImageError("empty file")
    fp.seek(0)
    image = _open_header(fp, prefix)
    fmt = _PILLOW_ALIASES.get(image.format, image.format)
    if fmt not in READABLE_FORMATS:
        raise BadImageError(f"unsupported format {fmt} (catdog reads what Pillow decodes itself)")
    width, height = image.size
    if width * height > max_pixels:
        raise BadImageError(f"too large: {width}x{height} pixels exceeds the {max_pixels}-pixel limit")
    return image, fmt


def _load(image: Image.Image, fmt: str) -> None:
    try:
        image.load()
    except Exception as e:  # Pillow's decoders signal bad data with many exception types
        raise BadImageError(f"truncated or corrupt {fmt}") from e


def _open_header(fp: BinaryIO, prefix: bytes) -> Image.Image:
    """`Image.open`, which reads only the header, without Pillow's decompression-bomb warning.

    Pillow warns about images between its limit and twice that (and raises
    `DecompressionBombError` beyond); catdog applies its own limit to the size read here,
    with a clearer message, before anything is decoded.
    """
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fp)
    except Image.DecompressionBombError as e:
        raise BadImageError("too large: more pixels than Pillow decodes safely") from e
    except Exception as e:
        # Pillow could not parse a header; say which format it was meant to be, if any.
        fmt = _format_by_signature(prefix)
        raise BadImageError(f"truncated or corrupt {fmt}" if fmt else "not an image") from e


def _format_by_signature(prefix: bytes) -> str | None:
    """The readable format whose signature `prefix` starts with, using Pillow's own tests."""
    Image.preinit()
    return next((fmt for fmt in ("JPEG", "PNG", "GIF", "BMP") if Image.OPEN[fmt][1](prefix)), None)


def decode(source: ImageSource, image_size: int, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """The (S, S, 3) uint8 pixels of one image (a path or a file's bytes) at S = `image_size`,
    as described in the module docstring. Raises `BadImageError` with the reason
    `inspect_image` would give if it cannot be decoded."""
    path = None if isinstance(source, bytes) else os.fspath(source)
    try:
        with _open_source(source) as fp:
            image, fmt = _open(fp, max_pixels)
            image.draft("RGB", (2 * image_size, 2 * image_size))
            _load(image, fmt)
            image = _to_rgb(ImageOps.exif_transpose(image))
            return np.asarray(image.resize((image_size, image_size), Image.Resampling.BILINEAR))
    except BadImageError as e:
        raise BadImageError(e.reason, path) from e
    except OSError as e:
        raise BadImageError(f"cannot be read ({e.strerror or e})", path) from e


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _WIDE_MODES:
        wide = np.asarray(image, dtype=np.float64) / _WIDE_MODES[image.mode]
        image = Image.fromarray(np.clip(np.rint(wide), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8), "L")
    return image if image.mode == "RGB" else image.convert("RGB")


def load_images(sources: Sequence[ImageSource], image_size: int) -> np.ndarray:
    """Decode images (paths or bytes) into an (N, S, S, 3) float32 array of 0..255 values,
    exactly as the training pipeline does."""
    if not sources:
        return np.zeros((0, image_size, image_size, 3), dtype="float32")
    return np.stack([decode(source, image_size) for source in sources]).astype("float32")


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
