"""The decisions file: every review decision, appended as it is made (`decisions.jsonl`).

One JSON object per line, never rewritten::

    {"seq": 3, "time": "2026-12-04T17:02:11+00:00", "who": "alice", "source": "page",
     "action": "change", "item": "label:cats/dog.93.jpg",
     "changes": {"cats/dog.93.jpg": "dogs"}, "before": {"cats/dog.93.jpg": "cats"}}

`changes` maps each file the decision is about (its path relative to the review's root
folder) to its label from then on, or null to leave it out of training; `before`, to its
label until then (null: none). An `undo` record names the decision it takes back
(`undoes`); an `export` record says where the labels went (`path`, `sha256`, `rows`), by
which catdog knows an export it may replace.

A record is one `write` of one whole line to the file opened for appending (O_APPEND puts
it at the end), flushed to the disk before the decision counts. Only the holder of the
review folder's lock writes (`catdog.runs.folder.locked`). A last line without its newline
was cut off by a crash before it counted: it is dropped when the file is next opened.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from catdog.errors import CatdogError

DECISIONS_FILE = "decisions.jsonl"
KEEP, CHANGE, EXCLUDE, KEEP_ONE = "keep", "change", "exclude", "keep_one"
# What a reviewer decides about an item; `undo` and `export` are records of the log itself.
DECISIONS = (KEEP, CHANGE, EXCLUDE, KEEP_ONE)
UNDO, EXPORT = "undo", "export"

logger = logging.getLogger(__name__)


class DecisionLog:
    """The decisions file of a review folder, read once and appended to (see the module's docstring)."""

    def __init__(self, path: str | os.PathLike, who: str):
        self.path = Path(path)
        self.who = who
        self.records = _read(self.path)

    def append(self, action: str, *, source: str, **fields: Any) -> dict[str, Any]:
        """Write one record, stamped with its number, the time (UTC) and who made it; return it."""
        record = {"seq": len(self.records) + 1, "time": datetime.now(UTC).isoformat(timespec="seconds"),
                  "who": self.who, "source": source, "action": action, **fields}
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):  # a full disk: the partial line is dropped on the next open
                raise CatdogError(f"no space left to record a decision in {self.path}")
            os.fsync(fd)
        finally:
            os.close(fd)
        self.records.append(record)
        return record

    def undone(self) -> set[int]:
        return {record["undoes"] for record in self.records if record["action"] == UNDO}

    def decisions(self) -> list[dict[str, Any]]:
        """The decisions in force, in the order they were made (those undone left out)."""
        undone = self.undone()
        return [r for r in self.records if r["action"] in DECISIONS and r["seq"] not in undone]

    def last_decision(self) -> dict[str, Any] | None:
        """The latest decision in force: the one `undo` takes back."""
        decisions = self.decisions()
        return decisions[-1] if decisions else None

    def labels(self, base: dict[str, str]) -> dict[str, str | None]:
        """`base` (path: label) with the decisions in force applied, in order (None: excluded)."""
        labels: dict[str, str | None] = dict(base)
        for record in self.decisions():
            labels.update(record["changes"])
        return labels

    def exported(self) -> set[str]:
        """The sha256 of every labels file this review exported."""
        return {record["sha256"] for record in self.records if record["action"] == EXPORT}


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1
    if complete < len(data):
        logger.warning(f"{path}: the last line was cut off before it was recorded (a crash?); dropped it")
        os.truncate(path, complete)
    records = []
    for number, line in enumerate(data[:complete].decode("utf-8", errors="replace").splitlines(), 1):
        try:
            record = json.loads(line)
            if not (isinstance(record, dict) and record.get("seq") == number and "action" in record):
                raise ValueError("not a decision record in sequence")
        except ValueError as e:
            raise CatdogError(f"{path}, line {number}, is damaged ({e}); catdog appends to it but never edits it, "
                              "so it was changed by hand") from e
        records.append(record)
    return records
