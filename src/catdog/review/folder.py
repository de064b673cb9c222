"""The review folder: what it reviews, and what it keeps.

A review folder holds::

    review.json        what is reviewed: the data folder (and its labels file), or a pool and a run
    decisions.jsonl    every decision, appended as it is made (catdog.review.decisions)
    audit/             the audit the review ran itself, when none was given (audit.json, audit.html)
    predictions.json   for a pool: the run's predictions for its images
    reviewed.csv       the labels the page's Export button writes
    .catdog.lock       held (flock) by the one process writing the review

A folder is opened for the review it was made for, or made new (in a new or empty
folder): a review of something else is a one-line error, so decisions never mix. The
images themselves are only ever read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from catdog import files
from catdog.errors import CatdogError, ParameterError
from catdog.runs.folder import LOCK_FILE, RUNS_DIR, read_json

REVIEW_FILE = "review.json"
AUDIT_DIR = "audit"
PREDICTIONS_FILE = "predictions.json"
EXPORT_FILE = "reviewed.csv"


def default_folder(reviewed: str | os.PathLike) -> Path:
    """`runs/review-<name of the reviewed folder>`: the same folder again next time, to resume."""
    return RUNS_DIR / f"review-{Path(os.path.abspath(reviewed)).name}"


def open_folder(path: str | os.PathLike, subject: dict[str, Any]) -> Path:
    """The review folder at `path` for `subject` (what is reviewed: absolute paths by role),
    made if it is new or empty; a `CatdogError` if it is something else's."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ParameterError("out", f"{{name}}: {path} is a file; give a folder for the review")
    recorded = path / REVIEW_FILE
    if recorded.is_file():
        found = read_json(recorded)
        if found != subject:
            what = ", ".join(f"{role} {value}" for role, value in found.items() if value) if isinstance(
                found, dict) else "something else"
            raise CatdogError(f"{path} is the review of {what}; give another --out for this one")
        return path
    if path.is_dir() and any(entry.name != LOCK_FILE for entry in path.iterdir()):
        raise ParameterError("out", f"{{name}}: {path} is not empty and is not a catdog review folder; "
                                    "give a new or empty folder")
    files.write_json(recorded, subject)
    return path

