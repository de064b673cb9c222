"""`catdog data fetch|info|show|split`: getting and looking at a data set."""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

from catdog import environment
from catdog.cli.common import (
    add_data_option,
    add_json_option,
    add_seed_option,
    data_source,
    info,
    positive_int,
    print_json,
)
from catdog.errors import CatdogError, ParameterError


def register(subparsers) -> None:
    from catdog.data.fetch import DATASET_URL

    data = subparsers.add_parser(
        "data",
        help="fetch, describe, show, split or pack a data set",
        description="Fetch the reference data set, or describe, show, split or pack a folder of labelled images.",
    )
    commands = data.add_subparsers(title="commands", metavar="COMMAND", required=True)

    fetch = commands.add_parser(
        "fetch",
        help="download and extract the reference data set (the tutorial's cats_and_dogs_filtered)",
        description=f"Download {DATASET_URL}, verify it and extract it (default: into {environment.cache_dir()}).",
    )
    fetch.add_argument("--dest", metavar="DIR",
                       help=f"folder to extract into (default: ${environment.ENV_HOME}, else ~/.keras/datasets)")
    fetch.add_argument("--sha256", metavar="HEX",
                       help="expected sha256 of the archive (default: the one recorded in catdog)")
    fetch.set_defaults(func=execute_fetch, needs_tensorflow=False)

    data_info = commands.add_parser(
        "info",
        help="count images per split and class, and list skipped files",
        description="Check every image, split the data set, and print the counts per split and class, the classes "
        "missing from a split, the imbalance, the baseline accuracy, the duplicate images (and those in two splits) "
        "and the files skipped with their reasons.",
    )
    _add_data_options(data_info)
    add_json_option(data_info)
    data_info.set_defaults(func=execute_info, needs_tensorflow=False)

    show = commands.add_parser(
        "show",
        help="draw sample images, or an augmentation preview",
        description="Draw three random training images per class (one row per class), or with --augment, one image "
        "and randomly flipped and rotated versions of it, and save the figure as PNG.",
    )
    _add_data_options(show)
    show.add_argument("--augment", action="store_true", help="draw the augmentation preview instead")
    show.add_argument("--out", metavar="FILE.png", help="where to save (default: samples.png, or augmentation.png)")
    show.set_defaults(func=execute_show)

    split = commands.add_parser(
        "split",
        help="write the split to a manifest (CSV)",
        description="Check every image, split the data set and write the manifest: path (relative to the data "
        "folder), class and split of each file.",
    )
    _add_data_options(split)
    split.add_argument("--out", metavar="FILE.csv", required=True, help="manifest to write")
    split.set_defaults(func=execute_split, needs_tensorflow=False)

    pack = commands.add_parser(
        "pack",
        help="write the checked, split data set as TFRecord shards",
        description="Check every image and split the data set as `catdog train` would, then write the files as "
        "TFRecord shards with their manifest into a folder that --data accepts wherever it is (a local folder, "
        "gs://...): training streams the shards, and under the multiworker strategy each worker reads its own.",
    )
    _add_data_options(pack)
    pack.add_argument("--out", metavar="DEST", required=True, help="folder to write the pack into (new, or a pack)")
    pack.add_argument("--shards", type=positive_int, default=4, help="shards per split, at most (default: %(default)s)")
    pack.set_defaults(func=execute_pack)


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    add_data_option(parser)
    add_seed_option(parser)


def execute_fetch(args: argparse.Namespace) -> int:
    from catdog.data.fetch import DATASET_SHA256, fetch

    print(fetch(args.dest, sha256=args.sha256 or DATASET_SHA256))
    return 0


def execute_info(args: argparse.Namespace) -> int:
    from catdog.data import summary

    report = summary(data_source(args), seed=args.seed)
    if args.json:
        print_json(report)
    else:
        print(format_summary(report))
    return 0


def format_summary(report: dict[str, Any]) -> str:
    """The human-readable form of `catdog.data.summary`: a table of splits by class (of classes
    by split when there are many)."""
    classes = report["classes"]
    lines = [f"data: {report['root']} ({report['layout']} layout, split with seed {report['seed']})", ""]
    lines += _counts_table(report["splits"], classes)
    lines.append("")
    if tags := report.get("multilabel"):
        lines += _tag_lines(tags)
    elif report["baseline_accuracy"] is None:
        lines.append("baseline: none (the test split is empty)")
    else:
        lines.append(f"baseline accuracy: {report['baseline_accuracy']:.1%}, balanced accuracy "
                     f"{report['baseline_balanced_accuracy']:.1%} (always guessing {report['baseline_class']}, the "
                     "most frequent class in train, scored on test)")
    lines.append(f"imbalance: the largest class has {report['imbalance']:.1f}x the training images of the smallest")
    n_groups, leaks = len(report["duplicates"]), report["leaks"]
    lines.append(f"duplicates: {n_groups} group{'s' * (n_groups != 1)} of files holding the same photo, "
                 + (f"{len(leaks)} of them in more than one split:" if leaks else "none in more than one split"))
    lines += [f"  {', '.join(f'{p} ({s})' for p, s in zip(g['paths'], g['splits'], strict=True))}"
              for g in leaks]
    lines += _skipped_lines(report["skipped"])
    if report["warnings"]:
        lines.append("warnings:")
        lines += [f"  {warning}" for warning in report["warnings"]]
    return "\n".join(lines)


def _tag_lines(tags: dict[str, Any]) -> list[str]:
    """A multi-label data set's own figures (see `catdog.data.describe_tags`)."""
    images, without = tags["images"], tags["without_tags"]
    lines = ["images: " + ", ".join(f"{split} {n} ({without[split]} without a tag)" for split, n in images.items()),
             f"tags per image: {tags['label_cardinality']:.2f} on average"]
    if tags["co_occurrence"]:
        lines.append("most often together: " + ", ".join(f"{' + '.join(pair['tags'])} ({pair['images']})"
                                                         for pair in tags["co_occurrence"][:5]))
    if baseline := tags["baseline"]:
        usual = " ".join(tags["baseline_tags"]) or "no tag"
        lines.append(f"baseline (always {usual}, the most frequent tags in train, scored on test): every tag right "
                     f"{baseline['subset_accuracy']:.1%}, micro F1 {baseline['micro_f1']:.1%}, macro F1 "
                     f"{baseline['macro_f1']:.1%}, Hamming loss {baseline['hamming_loss']:.1%}")
    return lines


# The text lists this many skipped files, then counts the rest by reason (--json lists them all).
SKIPPED_LISTED = 20


def _skipped_lines(skipped: list[dict[str, str]]) -> list[str]:
    lines = [f"skipped: {len(skipped)} files" + (":" if skipped else "")]
    lines += [f"  {item['path']}: {item['reason']}" for item in skipped[:SKIPPED_LISTED]]
    rest = skipped[SKIPPED_LISTED:]
    if rest:
        # "labels.csv, line 7: no such file" counts as "no such file".
        reasons = Counter(re.sub(r"^.*, line \d+: ", "", item["reason"]) for item in rest)
        counted = "; ".join(f"{n:,} {reason}" for reason, n in reasons.most_common())
        lines.append(f"  ... and {len(rest):,} more ({counted}); --json lists them all")
    return lines


# Up to this many classes, a column each; beyond, a row each.
_CLASS_COLUMNS = 6


def _counts_table(splits: dict[str, dict[str, int]], classes: list[str]) -> list[str]:
    if len(classes) <= _CLASS_COLUMNS:
        rows = [(split, [counts[name] for name in classes]) for split, counts in splits.items()]
        header = ("split", [*classes, "total"])
    else:
        rows = [(name, [splits[split][name] for split in splits]) for name in classes]
        header = ("class", [*splits, "total"])
    width = max(len(name) for name in [header[0], *(name for name, _ in rows)])
    column_width = max(6, *(len(name) for name in header[1]))
    lines = [f"{header[0]:<{width}}" + "".join(f"{name:>{column_width + 2}}" for name in header[1])]
    for name, values in rows:
        lines.append(f"{name:<{width}}" + "".join(f"{v:>{column_width + 2}}" for v in [*values, sum(values)]))
    return lines


def execute_show(args: argparse.Namespace) -> int:
    from catdog import files
    from catdog.data import scan_and_split
    from catdog.data.pack import LAYOUT as PACKED
    from catdog.report import previews

    out = Path(args.out or ("augmentation.png" if args.augment else "samples.png"))
    if out.suffix.lower() != ".png":
        raise ParameterError("out", f"{{name}}: the figure is a PNG; give a file name ending in .png, not {out.name}")
    files.check_replaceable(out, files.CATDOG_PNG)  # before the scan, not after it
    found, manifest = scan_and_split(data_source(args), seed=args.seed)
    if found.layout == PACKED:
        raise CatdogError(f"{found.root} is a pack; `catdog data show` draws image files: show the folder it was "
                          "packed from")
    if args.augment:
        figure = previews.augmentation_preview(manifest, seed=args.seed)
    else:
        figure = previews.sample_grid(manifest, seed=args.seed)
    print(files.save_figure(figure, out, files.CATDOG_PNG))
    _mention_skipped(found.skipped)
    return 0


def execute_split(args: argparse.Namespace) -> int:
    from catdog import files
    from catdog.data import scan_and_split
    from catdog.data.splits import MANIFEST_KIND, SPLITS

    files.check_replaceable(args.out, MANIFEST_KIND)  # before the scan, not after it
    found, manifest = scan_and_split(data_source(args), seed=args.seed)
    print(manifest.write(args.out))
    counts = manifest.counts()
    info(", ".join(f"{split}: {sum(counts[split].values())}" for split in SPLITS) + " images")
    _mention_skipped(found.skipped)
    return 0


def execute_pack(args: argparse.Namespace) -> int:
    from catdog.data.pack import pack

    print(pack(data_source(args), args.out, seed=args.seed, shards=args.shards))
    return 0


def _mention_skipped(skipped: list[tuple[str, str]]) -> None:
    if skipped:
        info(f"skipped {len(skipped)} unusable files (`catdog data info` lists them with their reasons)")
