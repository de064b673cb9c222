"""Training, validation and test splits, and the manifest that records them.

Splits are made per file, per class (stratified), and deterministically from a seed:
each class's files are put in the order of a hash of (seed, path) and cut into
consecutive runs. The sizes are exact, the same seed always gives the same split on
any machine, a different seed gives a different one, and no file can land in two splits.

- Split layout: `train/` is the training split; `validation/` is cut 80/20 into
  validation and test (`VALIDATION_TEST_FRACTION`), unless a `test/` folder exists,
  which is then used as it is.
- Flat layout, or labels from a CSV file: each class is cut into test and validation by
  `FLAT_TEST_FRACTION` and `FLAT_VALIDATION_FRACTION`; the rest trains.

A held-out share is its fraction of the class, rounded, and at least one image, as long
as training keeps one: a class too small for three splits trains first, and test, then
validation, give up their image (`Manifest.missing` lists the classes a split lacks).
The files of one duplicate group (the same photo twice, `Scan.duplicates`) are cut as one
unit, so that they land in one split; where the split layout's folders already put them
apart, `crossing` reports them.

The manifest is a CSV (`path,class,split`, paths relative to the data folder) so
that any run can be repeated and audited.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from catdog import defaults, files
from catdog.data.duplicates import DuplicateGroup
from catdog.data.scan import SPLIT_LAYOUT, SPLITS, TEST, TRAIN, VALIDATION, Scan
from catdog.errors import CatdogError

__all__ = ["SPLITS", "TEST", "TRAIN", "VALIDATION", "Manifest", "crossing", "split"]

# The split layout keeps train/ for training and cuts validation/ into validation and test.
VALIDATION_TEST_FRACTION = 0.2
# A flat folder of class folders is cut by these fractions (the rest is training).
FLAT_VALIDATION_FRACTION = 0.15
FLAT_TEST_FRACTION = 0.15
HEADER = ("path", "class", "split")


def _is_manifest(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return tuple(next(csv.reader(f), ())) == HEADER
    except (OSError, UnicodeDecodeError, csv.Error):
        return False


MANIFEST_KIND = files.Kind(f"a catdog manifest (a CSV file starting {','.join(HEADER)})", _is_manifest)


@dataclass(frozen=True)
class Row:
    path: str  # relative to the data folder, with `/`
    class_name: str
    split: str


@dataclass
class Manifest:
    """Which file is in which split, for a data folder `root`."""

    root: Path
    rows: list[Row]
    class_names: list[str]

    def files(self, split: str) -> tuple[list[str], np.ndarray]:
        """The absolute paths of `split`'s files and their class indices (int32)."""
        rows = [row for row in self.rows if row.split == split]
        index = {name: i for i, name in enumerate(self.class_names)}
        paths = [str(self.root / row.path) for row in rows]
        return paths, np.array([index[row.class_name] for row in rows], dtype="int32")

    def counts(self) -> dict[str, dict[str, int]]:
        """Image counts per split and class, zeros included: `{"train": {"cats": 999, ...}, ...}`."""
        counts = {split: dict.fromkeys(self.class_names, 0) for split in SPLITS}
        for row in self.rows:
            counts[row.split][row.class_name] += 1
        return counts

    def missing(self) -> dict[str, list[str]]:
        """The classes with no image in validation and in test: `{"validation": [...], "test": [...]}`."""
        counts = self.counts()
        return {split: [name for name, n in counts[split].items() if not n] for split in (VALIDATION, TEST)}

    def write(self, path: str | Path) -> Path:
        """Write the manifest as CSV (atomically), over nothing but an earlier manifest."""
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows((row.path, row.class_name, row.split) for row in self.rows)
        return files.write_text(path, text.getvalue(), MANIFEST_KIND)

    @classmethod
    def read(cls, path: str | Path, root: str | Path) -> Manifest:
        """Read a manifest written by `write`, for the data folder `root`."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CatdogError(f"manifest {path} does not exist") from None
        return cls.parse(text, root, path)

    @classmethod
    def parse(cls, text: str, root: str | Path, path: str | Path = "manifest") -> Manifest:
        """A manifest from its text (`path` names it in errors)."""
        reader = csv.reader(io.StringIO(text))
        if tuple(next(reader, ())) != HEADER:
            raise CatdogError(f"{path} is not a catdog manifest: its first line must be {','.join(HEADER)}")
        rows = [_parse_row(path, reader.line_num, fields) for fields in reader]
        class_names = sorted({row.class_name for row in rows})
        if len(class_names) < 2:
            raise CatdogError(f"manifest {path} lists {len(class_names)} classes; a classifier needs at least two")
        return cls(Path(root), rows, class_names)


def _parse_row(path: str | Path, line: int, fields: list[str]) -> Row:
    if len(fields) != len(HEADER):
        raise CatdogError(f"{path}, line {line}: expected {len(HEADER)} fields ({','.join(HEADER)}), "
                          f"found {len(fields)}")
    row = Row(*fields)
    relative = PurePosixPath(row.path)
    if not row.path or relative.is_absolute() or ".." in relative.parts:
        raise CatdogError(f"{path}, line {line}: {row.path!r} is not a path inside the data folder")
    if row.split not in SPLITS:
        raise CatdogError(f"{path}, line {line}: unknown split {row.split!r} "
                          f"(expected one of {', '.join(SPLITS)})")
    return row


def split(scan: Scan, seed: int = defaults.SEED) -> Manifest:
    """Assign every image of `scan` to a split, deterministically from `seed`."""
    units = _units(scan)
    has_test_folder = TEST in units
    rows = []
    for folder, by_class in units.items():
        if scan.layout != SPLIT_LAYOUT:
            fractions = {TEST: FLAT_TEST_FRACTION, VALIDATION: FLAT_VALIDATION_FRACTION}
            shares = _cut(by_class, seed, fractions, rest=TRAIN)
        elif folder == VALIDATION and not has_test_folder:
            shares = _cut(by_class, seed, {TEST: VALIDATION_TEST_FRACTION}, rest=VALIDATION)
        else:
            shares = {folder: [file for class_units in by_class.values() for unit in class_units for file in unit]}
        rows += [Row(path, class_name, name) for name, share in shares.items() for path, class_name in share]

    order = {name: i for i, name in enumerate(SPLITS)}
    rows.sort(key=lambda row: (order[row.split], row.class_name, row.path))
    return Manifest(scan.root, rows, list(scan.class_names))


Unit = list[tuple[str, str]]  # files (path, class) that go to one split together


def _units(scan: Scan) -> dict[str | None, dict[str, list[Unit]]]:
    """The units to cut, by folder and class: each file alone, except that the files of a
    duplicate group within one folder form one unit, cut with the class of its first file."""
    image_of = {image.path: image for image in scan.images}
    units: dict[str | None, dict[str, list[Unit]]] = defaultdict(lambda: defaultdict(list))
    grouped = set()
    for group in scan.duplicates:
        by_folder: dict[str | None, Unit] = defaultdict(list)
        for path in group.paths:
            by_folder[image_of[path].folder].append((path, image_of[path].class_name))
        for folder, unit in by_folder.items():
            units[folder][unit[0][1]].append(unit)
        grouped.update(group.paths)
    for image in scan.images:
        if image.path not in grouped:
            units[image.folder][image.class_name].append([(image.path, image.class_name)])
    return units


def _cut(by_class: dict[str, list[Unit]], seed: int, fractions: dict[str, float], rest: str) -> dict[str, Unit]:
    """Cut one folder's units into a share per fraction and the rest. Each class's units, in
    the order of their first file's hash, go to the first share with room for them (for every
    class they hold: a group may hold files of two classes), else to the rest."""
    counts = Counter(class_name for units in by_class.values() for unit in units for _, class_name in unit)
    sizes = {class_name: _sizes(n, fractions) for class_name, n in counts.items()}
    taken: Counter[tuple[str, str]] = Counter()
    shares: dict[str, Unit] = {name: [] for name in [*fractions, rest]}
    for class_name in sorted(by_class):
        for unit in sorted(by_class[class_name], key=lambda unit: _hash(seed, unit[0][0])):
            need = Counter(name for _, name in unit)
            share = next((name for name in fractions
                          if all(taken[c, name] + k <= sizes[c][name] for c, k in need.items())), rest)
            shares[share] += unit
            taken.update({(c, share): k for c, k in need.items()})
    return shares


def _sizes(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Each share's size: its fraction of `n`, rounded, and at least 1, as long as one image is
    left for the rest; where there are too few, the shares give up images in their order."""
    sizes = {name: max(1, _round_half_up(n * fraction)) for name, fraction in fractions.items()}
    for name in sizes:
        sizes[name] -= min(sizes[name], max(0, sum(sizes.values()) - (n - 1)))
    return sizes


def crossing(manifest: Manifest, duplicates: list[DuplicateGroup]) -> list[tuple[DuplicateGroup, list[str]]]:
    """The duplicate groups whose files are in more than one split, with each file's split
    (train/ and validation/ of the split layout hold the same photo, say): each is a leak."""
    split_of = {row.path: row.split for row in manifest.rows}
    found = []
    for group in duplicates:
        splits = [split_of.get(path) for path in group.paths]
        if len({s for s in splits if s is not None}) > 1:
            found.append((group, splits))
    return found


def _hash(seed: int, path: str) -> str:
    return hashlib.sha256(f"{seed}:{path}".encode()).hexdigest()


def _round_half_up(x: float) -> int:
    return int(x + 0.5)
