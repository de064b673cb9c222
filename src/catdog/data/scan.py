"""Finding and checking every image of a data set before anything trains on it.

Three layouts are accepted:

- the split layout (the reference tutorial's), told apart by a `train/` folder at the top: `DIR/train/<class>/...`,
  `DIR/validation/<class>/...`, optional `DIR/test/<class>/...`;
- flat: `DIR/<class>/...`, split later by fractions (see `catdog.data.splits`);
- labelled by a CSV file (`labels`, see `catdog.data.labels`): any files under `DIR`,
  each with the class a row of the file gives it, or for a multi-label data set any number of
  tags (`Scan.task`), split like a flat layout.

Class names are the class folders' names (or the labels), sorted, as in
`keras.utils.image_dataset_from_directory`; images may sit in subfolders of a class
folder. Every file is checked with `catdog.data.images.inspect_image`, in parallel and once
while it does not change (catdog.data.scan_cache); those that cannot be used are skipped
with their reason, and problems with the layout itself (a missing
folder, fewer than two classes, an empty class) raise `CatdogError`. `min_images` drops
the classes with fewer usable images, with a warning.

While checking, each image is fingerprinted, and the files that hold the same photo
(see `catdog.data.duplicates`) are gathered into `Scan.duplicates`, so that a split can
keep each group together and report the groups that its folders already put apart.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from catdog import environment
from catdog.data.duplicates import (
    EXACT,
    NEAR,
    NEAR_DUPLICATE_HASH_BITS,
    DuplicateGroup,
    file_digest,
    groups,
    hash_pairs,
)
from catdog.data.images import MAX_IMAGE_PIXELS
from catdog.data.labels import MULTICLASS, MULTILABEL, LabelsFile, read_labels
from catdog.data.scan_cache import check_files
from catdog.errors import CatdogError, ParameterError

# The split layout names its splits by folder; the flat one gives only classes.
SPLIT_LAYOUT = "split"
FLAT_LAYOUT = "flat"
LABELS_LAYOUT = "csv"
# The three splits, in this order everywhere; with the split layout they are also folder names.
TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)
MACOS_METADATA = "__MACOSX"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageFile:
    """A usable image: its path relative to the data folder (with `/`), and its labels: its
    class, or in a multi-label data set its tags (any number, none included).

    `folder` is the split layout's folder it sits in (`train`, `validation` or
    `test`); None in a flat layout.
    """

    path: str
    labels: tuple[str, ...]
    folder: str | None = None
    phash: int | None = field(default=None, compare=False)

    @property
    def class_name(self) -> str:
        """The image's one class (where each image has one)."""
        (name,) = self.labels
        return name


@dataclass
class Scan:
    """Everything found under a data folder. `task`: multiclass (one class per image) or
    multilabel (tags; `class_names` are then the tags)."""

    root: Path
    layout: str
    class_names: list[str]
    images: list[ImageFile]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    warnings: list[str] = field(default_factory=list)
    duplicates: list[DuplicateGroup] = field(default_factory=list)
    task: str = MULTICLASS


def scan(root: str | Path, max_pixels: int = MAX_IMAGE_PIXELS, *, labels: LabelsFile | None = None,
         min_images: int | None = None, find_duplicates: bool = True) -> Scan:
    """Find the classes and images under `root` (class folders, or the files `labels` names)
    and check each image; with `find_duplicates`, group the files that hold the same photo.

    Raises `CatdogError` when the folder is missing, has no classes or only one, when a
    class has no usable image (unless `min_images` drops it), or when the split layout's
    split folders do not hold the same classes.
    """
    root = Path(root)
    if not root.exists():
        raise CatdogError(f"data folder {root} does not exist (pass --data DIR, or set ${environment.ENV_DATA})")
    if not root.is_dir():
        raise CatdogError(f"data folder {root} is a file, not a folder of class folders")
    if min_images is not None and min_images < 1:
        raise ParameterError("min_images", f"{{name}} must be at least 1, got {min_images}")
    found = _Found(root)
    task = MULTICLASS
    if labels is None:
        layout, folders = _find_layout(root)
        classes_by_folder = {folder: found.class_folders(root / folder if folder else root) for folder in folders}
        _check_classes(root, classes_by_folder)
        candidates = [
            (path, (class_name,), folder)
            for folder, class_names_here in classes_by_folder.items()
            for class_name in class_names_here
            for path in found.files(root / (folder or "") / class_name)
        ]
    else:
        layout = LABELS_LAYOUT
        task, candidates = _labelled_candidates(root, labels, found)
        classes_by_folder = {None: sorted({name for _, names, _ in candidates for name in names})}
        _check_labelled_classes(labels, classes_by_folder[None], task)
    results = check_files(root, [path for path, _, _ in candidates], max_pixels, fingerprint=find_duplicates)

    images, warnings = [], []
    for (path, image_labels, folder), result in zip(candidates, results, strict=True):
        relative = found.relative(path)
        if isinstance(result, str):
            found.skipped.append((relative, result))
            continue
        if result.extension_mismatch:
            named = f"named {path.suffix}" if path.suffix else "named without an extension"
            warnings.append(f"{relative}: {named} but the content is {result.format}; read as {result.format}")
        images.append(ImageFile(relative, image_labels, folder, result.phash))

    if min_images is not None:
        images, classes_by_folder = _drop_small_classes(images, classes_by_folder, min_images, warnings, task)
    _check_not_empty(root, classes_by_folder, images, found.skipped, labels)
    class_names = sorted({name for names in classes_by_folder.values() for name in names})
    duplicates = _duplicate_groups(root, images) if find_duplicates else []
    return Scan(root, layout, class_names, images, found.skipped, warnings, duplicates, task)


def _labelled_candidates(root: Path, labels: LabelsFile, found: _Found
                         ) -> tuple[str, list[tuple[Path, tuple[str, ...], None]]]:
    """The task, and (file, labels, no folder) for every file `labels` names; the rest is skipped."""
    files = [found.relative(path) for path in found.files(root)]
    labelled = read_labels(labels, root, files)
    listed = [(entry, reason) for entry, reason in labelled.skipped if not reason.startswith("not listed")]
    if not labelled.labels and listed:
        entry, reason = listed[0]
        raise CatdogError(f"no entry of labels file {labels.path} names a usable file under {root} (the first: "
                          f"{entry}: {reason}); its paths are relative to the data folder")
    logger.info(f"{labels.path.name}: {labelled.reason}")
    found.skipped += labelled.skipped
    return labelled.task, [(root / path, names, None) for path, names in sorted(labelled.labels.items())]


def _fewest_classes(task: str) -> tuple[int, str]:
    """How many classes (tags) a model needs, and the sentence that says so. One tag is enough: the
    model then tells whether an image has it."""
    if task == MULTILABEL:
        return 1, "a multi-label classifier needs at least one tag"
    return 2, "a classifier needs at least two"


def _check_labelled_classes(labels: LabelsFile, class_names: list[str], task: str) -> None:
    fewest, needs = _fewest_classes(task)
    if len(class_names) < fewest:
        kind = "tag" if task == MULTILABEL else "class"
        raise CatdogError(f"labels file {labels.path} gives {len(class_names)} {kind}"
                          f"{'' if len(class_names) == 1 else 'es' if kind == 'class' else 's'} to files of the data "
                          f"folder ({', '.join(class_names) or 'none'}); {needs}")


def _drop_small_classes(images: list[ImageFile], classes_by_folder: dict[str | None, list[str]], min_images: int,
                        warnings: list[str], task: str) -> tuple[list[ImageFile], dict[str | None, list[str]]]:
    """Leave out the classes (tags) with fewer than `min_images` usable images, saying so: an
    image of such a class goes with it; an image keeps its other tags."""
    counts = Counter(name for image in images for name in image.labels)
    all_classes = sorted({name for names in classes_by_folder.values() for name in names})
    small = [name for name in all_classes if counts[name] < min_images]
    for name in small:
        warnings.append(f"class {name} left out: {counts[name]} usable images, fewer than min_images={min_images}")
    fewest, needs = _fewest_classes(task)
    if len(all_classes) - len(small) < fewest:
        raise ParameterError("min_images", f"only {len(all_classes) - len(small)} classes have at least {{name}}="
                                           f"{min_images} usable images; {needs}")
    if task == MULTILABEL:
        kept = [dataclasses.replace(image, labels=tuple(n for n in image.labels if n not in small)) for image in images]
    else:
        kept = [image for image in images if image.class_name not in small]
    return kept, {folder: [n for n in names if n not in small] for folder, names in classes_by_folder.items()}


def _duplicate_groups(root: Path, images: list[ImageFile]) -> list[DuplicateGroup]:
    """The groups of images whose perceptual hashes are within `NEAR_DUPLICATE_HASH_BITS`;
    a group whose files all have the same bytes is `exact`."""
    hashes = [image.phash for image in images]
    found = []
    for members in groups(len(images), hash_pairs(hashes, max_bits=NEAR_DUPLICATE_HASH_BITS)):
        paths = tuple(sorted(images[i].path for i in members))
        digests = {file_digest(root / path) for path in paths}
        found.append(DuplicateGroup(EXACT if len(digests) == 1 else NEAR, paths))
    return found


def _find_layout(root: Path) -> tuple[str, list[str | None]]:
    """The layout, and the folders (relative to `root`) holding class folders."""
    train, validation, test = SPLITS
    if not (root / train).is_dir():
        return FLAT_LAYOUT, [None]
    if not (root / validation).is_dir():
        raise CatdogError(
            f"{root} has a {train}/ folder but no {validation}/ folder: the split layout needs both "
            f"({test}/ is optional); for a flat layout, rename {train}/"
        )
    return SPLIT_LAYOUT, [train, validation] + ([test] if (root / test).is_dir() else [])


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
            raise CatdogError(f"{folder} cannot be read ({e.strerror or e})") from e
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


def _check_classes(root: Path, classes_by_folder: dict[str | None, list[str]]) -> None:
    """Check that every folder holds the same two or more classes."""
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


def _check_not_empty(
    root: Path,
    classes_by_folder: dict[str | None, list[str]],
    images: list[ImageFile],
    skipped: list[tuple[str, str]],
    labels: LabelsFile | None,
) -> None:
    counts = Counter((image.folder, name) for image in images for name in image.labels)
    for folder, class_names in classes_by_folder.items():
        for class_name in class_names:
            if counts[folder, class_name]:
                continue
            if labels is not None:
                raise ParameterError("min_images", f"class {class_name} of {labels.path} has no usable images (the "
                                                   "skipped files say why); leave such classes out with {name}")
            class_folder = Path(folder or "", class_name)
            n_skipped = sum(Path(path).is_relative_to(class_folder) for path, _ in skipped)
            raise CatdogError(f"class folder {root / class_folder} has no usable images ({n_skipped} files skipped)")
