"""The audit's section of `catdog run`'s report: duplicate photos, suspected label errors and
outliers, each shown as thumbnails with short names, from the audit's JSON
(`catdog.audit.AuditResult.to_json`); or, where the audit could not run (`not_checked` says
why), what the scan alone found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from catdog.audit.result import HTML_FILE, JSON_FILE
from catdog.report.render import Block, Gallery, Heading, Paragraph, Thumbnail

# At most this many duplicate groups, suspects and outliers are shown (audit.html has them all).
LISTED = 10


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _short(path: str) -> str:
    """A file's name with its folder: `cats/cat.2001.jpg`."""
    return "/".join(Path(path).parts[-2:])


def audit_blocks(audit: dict[str, Any] | None, data_root: Path) -> list[Block]:
    """The report's section on the audit (nothing for a summary written before audits).
    `data_root`: the data folder, which the paths of what the scan alone found are relative to."""
    if audit is None:
        return []

    def located(path: str) -> str:
        return path if Path(path).is_absolute() or Path(path).exists() else str(data_root / path)

    duplicates = audit["duplicates"]
    leaks = [group for group in duplicates if group["leak"]]
    exact = sum(group["kind"] == "exact" for group in duplicates)
    if duplicates:
        found = (f"**Duplicates.** {len(duplicates)} group{'s' * (len(duplicates) != 1)} of files "
                 f"hold{'s' * (len(duplicates) == 1)} the same "
                 f"photo ({exact} exact copies, {len(duplicates) - exact} re-encoded, resized, cropped or brightened); "
                 + (f"**{len(leaks)} of them span splits**: a photo the model trained on is then scored again as if "
                    "new, which inflates the held-out scores." if leaks else "none spans two splits.")
                 + " Each group, leaks first:")
    else:
        found = "**Duplicates.** No two files hold the same photo."
    blocks: list[Block] = [Heading("Audit of the data"), Paragraph(found)]
    for group in duplicates[:LISTED]:
        blocks.append(Gallery([Thumbnail(located(path), _short(path), f"{split} split" + ", **a leak**" * group["leak"])
                               for path, split in zip(group["paths"], group["splits"], strict=True)]))
    if "not_checked" in audit:
        blocks.append(Paragraph(f"Label errors and outliers were not looked for: {audit['not_checked']}."))
        return blocks
    issues, outliers = audit["label_issues"], audit["outliers"]
    not_judged = [warning for warning in audit["warnings"] if warning.startswith("labels not judged")]
    blocks += [Paragraph(_sentence(warning) + ".") for warning in not_judged]
    if not not_judged:
        blocks.append(Paragraph(
            f"**{len(issues)} suspected label errors.** A simple classifier learnt the photos from what a "
            "pretrained network sees in them, five times, each time without a fifth of the photos, and was asked "
            "about the photos it had not seen (cleanlab's confident learning). A photo is suspected when it is "
            "sure the photo belongs to another class; the score is how sure (1 minus the probability it gives the "
            "photo's own label)" + (f". The {min(LISTED, len(issues))} most suspicious:" if issues else ".")))
    if issues:
        blocks.append(Gallery([Thumbnail(i["path"], _short(i["path"]),
                                         f"labelled `{i['label']}`, looks like `{i['suggested']}` ({i['score']:.2f})")
                               for i in issues[:LISTED]]))
    blocks.append(Paragraph(f"**{len(outliers)} outliers**: photos unlike the others; the score is how far a photo is "
                            "from its nearest photos, in multiples of the usual distance between neighbours"
                            + (":" if outliers else ".")))
    if outliers:
        blocks.append(Gallery([Thumbnail(o["path"], _short(o["path"]), f"{o['score']:.2f}x the usual distance")
                               for o in outliers[:LISTED]]))
    blocks.append(Paragraph(f"Every finding, with thumbnails: `{HTML_FILE}` (and `{JSON_FILE}`); `catdog audit` "
                            "runs the audit again on its own."))
    return blocks
