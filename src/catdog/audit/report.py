"""The audit's section of `catdog run`'s report: leaks, suspected label errors and outliers,
with `audit.json` and `audit.html` written beside the report.

The whole audit needs the backbone's pretrained weights where no download is needed (a
local file, or Keras' cache) and the `audit` extra; without them the section reports what
the scan alone finds (duplicates by their hashes, and those across splits) and says why the
rest was not checked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from catdog import config
from catdog.audit.result import HTML_FILE, JSON_FILE
from catdog.data.scan import Scan
from catdog.data.splits import Manifest, crossing
from catdog.report import Block, Heading, Paragraph, Table

LISTED = 10


def audit_for_report(data, scanned: tuple[Scan, Manifest], folder: Path, *, seed: int, backbone: str | None,
                     weights: str | os.PathLike | None, batch_size: int) -> dict[str, Any]:
    """Audit the data set of `catdog run` into `folder`; its JSON, or what the scan found and why
    no more was checked (`not_checked`)."""
    from catdog.audit import audit
    from catdog.audit.html import write_html

    reason = _cannot_check(backbone, weights)
    if reason:
        found, manifest = scanned
        leaks = {group.paths: splits for group, splits in crossing(manifest, found.duplicates)}
        split_of = {row.path: row.split for row in manifest.rows}
        duplicates = [{"kind": g.kind, "paths": list(g.paths), "splits": [split_of[p] for p in g.paths],
                       "leak": g.paths in leaks} for g in found.duplicates]
        return {"duplicates": duplicates, "label_issues": [], "outliers": [], "not_checked": reason}
    result = audit(data, seed=seed, backbone=backbone, weights=weights, batch_size=batch_size, scanned=scanned)
    result.write_json(folder / JSON_FILE)
    write_html(result, folder / HTML_FILE)
    return result.to_json()


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _cannot_check(backbone: str | None, weights) -> str | None:
    """Why label errors and outliers cannot be looked for here, or None."""
    from catdog.audit.features import FEATURE_PRESET
    from catdog.models import IMAGENET, default_image_size, get_preset, resolve_backbone, resolve_weights

    try:
        import cleanlab  # noqa: F401
    except ImportError:
        return "they need the audit extra (pip install 'catdog[audit]')"
    spec = get_preset(FEATURE_PRESET)
    network = resolve_backbone(spec, backbone)
    resolved = resolve_weights(spec, network, weights)
    if resolved is None:
        return "they need the backbone's pretrained weights, and the weights are none"
    file_name = network.weights_file(default_image_size(spec, network))
    if resolved == IMAGENET and not (config.keras_weights_dir() / file_name).is_file():
        return (f"they need the backbone's pretrained weights: {file_name} is not in {config.keras_weights_dir()} "
                f"(set ${config.ENV_WEIGHTS} or --weights)")
    return None


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
