"""Training, validation and test splits, and the manifest that records them.

Splits are made per file, per class (stratified), and deterministically from a seed:
each class's files are put in the order of a hash of (seed, path) and cut into
consecutive runs. The sizes are exact, the same seed always gives the same split on
any machine, a different seed gives a different one, and no file can land in two splits.

- Seed layout: `train/` is the training split; `validation/` is cut 80/20 into
  validation and test (`config.SEED_TEST_FRACTION`), unless a `test/` folder exists,
  which is then used as it is.
- Flat layout: each class is cut into test and validation by
  `config.FLAT_TEST_FRACTION` and `config.FLAT_VALIDATION_FRACTION`; the rest trains.

The manifest is a CSV (`path,class,split`, paths relative to the data folder) so
that any run can be repeated and audited.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from catdog import config, files
from catdog.data.scan import SEED_LAYOUT, Scan
from catdog.errors import CatdogError

TRAIN, VALIDATION, TEST = config.SPLITS
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
        counts = {split: dict.fromkeys(self.class_names, 0) for split in config.SPLITS}
        for row in self.rows:
            counts[row.split][row.class_name] += 1
        return counts

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
    if row.split not in config.SPLITS:
        raise CatdogError(f"{path}, line {line}: unknown split {row.split!r} "
                          f"(expected one of {', '.join(config.SPLITS)})")
    return row


def split(scan: Scan, seed: int = config.SEED) -> Manifest:
    """Assign every image of `scan` to a split, deterministically from `seed`."""
    groups: dict[tuple[str | None, str], list[str]] = defaultdict(list)
    for image in scan.images:
        groups[image.folder, image.class_name].append(image.path)

    has_test_folder = any(folder == TEST for folder, _ in groups)
    rows = []
    for (folder, class_name), paths in groups.items():
        if scan.layout != SEED_LAYOUT:
            fractions = {TEST: config.FLAT_TEST_FRACTION, VALIDATION: config.FLAT_VALIDATION_FRACTION}
            shares = _cut(paths, seed, fractions, rest=TRAIN, label=class_name)
        elif folder == VALIDATION and not has_test_folder:
            shares = _cut(paths, seed, {TEST: config.SEED_TEST_FRACTION}, rest=VALIDATION,
                          label=f"{folder}/{class_name}")
        else:
            shares = {folder: paths}
        rows += [Row(path, class_name, name) for name, share in shares.items() for path in share]

    order = {name: i for i, name in enumerate(config.SPLITS)}
    rows.sort(key=lambda row: (order[row.split], row.class_name, row.path))
    return Manifest(scan.root, rows, list(scan.class_names))


def _cut(paths: list[str], seed: int, fractions: dict[str, float], rest: str, label: str) -> dict[str, list[str]]:
    """Cut `paths` into a share per fraction (at least one file each) and the rest."""
    sizes = {name: max(1, _round_half_up(len(paths) * fraction)) for name, fraction in fractions.items()}
    if sum(sizes.values()) >= len(paths):
        raise CatdogError(
            f"class {label} has only {len(paths)} usable images, too few to split into {', '.join([*sizes, rest])}"
        )
    ordered = sorted(paths, key=lambda path: _hash(seed, path))
    shares, start = {}, 0
    for name, size in sizes.items():
        shares[name] = ordered[start : start + size]
        start += size
    shares[rest] = ordered[start:]
    return shares


def _hash(seed: int, path: str) -> str:
    return hashlib.sha256(f"{seed}:{path}".encode()).hexdigest()


def _round_half_up(x: float) -> int:
    return int(x + 0.5)
