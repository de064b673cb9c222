"""Labels read from a CSV file beside a folder of images, as data sets from Kaggle and
elsewhere come: `labels.csv` with a header, one row per image::

    path,label                       id,breed                                 image_name,tags
    images/0001.jpg,cats             000bec180eb18c7604dcecc8fe0dba07,dingo   train_0,cats dogs
    images/0002.jpg,dogs             001513dfcb2ffafc82cccf4d8bbaba97,pug     train_1,

Paths are relative to the data folder. An entry without an image extension stands for the one
image file of that name in its folder (Kaggle lists ids, such as `cat.0` for `cat.0.jpg`). A
label cell may hold several labels separated by the file's `delimiter` (a space by default,
Kaggle's convention): the data set is then multi-label, each image having any number of tags, an
empty cell none (`task`: "auto" tells which from the rows, and says so; "multiclass" refuses a row
with several labels, "multilabel" reads every file so). Rows that cannot be used (a file that is
not there, an empty label where each image has one class, a file listed twice) and files of the
folder that no row names are reported with their reason, as a scan reports unusable files.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from catdog.data.images import IMAGE_SUFFIXES
from catdog.errors import CatdogError, ParameterError

PATH_COLUMN = "path"
LABEL_COLUMN = "label"
DELIMITER = " "
# What a data set asks of a classifier: one class per image, or any number of tags (none included).
MULTICLASS, MULTILABEL, AUTO = "multiclass", "multilabel", "auto"
TASKS = (AUTO, MULTICLASS, MULTILABEL)


@dataclass(frozen=True)
class LabelsFile:
    """A CSV file of labels: which columns hold the image's path and its labels, what separates
    the labels of one cell, and the task (`TASKS`; "auto": multi-label if a row has several)."""

    path: Path
    path_column: str = PATH_COLUMN
    label_column: str = LABEL_COLUMN
    delimiter: str = DELIMITER
    task: str = AUTO


@dataclass
class Labelled:
    """What a labels file says about a data folder: the labels of each usable file (relative
    path with `/`; one, or for a multi-label task any number), the entries or files left out,
    with their reasons, the task, and why it is that task."""

    labels: dict[str, tuple[str, ...]]
    skipped: list[tuple[str, str]]
    task: str = MULTICLASS
    reason: str = ""


def read_labels(labels: LabelsFile, root: Path, files: list[str]) -> Labelled:
    """Match the rows of `labels` to `files` (every file under `root`, relative, with `/`).

    Raises `CatdogError` when the file cannot be read or lacks one of its two columns.
    """
    check_labels_file(labels)
    rows = [(line, entry, split_labels(cell, labels.delimiter)) for line, entry, cell in _read_rows(labels)]
    task, reason = _task(labels, rows)
    by_path = set(files)
    by_stem: dict[str, list[str]] = defaultdict(list)
    for file in files:
        if PurePosixPath(file).suffix.lower() in IMAGE_SUFFIXES:
            by_stem[str(PurePosixPath(file).with_suffix(""))].append(file)

    found: dict[str, tuple[str, ...]] = {}
    skipped: list[tuple[str, str]] = []
    listed_twice: set[str] = set()
    name = labels.path.name
    for line, entry, cell in rows:
        where = f"{name}, line {line}"
        relative = PurePosixPath(entry.replace("\\", "/"))
        if not entry or relative.is_absolute() or ".." in relative.parts:
            skipped.append((entry or f"({where})", f"{where}: not a path inside the data folder"))
            continue
        file, problem = _match(str(relative), by_path, by_stem)
        if problem:
            skipped.append((entry, f"{where}: {problem}"))
        elif task == MULTICLASS and not cell:
            skipped.append((file, f"{where}: empty label"))
        elif task == MULTICLASS and len(cell) > 1:
            skipped.append((file, f"{where}: {len(cell)} labels ({', '.join(cell)}) where each image has one class; "
                                  "if a class name holds the delimiter, give another (--label-delimiter)"))
        elif file in found and found[file] != cell:
            listed_twice.add(file)
            skipped.append((file, f"{where}: listed again with other labels ({_shown(found[file])}, then "
                                  f"{_shown(cell)})"))
        else:
            found[file] = cell
    for file in sorted(listed_twice):
        del found[file]
    reported = {path for path, _ in skipped} | {_relative_to(labels.path, root)}
    skipped += [(file, f"not listed in {name}") for file in files if file not in found and file not in reported]
    return Labelled(found, skipped, task, reason)


def check_labels_file(labels: LabelsFile) -> None:
    """Refuse settings of a labels file that cannot work (`ParameterError` naming the setting)."""
    if labels.task not in TASKS:
        raise ParameterError("task", f"unknown {{name}} {labels.task!r}; choose one of: {', '.join(TASKS)}")
    if not labels.delimiter or "\n" in labels.delimiter or "\r" in labels.delimiter:
        raise ParameterError("label_delimiter", f"{{name}} must be a character that separates labels inside a cell, "
                                                f"not {labels.delimiter!r} (a space, | and ; are common)")
    if labels.path_column == labels.label_column:
        raise ParameterError("label_column", f"{{name}} {labels.label_column!r} is also the path column: one column "
                                             "cannot give both the paths and the labels; name the column of the labels")


def split_labels(cell: str, delimiter: str = DELIMITER) -> tuple[str, ...]:
    """The labels of one cell: split by `delimiter`, stripped, without empty ones or repeats, sorted."""
    return tuple(sorted({label.strip() for label in cell.split(delimiter) if label.strip()}))


def _task(labels: LabelsFile, rows: list[tuple[int, str, tuple[str, ...]]]) -> tuple[str, str]:
    """The task of a labels file, and why: as asked, or for "auto", multi-label if a row has several labels."""
    if labels.task != AUTO:
        return labels.task, f"{labels.task}, as asked"
    several = [cell for _, _, cell in rows if len(cell) > 1]
    if several:
        return MULTILABEL, (f"multi-label: {len(several)} of {len(rows)} rows have several labels separated by "
                            f"{labels.delimiter!r} (the first: {_shown(several[0])}); for one class per image whose "
                            "names hold that character, give --task multiclass with another --label-delimiter")
    return MULTICLASS, "one class per image: no row has several labels"


def _shown(labels: tuple[str, ...]) -> str:
    return " ".join(labels) if labels else "none"


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
