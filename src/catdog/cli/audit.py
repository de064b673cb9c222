"""`catdog audit`: duplicates, leaks, suspected label errors and outliers of a data set."""

from __future__ import annotations

import argparse
from pathlib import Path

from catdog import defaults
from catdog.cli.common import (
    add_backbone_option,
    add_data_option,
    add_json_option,
    add_seed_option,
    add_weights_option,
    data_source,
    info,
    positive_int,
    print_json,
)

# How many of each finding the text output lists; --json and audit.json have them all.
LISTED = 10
FAILED = 1


def register(subparsers) -> None:
    from catdog.audit.result import FAIL_ON

    parser = subparsers.add_parser(
        "audit",
        help="find duplicates, leaks, label errors and outliers in a data set",
        description="Check a data set before training on it: groups of files holding the same photo (exact copies, "
        "or re-encoded, resized, lightly cropped or brightened ones), marking those that span the splits catdog "
        "makes with --seed; files of each --against folder that duplicate files of the data set; suspected label "
        "errors (confident learning on out-of-fold predictions from the backbone's features); and outliers "
        "(images unlike any other). Exits 0 unless --fail-on finds what it names.",
    )
    add_data_option(parser)
    parser.add_argument("--against", metavar="DIR", action="append", default=[],
                        help="a folder of images (a test set from elsewhere, say) whose files must not duplicate the "
                        "data set's; repeat for several")
    add_seed_option(parser)
    add_backbone_option(parser)
    add_weights_option(parser)
    parser.add_argument("--batch-size", type=positive_int, default=defaults.BATCH_SIZE, metavar="B",
                        help="batch size for the backbone (default: %(default)s)")
    parser.add_argument("--out", metavar="DIR", help="write audit.json and audit.html (thumbnails) into this folder")
    parser.add_argument("--fail-on", action="append", choices=FAIL_ON, default=[],
                        help="exit 1 if the audit finds leaks (duplicates across splits or --against folders) or "
                        "label issues; repeat for both (for CI pipelines)")
    add_json_option(parser)
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from catdog import files
    from catdog.audit import audit
    from catdog.audit.result import HTML_FILE, JSON_FILE, JSON_KIND
    from catdog.report.audit_page import HTML_KIND, write_html

    if args.out:  # before the audit, not after it
        files.check_replaceable(args.out, files.INTO_FOLDER)
        files.check_replaceable(Path(args.out) / JSON_FILE, JSON_KIND)
        files.check_replaceable(Path(args.out) / HTML_FILE, HTML_KIND)
    result = audit(data_source(args), against=args.against, seed=args.seed, backbone=args.backbone,
                   weights=args.weights, batch_size=args.batch_size)
    if args.out:
        written = result.write_json(Path(args.out) / JSON_FILE), write_html(result, Path(args.out) / HTML_FILE)
        info(f"wrote {written[0]} and {written[1]}")
    if args.json:
        print_json(result.to_json())
    else:
        print(format_audit(result))
    failures = result.failures(args.fail_on)
    if failures:
        info(f"catdog: audit failed (--fail-on): {'; '.join(failures)}")
        return FAILED
    return 0


def format_audit(result) -> str:
    """The human-readable form of an audit: counts, then the first few of each finding."""
    lines = [f"audit of {result.data}: {result.images} images, {len(result.classes)} classes ({result.layout} "
             f"layout, split with seed {result.seed}), in {result.seconds:.0f}s"]
    lines += [f"compared with {a['folder']}: {a['images']} images" for a in result.against]
    lines += ["", f"duplicates: {len(result.duplicates)} groups, {len(result.leaks)} across splits or folders (leaks)"]
    for group in result.duplicates[:LISTED]:
        files = ", ".join(f"{path} ({split})" for path, split in zip(group.paths, group.splits, strict=True))
        lines.append(f"  {'LEAK ' if group.leak else ''}{group.kind}: {files}")
    lines += _more(result.duplicates)
    lines += ["", f"suspected label errors: {len(result.label_issues)}, most suspicious first (score: 1 - the "
              "probability the other images give its label)"]
    lines += [f"  {s.path}: {s.describe()}"
              for s in result.label_issues[:LISTED]]
    lines += _more(result.label_issues)
    lines += ["", f"outliers: {len(result.outliers)} (score: distance to its nearest images over the usual)"]
    lines += [f"  {o.path} ({o.score:.2f})" for o in result.outliers[:LISTED]]
    lines += _more(result.outliers)
    if result.warnings:
        lines += ["", "warnings:", *(f"  {warning}" for warning in result.warnings)]
    return "\n".join(lines)


def _more(items: list) -> list[str]:
    return [f"  ... and {len(items) - LISTED} more (--json or --out lists them all)"] if len(items) > LISTED else []
