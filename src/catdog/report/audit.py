"""The audit's section of `catdog run`'s report: leaks, suspected label errors and outliers,
from the audit's JSON (`catdog.audit.AuditResult.to_json`), or, where the audit could not
run (`not_checked` says why), what the scan alone found.
"""

from __future__ import annotations

from typing import Any

from catdog.audit.result import HTML_FILE, JSON_FILE
from catdog.report.render import Block, Heading, Paragraph, Table

LISTED = 10


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def audit_blocks(audit: dict[str, Any] | None) -> list[Block]:
    """The report's section on the audit (nothing for a summary written before audits)."""
    if audit is None:
        return []
    duplicates = audit["duplicates"]
    leaks = [group for group in duplicates if group["leak"]]
    exact = sum(group["kind"] == "exact" for group in duplicates)
    blocks: list[Block] = [
        Heading("Audit of the data"),
        Paragraph(f"{len(duplicates)} groups of files hold the same photo ({exact} exact copies, "
                  f"{len(duplicates) - exact} re-encoded, resized, cropped or brightened); "
                  + (f"**{len(leaks)} of them span splits**, which inflates the held-out scores."
                     if leaks else "none spans two splits.")),
    ]
    if leaks:
        blocks.append(Table(["files (split)"], [[", ".join(f"`{p}` ({s})" for p, s in
                                                            zip(g["paths"], g["splits"], strict=True))]
                                                 for g in leaks[:LISTED]]))
    if "not_checked" in audit:
        blocks.append(Paragraph(f"Label errors and outliers were not looked for: {audit['not_checked']}."))
        return blocks
    issues, outliers = audit["label_issues"], audit["outliers"]
    not_judged = [warning for warning in audit["warnings"] if warning.startswith("labels not judged")]
    blocks += [Paragraph(_sentence(warning) + ".") for warning in not_judged]
    if not not_judged:
        blocks.append(Paragraph(
            f"**{len(issues)} suspected label errors**, found by confident learning on what the other images "
            "predict for each (the score is 1 minus the probability they give its label)"
            + (f"; the {min(LISTED, len(issues))} most suspicious:" if issues else ".")))
    if issues:
        blocks.append(Table(["file", "label", "looks like", "score"],
                            [[f"`{i['path']}`", f"`{i['label']}`", f"`{i['suggested']}`", f"{i['score']:.2f}"]
                             for i in issues[:LISTED]]))
    blocks.append(Paragraph(f"{len(outliers)} outliers, images unlike the others (the score is the distance to "
                            "their nearest images over the usual)" + (":" if outliers else ".")))
    if outliers:
        blocks.append(Table(["file", "score"], [[f"`{o['path']}`", f"{o['score']:.2f}"] for o in outliers[:LISTED]]))
    blocks.append(Paragraph(f"Every finding, with thumbnails: `{HTML_FILE}` (and `{JSON_FILE}`); `catdog audit` "
                            "runs the audit again on its own."))
    return blocks
