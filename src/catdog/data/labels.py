"""Labels read from a CSV file beside a folder of images, as data sets from Kaggle and
elsewhere come: `labels.csv` with a header, one row per image::

    path,label                       id,breed
    images/0001.jpg,cats             000bec180eb18c7604dcecc8fe0dba07,boston_bull
    images/0002.jpg,dogs             001513dfcb2ffafc82cccf4d8bbaba97,dingo

Paths are relative to the data folder. An entry without an image extension stands for the one
image file of that name in its folder (Kaggle lists ids, such as `cat.0` for `cat.0.jpg`).
Rows that cannot be used (a file that is not there, an empty label, a file listed twice) and
files of the folder that no row names are reported with their reason, as a scan reports
unusable files.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from catdog.data.images import IMAGE_SUFFIXES
from catdog.errors import CatdogError

PATH_COLUMN = "path"
LABEL_COLUMN = "label"


@dataclass(frozen=True)
class LabelsFile:
    """A CSV file of labels: which columns hold the image's path and its label."""

    path: Path
    path_column: str = PATH_COLUMN
    label_column: str = LABEL_COLUMN


@dataclass
class Labelled:
    """What a labels file says about a data folder: the label of each usable file (relative
    path with `/`), and the entries or files left out, with their reasons."""

    labels: dict[str, str]
    skipped: list[tuple[str, str]]


def read_labels(labels: LabelsFile, root: Path, files: list[str]) -> Labelled:
    """Match the rows of `labels` to `files` (every file under `root`, relative, with `/`).

    Raises `CatdogError` when the file cannot be read or lacks one of its two columns.
    """
    rows = _read_rows(labels)
    by_path = set(files)
    by_stem: dict[str, list[str]] = defaultdict(list)
    for file in files:
        if PurePosixPath(file).suffix.lower() in IMAGE_SUFFIXES:
            by_stem[str(PurePosixPath(file).with_suffix(""))].append(file)

    found: dict[str, str] = {}
    skipped: list[tuple[str, str]] = []
    listed_twice: set[str] = set()
    name = labels.path.name
    for line, entry, label in rows:
        where = f"{name}, line {line}"
        relative = PurePosixPath(entry.replace("\\", "/"))
        if not entry or relative.is_absolute() or ".." in relative.parts:
            skipped.append((entry or f"({where})", f"{where}: not a path inside the data folder"))
            continue
        file, reason = _match(str(relative), by_path, by_stem)
        if reason:
            skipped.append((entry, f"{where}: {reason}"))
        elif not label:
            skipped.append((file, f"{where}: empty label"))
        elif file in found and found[file] != label:
            listed_twice.add(file)
            skipped.append((file, f"{where}: listed again with another label ({found[file]!r}, then {label!r})"))
        else:
            found[file] = label
    for file in sorted(listed_twice):
        del found[file]
    reported = {path for path, _ in skipped} | {_relative_to(labels.path, root)}
    skipped += [(file, f"not listed in {name}") for file in files if file not in found and file not in reported]
    return Labelled(found, skipped)


def _read_rows(labels: LabelsFile) -> list[tuple[int, str, str]]:
    """(line number, path entry, label) of every row, stripped of surrounding spaces."""
    try:
        text = labels.path.read_text(encoding="utf-8-sig")  # a BOM from spreadsheet programs is not a column name
    except FileNotFoundError:
        raise CatdogError(f"labels file {labels.path} does not exist") from None
    except IsADirectoryError:
        raise CatdogError(f"labels file {labels.path} is a folder; give a CSV file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CatdogError(f"labels file {labels.path} cannot be read ({getattr(e, 'strerror', None) or e})") from e
    if labels.path_column == labels.label_column:
        raise CatdogError(f"labels file {labels.path}: column {labels.path_column!r} cannot give both the paths and "
                          "the labels; name two columns (--path-column and --label-column)")
    reader = csv.reader(io.StringIO(text))
    header = [column.strip() for column in next(reader, [])]
    missing = [column for column in (labels.path_column, labels.label_column) if column not in header]
    if missing:
        options = {labels.path_column: "--path-column", labels.label_column: "--label-column"}
        raise CatdogError(
            f"labels file {labels.path} has no column {' or '.join(map(repr, missing))} (its header: "
            f"{', '.join(header) or 'empty'}); name the columns with {' and '.join(options[m] for m in missing)}"
        )
    path_index, label_index = header.index(labels.path_column), header.index(labels.label_column)
    rows = []
    try:
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue  # blank lines, common at the end of hand-edited files
            fields += [""] * (len(header) - len(fields))
            rows.append((reader.line_num, fields[path_index].strip(), fields[label_index].strip()))
    except csv.Error as e:
        raise CatdogError(f"labels file {labels.path}, line {reader.line_num}: {e}") from e
    return rows


def _match(entry: str, paths: set[str], by_stem: dict[str, list[str]]) -> tuple[str, str | None]:
    """The file an entry names and None, or the entry and the reason it names no one file."""
    if entry in paths:
        return entry, None
    if PurePosixPath(entry).suffix.lower() in IMAGE_SUFFIXES:  # not `cat.0`, Kaggle's id of cat.0.jpg
        return entry, "no such file"
    candidates = by_stem.get(entry, [])
    if len(candidates) == 1:
        return candidates[0], None
    if not candidates:
        return entry, "no such file, with or without an extension"
    return entry, f"names {len(candidates)} files ({', '.join(candidates)}); give the extension"


def _relative_to(path: Path, root: Path) -> str | None:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None
