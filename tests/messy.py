"""Messy copies of the reference's real photographs, as users' data sets come: the same photo saved
again (re-encoded, resized, cropped, brightened), labels in a CSV file, classes of a few images,
imbalance, flipped labels. Every test builds its own copies in a temporary folder."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageEnhance


def photos(reference_data: Path, class_name: str, n: int, start: int = 0, folder: str = "train") -> list[Path]:
    """`n` photos of a class of the reference data (sorted by name, from `start`)."""
    return sorted((reference_data / folder / class_name).iterdir())[start:start + n]


def copy(sources: list[Path], folder: Path, names: Callable[[Path], str] = lambda p: p.name) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(source, folder / names(source))) for source in sources]


def _save(image: Image.Image, target: Path, quality: int = 90) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    image.convert("RGB").save(target, "JPEG", quality=quality)
    return target


def reencode(source: Path, target: Path, quality: int = 60) -> Path:
    """The photo saved again at another JPEG quality."""
    with Image.open(source) as image:
        return _save(image, target, quality)


def resize(source: Path, target: Path, scale: float = 0.9) -> Path:
    """The photo resized (90 % by default) and saved again."""
    with Image.open(source) as image:
        size = (round(image.width * scale), round(image.height * scale))
        return _save(image.resize(size, Image.Resampling.BICUBIC), target)


def crop(source: Path, target: Path, share: float = 0.05) -> Path:
    """The photo with `share` of its width and height cut off (half on each side)."""
    with Image.open(source) as image:
        dx, dy = round(image.width * share / 2), round(image.height * share / 2)
        return _save(image.crop((dx, dy, image.width - dx, image.height - dy)), target)


def brighten(source: Path, target: Path, factor: float = 1.2) -> Path:
    with Image.open(source) as image:
        return _save(ImageEnhance.Brightness(image.convert("RGB")).enhance(factor), target)


EDITS = {"reencode": reencode, "resize": resize, "crop": crop}


def jpeg_bytes(path: Path, quality: int = 75) -> bytes:
    with Image.open(path) as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=quality)
        return out.getvalue()
