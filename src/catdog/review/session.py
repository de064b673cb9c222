"""`Review`: one open review, its queue, its decisions, and the labels they amount to.

    >>> with review_data("photos/", audit="audit/") as review:
    ...     review.decide("label:cats/dog.93.jpg", "change", label="dogs")
    ...     review.export("reviewed.csv")

`review_data` reviews a data set: it reads the audit given, or runs one and keeps it in
the review folder (`audit/`), then queues what it found (catdog.review.queue).
`review_pool` queues a folder of unlabelled images for a run (catdog.review.pool). While a
review is open its folder is locked (`catdog.runs.folder.locked`): one process writes it.

The labels of a data set are those it has (its class folders, or its labels file), with
every decision in force applied: a changed label replaces the file's, an excluded file is
left out. `export` writes them as a labels CSV (`path,label`, paths relative to the data
folder) that `catdog train --labels` reads; for a pool, only the images labelled.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from catdog import defaults, files
from catdog.audit.result import JSON_FILE, AuditResult
from catdog.data import Source, as_source, resolve_data_dir
from catdog.data.labels import LABEL_COLUMN, MULTILABEL, PATH_COLUMN
from catdog.data.pack import is_remote
from catdog.data.scan import scan
from catdog.errors import CatdogError, ParameterError
from catdog.formats import AUTO
from catdog.review import folder
from catdog.review.decisions import (
    CHANGE,
    DECISIONS,
    DECISIONS_FILE,
    EXCLUDE,
    EXPORT,
    KEEP,
    KEEP_ONE,
    UNDO,
    DecisionLog,
)
from catdog.review.pool import pool_items
from catdog.review.queue import DUPLICATE, LABEL, POOL, Item, audit_items, same_folder
from catdog.runs import Run, as_run
from catdog.runs.folder import locked

logger = logging.getLogger(__name__)

# Characters a class name may not hold: it becomes a CSV cell, and a folder name for some users.
_NOT_IN_CLASS_NAMES = set('/\\\n\r\t"')


class Review:
    """An open review (see the module's docstring). Thread-safe: the page's requests may come at once."""

    def __init__(self, path: Path, root: Path, items: list[Item], classes: list[str], base: dict[str, str],
                 log: DecisionLog, title: str, mode: str, stack: contextlib.ExitStack | None = None):
        self.path, self.root, self.items, self.title, self.mode = path, root, items, title, mode
        self.classes = list(classes)
        self.base = base  # path: label, of every usable image of the data set (nothing for a pool)
        self.log = log
        self._by_id = {item.id: item for item in items}
        self._lock = threading.Lock()
        self._stack = stack or contextlib.ExitStack()  # what `close` releases: the folder's lock

    def __enter__(self) -> Review:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the review folder's lock."""
        self._stack.close()

    # What has been decided ---------------------------------------------------------------------

    def labels(self) -> dict[str, str | None]:
        """Every file's label with the decisions in force (None: excluded)."""
        return self.log.labels(self.base)

    def decided(self) -> dict[str, dict[str, Any]]:
        """Each decided item's decision in force (its latest)."""
        return {record["item"]: record for record in self.log.decisions()}

    def state(self) -> dict[str, Any]:
        """What the page shows: the items, each with its decision, the classes and the progress."""
        with self._lock:
            decided = self.decided()
            labels = self.labels()
            classes = sorted(set(self.classes) | {label for label in labels.values() if label})
            return {
                "title": self.title, "mode": self.mode, "who": self.log.who, "classes": classes,
                "items": [{**item.to_json(), "decision": _shown(decided.get(item.id))} for item in self.items],
                **self._progress(decided),
            }

    def item_state(self, item_id: str) -> dict[str, Any]:
        """An item's decision in force (after a change), and the review's progress."""
        with self._lock:
            decided = self.decided()
            return {"item": item_id, "decision": _shown(decided.get(item_id)), **self._progress(decided)}

    def _progress(self, decided: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {"progress": {"decided": sum(item.id in decided for item in self.items), "total": len(self.items)},
                "can_undo": self.log.last_decision() is not None}

    # Deciding ------------------------------------------------------------------------------------

    def decide(self, item_id: str, action: str, *, label: str | None = None, keep: int | None = None,
               source: str = "page") -> dict[str, Any]:
        """Record a decision about the item `item_id`: `keep` its labels, `change` them to
        `label`, `exclude` its files, or keep the member `keep` of a duplicate group and exclude
        the others (`keep_one`). Returns the record."""
        with self._lock:
            item = self._by_id.get(item_id)
            if item is None:
                raise ParameterError("item", f"no item {item_id!r} in this review")
            changes = self._changes(item, action, label, keep)
            labels = self.labels()
            before = {path: labels.get(path) for path in changes}
            extra = {"label": next(iter(changes.values()))} if action == CHANGE else {}
            if action == KEEP_ONE:
                extra = {"keep": item.members[keep].path}
            return self.log.append(action, source=source, item=item.id, changes=changes, before=before, **extra)

    def _changes(self, item: Item, action: str, label: str | None, keep: int | None) -> dict[str, str | None]:
        if action not in DECISIONS:
            raise ParameterError("action", f"unknown {{name}} {action!r}; choose one of: {', '.join(DECISIONS)}")
        members = [member for member in item.members if member.in_data]
        if not members:
            raise CatdogError(f"{item.id} has no file of the data set to decide about")
        labels = self.labels()
        if action == KEEP:
            if item.kind == POOL:
                raise ParameterError("action", "a pool image has no label to keep: label it (change) or exclude it")
            # The label the page showed: a file a decision left out is back in with it. A file
            # without one (skipped by the scan) stays as it is: out.
            kept = {member.path: labels.get(member.path) or self.base.get(member.path) for member in members}
            return {path: label for path, label in kept.items() if label is not None}
        if action == EXCLUDE:
            return {member.path: None for member in members}
        if action == CHANGE:
            return {member.path: _class_name(label) for member in members}
        if item.kind != DUPLICATE:
            raise ParameterError("action", f"{{name}} {KEEP_ONE} is for duplicate groups, not a {item.kind} item")
        if not (isinstance(keep, int) and not isinstance(keep, bool) and 0 <= keep < len(item.members)
                and item.members[keep].in_data):
            raise ParameterError("keep", f"{{name}} must name a file of the data set in the group, got {keep}")
        kept = item.members[keep].path
        return {member.path: labels.get(member.path) if member.path == kept else None for member in members}

    def undo(self, source: str = "page") -> dict[str, Any] | None:
        """Take back the latest decision in force (None if there is none); returns its record."""
        with self._lock:
            last = self.log.last_decision()
            if last is None:
                return None
            self.log.append(UNDO, source=source, item=last["item"], undoes=last["seq"])
            return last

    def accept_suggestions(self, min_score: float = 0.0) -> list[dict[str, Any]]:
        """Change the label of every suspected label error that confident learning flags, with
        a score of at least `min_score`, to the suggested class, unless it was decided already;
        nothing else. Returns what changed: `{"path", "from", "to", "score"}` each."""
        decided = self.decided()
        changed = []
        for item in self.items:
            if item.kind == LABEL and item.confident and item.score >= min_score and item.id not in decided:
                record = self.decide(item.id, CHANGE, label=item.suggested, source="accept-suggestions")
                for path, label in record["changes"].items():
                    changed.append({"path": path, "from": record["before"][path], "to": label, "score": item.score})
        return changed

    # Exporting -----------------------------------------------------------------------------------

    def reviewed_labels(self) -> dict[str, str]:
        """path: label of every file the labels CSV lists (sorted by path): the data set's
        usable images and the files given a label, less those excluded; for a pool, the images
        labelled."""
        return {path: label for path, label in sorted(self.labels().items()) if label is not None}

    def export(self, path: str | os.PathLike) -> dict[str, Any]:
        """Write the labels CSV (atomically; over nothing but a file this review exported and no
        one has changed since), record where it went, and say what it holds."""
        path = Path(path)
        with self._lock:
            labels = self.reviewed_labels()
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow((PATH_COLUMN, LABEL_COLUMN))
            writer.writerows(labels.items())
            exported = self.log.exported()
            kind = files.Kind("a labels file this review exported, unchanged since",
                              lambda existing: _sha256(existing.read_bytes()) in exported)
            files.write_text(path, text.getvalue(), kind)
            digest = _sha256(text.getvalue().encode("utf-8"))
            counts = Counter(labels.values())
            excluded = sum(label is None for label in self.labels().values())
            self.log.append(EXPORT, source="export", path=str(path.resolve()), sha256=digest, rows=len(labels))
        return {"path": str(path), "rows": len(labels), "classes": dict(sorted(counts.items())),
                "excluded": excluded, "root": str(self.root)}

    def default_export(self) -> Path:
        return self.path / folder.EXPORT_FILE


def _shown(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {key: record[key] for key in ("seq", "time", "who", "action", "changes", "source") if key in record}


def _class_name(label: Any) -> str:
    name = label.strip() if isinstance(label, str) else ""
    if not name or set(name) & _NOT_IN_CLASS_NAMES or name in (".", ".."):
        raise ParameterError("label", f"{{name}} must be a class name (not empty, no slashes, quotes, tabs or "
                                      f"line breaks), got {label!r}")
    return name


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _open(path: Path, subject: dict[str, Any], who: str | None) -> tuple[contextlib.ExitStack, DecisionLog]:
    """Lock the review folder `path` (made if new) for `subject`, and read its decisions."""
    from catdog import environment

    stack = contextlib.ExitStack()
    try:
        stack.enter_context(locked(path))
        folder.open_folder(path, subject)
        return stack, DecisionLog(path / DECISIONS_FILE, who or environment.user_name())
    except BaseException:
        stack.close()
        raise


def review_data(data: str | os.PathLike | Source | None, *, audit: str | os.PathLike | None = None,
                out: str | os.PathLike | None = None, against=(), seed: int = defaults.SEED,
                backbone: str | None = None, weights: str | None = None, batch_size: int = defaults.BATCH_SIZE,
                who: str | None = None) -> Review:
    """Open the review of the data set `data` (a folder, or a `catdog.data.Source` with its
    labels file) in the review folder `out` (default: `folder.default_folder`), with the audit
    in the folder (or file) `audit`, else the one the review ran itself and kept, else a new
    one (`against`, `seed`, `backbone`, `weights`, `batch_size`: see `catdog.audit.audit`)."""
    source = as_source(data)
    if source.root is not None and is_remote(source.root):
        raise ParameterError("data", "{name}: a review shows the image files; give a folder, not a pack's URL")
    root = resolve_data_dir(source)
    labels_file = source.labels.path if source.labels else None
    subject = {"data": str(root.resolve()), "labels": str(labels_file.resolve()) if labels_file else None}
    path = Path(out) if out is not None else folder.default_folder(root)
    found = scan(root, labels=source.labels)
    if found.task == MULTILABEL:
        raise CatdogError(f"{labels_file} gives images several tags; a review decides one class per image "
                          "(review a multi-label audit's findings in its audit.html)")
    given = _given_audit(audit, root, found) if audit is not None else None  # before anything is written
    stack, log = _open(path, subject, who)
    try:
        result = given or _own_audit(source, path, found, against=against, seed=seed, backbone=backbone,
                                     weights=weights, batch_size=batch_size)
        base = {image.path: image.class_name for image in found.images}
        return Review(path, root, audit_items(result, found), found.class_names, base, log, f"the data set {root}",
                      "data", stack)
    except BaseException:
        stack.close()
        raise


def _given_audit(given: str | os.PathLike, root: Path, found) -> AuditResult:
    """The audit in `given`, checked to be of the data folder `root`."""
    result = AuditResult.read(given)
    if not same_folder(result.data, root):
        raise CatdogError(f"the audit {given} is of {result.data}, not of {root}; audit this data set with "
                          f"`catdog audit --data {root} --out AUDIT` or leave out --audit")
    _warn_if_changed(result, found, str(given))
    return result


def _own_audit(source: Source, path: Path, found, **options) -> AuditResult:
    """The audit the review ran and kept in its folder, while it fits the data set and the
    options; else a new one, kept there."""
    own = path / folder.AUDIT_DIR / JSON_FILE
    if own.is_file():
        result = AuditResult.read(own)
        made_for = (result.images, result.classes, result.seed, [other["folder"] for other in result.against])
        if made_for == (len(found.images), found.class_names, options["seed"], list(map(str, options["against"]))):
            logger.info(f"using the audit kept in {own.parent} ({result.images} images)")
            return result
        logger.info(f"the data set or the options changed since the audit kept in {own.parent}; auditing again")
    from catdog.audit import audit
    from catdog.report.audit_page import write_html

    result = audit(source, **options)
    result.write_json(own)
    write_html(result, own.parent / "audit.html")
    return result


def _warn_if_changed(result: AuditResult, found, given: str) -> None:
    if result.images != len(found.images) or result.classes != found.class_names:
        logger.warning(f"the data set has changed since the audit {given} ({result.images} images of "
                       f"{', '.join(result.classes)} then, {len(found.images)} of {', '.join(found.class_names)} "
                       "now); its findings about files since removed are left out")


def review_pool(pool: str | os.PathLike, run: Run | str | os.PathLike, *, data: str | os.PathLike | None = None,
                out: str | os.PathLike | None = None, runtime: str = AUTO, who: str | None = None) -> Review:
    """Open the review of the unlabelled images of the folder `pool` for `run` (see
    catdog.review.pool). Labelled images export with paths relative to `data` (which must
    hold the pool), else to the pool folder."""
    pool = Path(pool)
    if not pool.is_dir():
        raise ParameterError("pool", f"{{name}}: {pool} is not a folder")
    run = as_run(run)
    if run.multilabel:
        raise ParameterError("run", f"{{name}} {run.path} gives tags; labelling a pool takes a run that gives each "
                                    "image one class")
    root = Path(data) if data is not None else pool
    if not root.is_dir():
        raise ParameterError("data", f"{{name}}: {root} is not a folder")
    if not pool.resolve().is_relative_to(root.resolve()):
        raise ParameterError("pool", f"{{name}} {pool} is not inside --data {root}: the labels exported are paths "
                                     "relative to the data folder")
    subject = {"pool": str(pool.resolve()), "run": str(run.path.resolve()), "data": str(root.resolve())}
    path = Path(out) if out is not None else folder.default_folder(pool)
    stack, log = _open(path, subject, who)
    try:
        items = pool_items(pool.resolve(), root.resolve(), run, path / folder.PREDICTIONS_FILE, runtime)
        return Review(path, root, items, run.class_names, {}, log, f"the pool {pool} for the run {run.path}", "pool",
                      stack)
    except BaseException:
        stack.close()
        raise
