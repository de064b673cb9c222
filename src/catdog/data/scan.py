"""Finding and checking every image of a data set before anything trains on it.

Two layouts are accepted, told apart by a `train/` folder at the top:

- the seed's: `DIR/train/<class>/...`, `DIR/validation/<class>/...`, optional `DIR/test/<class>/...`;
- flat: `DIR/<class>/...`, split later by fractions (see `catdog.splits`).

Class names are the class folders' names, sorted, as in
`keras.utils.image_dataset_from_directory`; images may sit in subfolders of a class
folder. Every file is checked with `catdog.data.images.inspect_image`, in parallel and once
while it does not change (catdog.data.scan_cache); those that cannot be used are skipped
with their reason, and problems with the layout itself (a missing folder, fewer than two
classes, an empty class) raise `CatdogError`.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from catdog import config
from catdog.data.scan_cache import check_files
from catdog.errors import CatdogError

SEED_LAYOUT = "seed"
FLAT_LAYOUT = "flat"
MACOS_METADATA = "__MACOSX"


@dataclass(frozen=True)
class ImageFile:
    """A usable image: its path relative to the data folder (with `/`), and its class.

    `folder` is the seed layout's split folder it sits in (`train`, `validation` or
    `test`); None in a flat layout.
    """

    path: str
    class_name: str
    folder: str | None = None


@dataclass
class Scan:
    """Everything found under a data folder."""

    root: Path
    layout: str
    class_names: list[str]
    images: list[ImageFile]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    warnings: list[str] = field(default_factory=list)


def scan(root: str | Path, max_pixels: int = config.MAX_IMAGE_PIXELS) -> Scan:
    """Find the class folders and images under `root` and check each image.

    Raises `CatdogError` when the folder is missing, has no class folders or only
    one, when a class has no usable image, or when the seed layout's split folders
    do not hold the same classes.
    """
    root = Path(root)
    if not root.exists():
        raise CatdogError(f"data folder {root} does not exist (pass --data DIR, or set ${config.ENV_DATA})")
    if not root.is_dir():
        raise CatdogError(f"data folder {root} is a file, not a folder of class folders")
    layout, folders = _find_layout(root)
    found = _Found(root)
    classes_by_folder = {folder: found.class_folders(root / folder if folder else root) for folder in folders}
    class_names = _check_classes(root, classes_by_folder)

    candidates = [
        (path, class_name, folder)
        for folder, class_names_here in classes_by_folder.items()
        for class_name in class_names_here
        for path in found.files(root / (folder or "") / class_name)
    ]
    results = check_files(root, [path for path, _, _ in candidates], max_pixels)

    images, warnings = [], []
    for (path, class_name, folder), result in zip(candidates, results, strict=True):
        relative = found.relative(path)
        if isinstance(result, str):
            found.skipped.append((relative, result))
            continue
        if result.extension_mismatch:
            named = f"named {path.suffix}" if path.suffix else "named without an extension"
            warnings.append(f"{relative}: {named} but the content is {result.format}; read as {result.format}")
        images.append(ImageFile(relative, class_name, folder))

    _check_not_empty(root, classes_by_folder, images, found.skipped)
    return Scan(root, layout, class_names, images, found.skipped, warnings)


def _find_layout(root: Path) -> tuple[str, list[str | None]]:
    """The layout, and the folders (relative to `root`) holding class folders."""
    train, validation, test = config.SPLITS
    if not (root / train).is_dir():
        return FLAT_LAYOUT, [None]
    if not (root / validation).is_dir():
        raise CatdogError(
            f"{root} has a {train}/ folder but no {validation}/ folder: the seed layout needs both "
            f"({test}/ is optional); for a flat layout, rename {train}/"
        )
    return SEED_LAYOUT, [train, validation] + ([test] if (root / test).is_dir() else [])


class _Found:
    """Walks the folders of one scan, noting what it skips on the way."""

    def __init__(self, root: Path):
        self.root = root
        self.skipped: list[tuple[str, str]] = []

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def class_folders(self, folder: Path) -> list[str]:
        """The sorted class folders of `folder`; loose files and hidden folders there are skipped."""
        try:
            entries = sorted(folder.iterdir())
        except OSError as e:
            raise CatdogError(f"{folder} cannot be read ({e.strerror or e})") from None
        names = []
        for entry in entries:
            if reason := _hidden(entry.name):
                self.skipped.append((self.relative(entry), reason))
            elif entry.is_dir():
                names.append(entry.name)
            else:
                self.skipped.append((self.relative(entry), "not inside a class folder"))
        return names

    def files(self, class_folder: Path) -> list[Path]:
        """Every file under `class_folder` and its subfolders, except hidden ones, in sorted order.
        A subfolder that cannot be read is skipped with its reason, not left out silently."""
        paths = []

        def unreadable(error: OSError) -> None:
            self.skipped.append((self.relative(Path(error.filename)), f"cannot be read ({error.strerror or error})"))

        for folder, dirs, files in os.walk(class_folder, onerror=unreadable):
            folder = Path(folder)
            for name in dirs:
                if reason := _hidden(name):
                    self.skipped.append((self.relative(folder / name), f"{reason} folder"))
                elif (folder / name).is_symlink():  # not followed: a link can lead in a circle
                    self.skipped.append((self.relative(folder / name), "a link to a folder (not followed)"))
            dirs[:] = sorted(d for d in dirs if not _hidden(d) and not (folder / d).is_symlink())
            for name in sorted(files):
                if name.startswith("."):
                    self.skipped.append((self.relative(folder / name), "hidden file"))
                else:
                    paths.append(folder / name)
        return paths


def _hidden(name: str) -> str | None:
    """Why a folder entry is not part of the data set by its name alone: hidden, or the
    metadata folder macOS puts into zip archives."""
    if name.startswith("."):
        return "hidden"
    if name == MACOS_METADATA:
        return "macOS archive metadata"
    return None


def _check_classes(root: Path, classes_by_folder: dict[str | None, list[str]]) -> list[str]:
    """The class names, once every folder is known to hold the same two or more classes."""
    (first, class_names), *others = classes_by_folder.items()
    first_folder = root / (first or "")
    if not class_names:
        raise CatdogError(
            f"{first_folder} has no class folders: put each class's images in a subfolder named after the class"
        )
    if len(class_names) == 1:
        raise CatdogError(f"{first_folder} has only one class folder ({class_names[0]}); "
                          "a classifier needs at least two")
    for folder, names in others:
        if names != class_names:
            raise CatdogError(
                f"{root / folder} has class folders {names} but {first_folder} has {class_names}; they must match"
            )
    return class_names


def _check_not_empty(
    root: Path,
    classes_by_folder: dict[str | None, list[str]],
    images: list[ImageFile],
    skipped: list[tuple[str, str]],
) -> None:
    counts = Counter((image.folder, image.class_name) for image in images)
    for folder, class_names in classes_by_folder.items():
        for class_name in class_names:
            if not counts[folder, class_name]:
                class_folder = Path(folder or "", class_name)
                n_skipped = sum(Path(path).is_relative_to(class_folder) for path, _ in skipped)
                raise CatdogError(
                    f"class folder {root / class_folder} has no usable images ({n_skipped} files skipped)"
                )
