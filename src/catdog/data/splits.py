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

A multi-label data set (each image any number of tags) is cut by iterative stratification
(Sechidis, Tsoumakas and Vlahavas, "On the Stratification of Multi-Label Data", 2011): the
rarest tag first, each of its units goes to the split that still wants most of that tag (then
most images), so that every split gets its share of every tag, and at least one image of each
tag that has three. Images without tags then fill the splits to their sizes.

The manifest is a CSV (`path,class,split`, paths relative to the data folder; for a multi-label
data set `path,labels,split`, the labels of a row a JSON list) so that any run can be repeated
and audited.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from catdog import defaults, files
from catdog.data.duplicates import DuplicateGroup
from catdog.data.labels import MULTICLASS, MULTILABEL
from catdog.data.scan import SPLIT_LAYOUT, SPLITS, TEST, TRAIN, VALIDATION, Scan
from catdog.errors import CatdogError

__all__ = ["SPLITS", "TEST", "TRAIN", "VALIDATION", "Manifest", "crossing", "split"]

# The split layout keeps train/ for training and cuts validation/ into validation and test.
VALIDATION_TEST_FRACTION = 0.2
# A flat folder of class folders is cut by these fractions (the rest is training).
FLAT_VALIDATION_FRACTION = 0.15
FLAT_TEST_FRACTION = 0.15
HEADER = ("path", "class", "split")
MULTILABEL_HEADER = ("path", "labels", "split")


def _is_manifest(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return tuple(next(csv.reader(f), ())) in (HEADER, MULTILABEL_HEADER)
    except (OSError, UnicodeDecodeError, csv.Error):
        return False


MANIFEST_KIND = files.Kind(f"a catdog manifest (a CSV file starting {','.join(HEADER)})", _is_manifest)


@dataclass(frozen=True)
class Row:
    path: str  # relative to the data folder, with `/`
    labels: tuple[str, ...]  # its class, or its tags (multi-label)
    split: str

    @property
    def class_name(self) -> str:
        (name,) = self.labels
        return name


@dataclass
class Manifest:
    """Which file is in which split, for a data folder `root`; `task`: multiclass or multilabel."""

    root: Path
    rows: list[Row]
    class_names: list[str]
    task: str = MULTICLASS

    def files(self, split: str) -> tuple[list[str], np.ndarray]:
        """The absolute paths of `split`'s files and their labels: class indices (int32), or for a
        multi-label task one row of 0s and 1s per file, a column per tag (float32)."""
        rows = [row for row in self.rows if row.split == split]
        paths = [str(self.root / row.path) for row in rows]
        return paths, self.encode([row.labels for row in rows])

    def encode(self, labels: list[tuple[str, ...]]) -> np.ndarray:
        """Labels as the model trains on them (see `files`)."""
        index = {name: i for i, name in enumerate(self.class_names)}
        if self.task == MULTICLASS:
            return np.array([index[name] for (name,) in labels], dtype="int32")
        encoded = np.zeros((len(labels), len(self.class_names)), dtype="float32")
        for i, names in enumerate(labels):
            encoded[i, [index[name] for name in names]] = 1.0
        return encoded

    def counts(self) -> dict[str, dict[str, int]]:
        """Image counts per split and class (tag), zeros included: `{"train": {"cats": 999, ...}, ...}`."""
        counts = {split: dict.fromkeys(self.class_names, 0) for split in SPLITS}
        for row in self.rows:
            for name in row.labels:
                counts[row.split][name] += 1
        return counts

    def missing(self) -> dict[str, list[str]]:
        """The classes with no image in validation and in test: `{"validation": [...], "test": [...]}`."""
        counts = self.counts()
        return {split: [name for name, n in counts[split].items() if not n] for split in (VALIDATION, TEST)}

    def write(self, path: str | Path) -> Path:
        """Write the manifest as CSV (atomically), over nothing but an earlier manifest."""
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        if self.task == MULTILABEL:
            writer.writerow(MULTILABEL_HEADER)
            writer.writerows((row.path, json.dumps(list(row.labels)), row.split) for row in self.rows)
        else:
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
        header = tuple(next(reader, ()))
        if header not in (HEADER, MULTILABEL_HEADER):
            raise CatdogError(f"{path} is not a catdog manifest: its first line must be {','.join(HEADER)} (or "
                              f"{','.join(MULTILABEL_HEADER)})")
        task = MULTILABEL if header == MULTILABEL_HEADER else MULTICLASS
        rows = [_parse_row(path, reader.line_num, fields, task) for fields in reader]
        class_names = sorted({name for row in rows for name in row.labels})
        if len(class_names) < (1 if task == MULTILABEL else 2):
            raise CatdogError(f"manifest {path} lists {len(class_names)} classes; a classifier needs at least two")
        return cls(Path(root), rows, class_names, task)


def _parse_row(path: str | Path, line: int, fields: list[str], task: str) -> Row:
    if len(fields) != len(HEADER):
        raise CatdogError(f"{path}, line {line}: expected {len(HEADER)} fields ({','.join(HEADER)}), "
                          f"found {len(fields)}")
    file, labels, split_name = fields
    if task == MULTILABEL:
        try:
            labels = json.loads(labels)
            if not (isinstance(labels, list) and all(isinstance(name, str) and name for name in labels)):
                raise ValueError
        except ValueError as e:
            raise CatdogError(f"{path}, line {line}: the labels must be a JSON list of tags, "
                              f"found {fields[1]!r}") from e
        row = Row(file, tuple(labels), split_name)
    else:
        row = Row(file, (labels,), split_name)
    relative = PurePosixPath(row.path)
    if not row.path or relative.is_absolute() or ".." in relative.parts:
        raise CatdogError(f"{path}, line {line}: {row.path!r} is not a path inside the data folder")
    if row.split not in SPLITS:
        raise CatdogError(f"{path}, line {line}: unknown split {row.split!r} "
                          f"(expected one of {', '.join(SPLITS)})")
    return row


def split(scan: Scan, seed: int = defaults.SEED) -> Manifest:
    """Assign every image of `scan` to a split, deterministically from `seed`."""
    if scan.task == MULTILABEL:
        return _split_multilabel(scan, seed)
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
        rows += [Row(path, (class_name,), name) for name, share in shares.items() for path, class_name in share]

    order = {name: i for i, name in enumerate(SPLITS)}
    rows.sort(key=lambda row: (order[row.split], row.labels, row.path))
    return Manifest(scan.root, rows, list(scan.class_names))


def _split_multilabel(scan: Scan, seed: int) -> Manifest:
    """Iterative stratification of a multi-label data set (see the module's docstring)."""
    image_of = {image.path: image for image in scan.images}
    grouped = {path for group in scan.duplicates for path in group.paths}
    units = [list(group.paths) for group in scan.duplicates]
    units += [[image.path] for image in scan.images if image.path not in grouped]
    units.sort(key=lambda unit: _hash(seed, unit[0]))
    tags = [sorted({name for path in unit for name in image_of[path].labels}) for unit in units]
    fractions = {TEST: FLAT_TEST_FRACTION, VALIDATION: FLAT_VALIDATION_FRACTION}
    order = [TEST, VALIDATION, TRAIN]
    # How many images of each tag each split wants, and how many images in all.
    counts = Counter(name for image in scan.images for name in image.labels)
    wanted = {name: dict(zip(order, _shares(n, fractions), strict=True)) for name, n in counts.items()}
    room = dict(zip(order, _shares(len(scan.images), fractions, at_least_one=False), strict=True))
    assigned: dict[int, str] = {}

    def put(i: int, into: str) -> None:
        assigned[i] = into
        room[into] -= len(units[i])
        for name in tags[i]:
            wanted[name][into] -= 1

    while len(assigned) < len(units):
        left = Counter(name for i, unit_tags in enumerate(tags) if i not in assigned for name in unit_tags)
        if not left:
            break
        rarest = min(left, key=lambda name: (left[name], name))
        for i in (i for i, unit_tags in enumerate(tags) if i not in assigned and rarest in unit_tags):
            put(i, max(order, key=lambda s: (wanted[rarest][s], room[s], -order.index(s))))
    for i in range(len(units)):  # images without tags
        if i not in assigned:
            put(i, max(order, key=lambda s: (room[s], -order.index(s))))
    rows = [Row(path, image_of[path].labels, assigned[i]) for i, unit in enumerate(units) for path in unit]
    rows.sort(key=lambda row: (SPLITS.index(row.split), row.path))
    return Manifest(scan.root, rows, list(scan.class_names), MULTILABEL)


def _shares(n: int, fractions: dict[str, float], at_least_one: bool = True) -> list[int]:
    """How many of `n` each held-out split of `fractions` wants (see `_sizes`), then training the rest."""
    sizes = _sizes(n, fractions) if at_least_one else {name: _round_half_up(n * f) for name, f in fractions.items()}
    return [*sizes.values(), n - sum(sizes.values())]


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
