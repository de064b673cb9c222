"""`catdog evaluate`: a run's model scored on its test split, or on a folder of labelled images."""

from __future__ import annotations

import argparse
from typing import Any

from catdog import config
from catdog.cli.common import add_json_option, add_run_argument, positive_int, print_json

# How many misclassified files the text output lists; metrics.json has them all.
MISTAKES_LISTED = 10


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a run's model on its test split or a folder",
        description="Score a run's model on its test split, or with --data on every image of a folder of class "
        "folders, and write metrics.json, confusion_matrix.png, misclassified.png and reliability.png (into the run "
        "folder, or for --data into evaluation-<folder>/ inside it). The scores are of the calibrated probabilities; "
        "the expected calibration error (15 bins) is given before and after calibration.",
    )
    add_run_argument(parser)
    parser.add_argument("--data", metavar="DIR", help="folder of class folders to score instead of the test split")
    parser.add_argument("--batch-size", type=positive_int, default=config.BATCH_SIZE, metavar="B",
                        help="batch size (default: %(default)s)")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average each image's probabilities with its mirror image's")
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from catdog.evaluate import evaluate

    metrics = evaluate(args.run, args.data, batch_size=args.batch_size, tta=args.tta)
    if args.json:
        print_json(metrics)
    else:
        print(format_metrics(metrics))
    return 0


def format_metrics(metrics: dict[str, Any]) -> str:
    """The human-readable form of `catdog.evaluate.evaluate`'s metrics."""
    names = list(metrics["per_class"])
    width = max(len(name) for name in [*names, "class"])
    tta = " with test-time augmentation" if metrics.get("tta") else ""
    lines = [f"{metrics['data']}: accuracy {metrics['accuracy']:.2%}, loss {metrics['loss']:.4f}, "
             f"{metrics['n']} images{tta}"]
    if calibration := metrics.get("calibration"):
        lines.append(f"calibration: temperature {calibration['temperature']:.3f}, expected calibration error "
                     f"{calibration['ece']:.2%} ({calibration['ece_uncalibrated']:.2%} uncalibrated)")
    if ood := metrics.get("ood"):
        lines.append(f"unlike the training images: {ood['flagged']:.1%} of these ({ood['method']}; the threshold flags "
                     f"{ood['rate']:.0%} of the validation images)")
    lines += [
        "",
        f"{'class':<{width}}  precision  recall      f1       n",
    ]
    for name, row in metrics["per_class"].items():
        lines.append(f"{name:<{width}}  {row['precision']:>9.2%}  {row['recall']:>6.2%}  {row['f1']:>6.2%}  "
                     f"{row['n']:>6}")
    lines += ["", "confusion matrix (rows: true, columns: predicted):"]
    lines += [f"{name:<{width}}  " + "  ".join(f"{count:>6}" for count in row)
              for name, row in zip(names, metrics["confusion_matrix"], strict=True)]
    mistakes = metrics.get("misclassified") or []
    if mistakes:
        lines += ["", "misclassified, most confident first:"]
        lines += [f"{m['path']}: {m['true']}, predicted {m['predicted']} ({m['probability']:.1%})"
                  for m in mistakes[:MISTAKES_LISTED]]
        if len(mistakes) > MISTAKES_LISTED:
            lines.append(f"... and {len(mistakes) - MISTAKES_LISTED} more (all in metrics.json)")
    return "\n".join(lines)
