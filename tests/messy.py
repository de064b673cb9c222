"""Messy copies of the reference's real photographs, as users' data sets come: the same photo saved
again (re-encoded, resized, cropped, brightened), labels in a CSV file, classes of a few images,
imbalance, flipped labels. Every test builds its own copies in a temporary folder."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps


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


# Multi-label data: side-by-side pairs ----------------------------------------------------------

# A pair is two tiles side by side, each half of a square image, so that nothing is squeezed.
TILE = (112, 224)
# What each half of a pair shows, with the tag it gives (a backdrop: none).
HALVES = {"cat": "cats", "dog": "dogs", "backdrop": None}


def backdrop(rng, size: tuple[int, int] = TILE) -> Image.Image:
    """An empty textured backdrop, no animal in it: colour noise at a random scale, over a gradient
    in a random direction, with a little grain (each one unlike the others, so that perceptual
    hashes do not take them for copies of one another)."""
    import numpy as np

    width, height = size
    cells = int(rng.integers(3, 16))
    coarse = rng.uniform(0, 255, (2 * cells, cells, 3)).astype("uint8")
    noise = np.asarray(Image.fromarray(coarse).resize(size, Image.BICUBIC), dtype="float32")
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * np.linspace(-1, 1, width)[None, :] + np.sin(angle) * np.linspace(-1, 1, height)[:, None]
    gradient = ramp[..., None] * rng.uniform(40, 120) * rng.choice([-1, 1], 3)
    grain = rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(noise * rng.uniform(0.4, 1.0) + gradient + grain + 40, 0, 255).astype("uint8"))


def tile_of(photo: Path) -> Image.Image:
    """The middle of a photo, at the shape and size of a tile."""
    with Image.open(photo) as image:
        return ImageOps.fit(image.convert("RGB"), TILE)


def pair_of(left: Image.Image, right: Image.Image) -> Image.Image:
    """Two tiles side by side."""
    pair = Image.new("RGB", (2 * TILE[0], TILE[1]))
    pair.paste(left, (0, 0))
    pair.paste(right, (TILE[0], 0))
    return pair


def tag_pairs(reference_data: Path, root: Path, n: int, seed: int = 0, folder: str = "train",
              start: int = 0) -> Path:
    """A Kaggle-style multi-label data set under `root`: `images/<id>.jpg`, each two tiles side by side
    (a cat, a dog or an empty backdrop; a photo is cropped to the tile's middle, from the
    reference's `folder` photos from `start`), and
    `tags.csv` (`ID,TAGS`: ids without extensions, space-separated tags; a pair of backdrops has
    none). Returns the CSV's path."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sources = {"cat": photos(reference_data, "cats", n, start, folder), "dog": photos(reference_data, "dogs", n, start,
                                                                                       folder)}
    used = {"cat": 0, "dog": 0}
    rows = []
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        halves = rng.choice(list(HALVES), size=2)
        tiles = []
        for half in halves:
            if half == "backdrop":
                tiles.append(backdrop(rng))
            else:
                tiles.append(tile_of(sources[half][used[half] % len(sources[half])]))
                used[half] += 1
        pair = pair_of(*tiles)
        image_id = f"pair_{seed}_{i:05d}"
        _save(pair, root / "images" / f"{image_id}.jpg")
        rows.append(f"images/{image_id},{' '.join(sorted({HALVES[h] for h in halves} - {None}))}")
    (root / "tags.csv").write_text("ID,TAGS\n" + "\n".join(rows) + "\n")
    return root / "tags.csv"
