"""The queue: what to look at, most likely problems first, each with the reason in one sentence.

From an audit of the data set (catdog.audit) and a scan of it as it is now:

1. suspected label errors that confident learning flags, most suspicious first;
2. groups of duplicates that span splits or `--against` folders (leaks);
3. the other suspected label errors (another class predicted out of fold, not flagged);
4. the other duplicate groups;
5. outliers, most unusual first;
6. the files the scan skipped, with its reason.

Confident label errors come first because they are the likeliest to be wrong (nearly all of
them were flipped labels on the reference photos: benchmarks/review.md); a leak is certain,
but it inflates a score rather than teaching the model something wrong. Every file is named by its
path relative to the review's root folder (the data folder); a file of an `--against`
folder, which is not part of the data set and is never changed, by its path as the audit
gave it. An item's `id` is its kind and its first file's path, the same in every session.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any

from catdog.audit.result import AuditResult, Group
from catdog.data.scan import Scan

LABEL, DUPLICATE, OUTLIER, SKIPPED, POOL = "label", "duplicate", "outlier", "skipped", "pool"
KINDS = (LABEL, DUPLICATE, OUTLIER, SKIPPED, POOL)


@dataclass(frozen=True)
class Member:
    """One file of an item: `path` as the review names it, `file` where it is on this machine,
    `label` its label in the data set (None: it is not in the data set, or has none), `split`
    its split (duplicates), `in_data` whether decisions may change it."""

    path: str
    file: str
    label: str | None = None
    split: str | None = None
    in_data: bool = True


@dataclass(frozen=True)
class Item:
    """One thing to decide about: its files, the suggested label (pre-selected on the page),
    a score (kind-specific, shown), and the reason in one sentence."""

    id: str
    kind: str
    members: tuple[Member, ...]
    reason: str
    suggested: str | None = None
    score: float | None = None
    confident: bool = False
    leak: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        for member in values["members"]:
            del member["file"]  # where the file is on this machine is the server's business
        return values


def audit_items(audit: AuditResult, found: Scan) -> list[Item]:
    """The queue of the audit `audit` of the data set `found` (see the module's docstring)."""
    labels = {image.path: image.class_name for image in found.images}

    def member(path: str, split: str | None = None) -> Member:
        relative = _relative(path, audit.data)
        if relative is None:  # a file of an --against folder
            return Member(path, path, None, split, in_data=False)
        return Member(relative, str(found.root / relative), labels.get(relative), split, relative in labels)

    suspects, others = [], []
    for suspect in audit.label_issues:
        one = member(suspect.path)
        if not one.in_data or one.label == suspect.suggested:  # gone, or relabelled since the audit
            continue
        confidence = "; confident learning flags it too" if suspect.confident else ""
        reason = (f"Labelled {one.label}, but a model trained on the other images gives {one.label} only "
                  f"{1 - suspect.score:.0%} and says {suspect.suggested}{confidence}.")
        item = Item(f"{LABEL}:{one.path}", LABEL, (one,), reason, suspect.suggested, suspect.score,
                    suspect.confident)
        (suspects if suspect.confident else others).append(item)

    groups = [_group_item(group, [member(path, split) for path, split in zip(group.paths, group.splits, strict=True)])
              for group in audit.duplicates]
    groups = [item for item in groups if sum(m.in_data for m in item.members) >= 1]

    outliers = []
    for outlier in audit.outliers:
        one = member(outlier.path)
        if one.in_data:
            reason = (f"Unlike the other images: {outlier.score:.1f} times as far from its nearest images as is usual; "
                      f"check that it is a photo of {one.label}.")
            outliers.append(Item(f"{OUTLIER}:{one.path}", OUTLIER, (one,), reason, one.label, outlier.score))

    skipped = [Item(f"{SKIPPED}:{path}", SKIPPED, (Member(path, str(found.root / path)),),
                    f"The scan left it out of the data set: {reason}.") for path, reason in found.skipped]
    return ([*suspects, *(g for g in groups if g.leak), *others, *(g for g in groups if not g.leak), *outliers,
             *skipped])


def _group_item(group: Group, members: list[Member]) -> Item:
    copies = "the same bytes" if group.kind == "exact" else "the same photo (re-encoded, resized or cropped)"
    places = sorted(set(group.splits))
    where = f"; they span {' and '.join(places)}" if group.leak else f"; all in {places[0]}"
    keep = next((i for i, m in enumerate(members) if m.in_data), 0)
    return Item(f"{DUPLICATE}:{members[0].path}", DUPLICATE, tuple(members),
                f"These {len(members)} files hold {copies}{where}.", members[keep].label, None,
                leak=group.leak, details={"duplicate": group.kind, "keep": keep})


def _relative(path: str, root: str) -> str | None:
    """`path` (as the audit named it: its data folder joined with the path inside) relative to
    that folder, with `/`; None for a path outside it."""
    try:
        return PurePath(path).relative_to(PurePath(root)).as_posix()
    except ValueError:
        return None


def same_folder(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    return Path(os.path.abspath(a)).resolve() == Path(os.path.abspath(b)).resolve()
