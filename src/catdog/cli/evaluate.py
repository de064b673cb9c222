"""`catdog evaluate`: a run's model scored on its test split, or on a folder of labelled images."""

from __future__ import annotations

import argparse
from typing import Any

from catdog import defaults
from catdog.cli.common import add_data_option, add_json_option, add_run_argument, data_source, positive_int, print_json
from catdog.errors import CatdogError

# How many misclassified files the text output lists; metrics.json has them all.
MISTAKES_LISTED = 10
# Up to this many classes the confusion matrix is printed; beyond, the most confused pairs.
MATRIX_PRINTED = 10


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
    add_data_option(parser, help="folder of labelled images to score instead of the test split", min_images=False)
    parser.add_argument("--batch-size", type=positive_int, default=defaults.BATCH_SIZE, metavar="B",
                        help="batch size (default: %(default)s)")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average each image's probabilities with its mirror image's")
    add_json_option(parser)
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from catdog.evaluation import evaluate

    if args.labels and not args.data:
        raise CatdogError("--labels gives the classes of the images of --data; give --data DIR too")
    metrics = evaluate(args.run, data_source(args) if args.data else None, batch_size=args.batch_size,
                       tta=args.tta)
    if args.json:
        print_json(metrics)
    else:
        print(format_metrics(metrics))
    return 0


def format_metrics(metrics: dict[str, Any]) -> str:
    """The human-readable form of `catdog.evaluation.evaluate`'s metrics: the confusion matrix for a
    few classes, the most confused pairs for many."""
    names = list(metrics["per_class"])
    width = max(len(name) for name in [*names, "class"])
    tta = " with test-time augmentation" if metrics.get("tta") else ""
    summary = [f"balanced accuracy {metrics['balanced_accuracy']:.2%}", f"macro F1 {metrics['macro_f1']:.2%}"]
    if "top_5_accuracy" in metrics:
        summary.append(f"top-5 accuracy {metrics['top_5_accuracy']:.2%}")
    lines = [
        f"{metrics['data']}: accuracy {metrics['accuracy']:.2%}, loss {metrics['loss']:.4f}, "
        f"{metrics['n']} images{tta}",
        ", ".join(summary),
    ]
    if calibration := metrics.get("calibration"):
        worse = "; the temperature made it worse here" if calibration["ece"] > calibration["ece_uncalibrated"] else ""
        lines.append(f"calibration: temperature {calibration['temperature']:.3f}, expected calibration error "
                     f"{calibration['ece']:.2%} ({calibration['ece_uncalibrated']:.2%} uncalibrated{worse})")
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
    if len(names) <= MATRIX_PRINTED:
        lines += ["", "confusion matrix (rows: true, columns: predicted):"]
        lines += [f"{name:<{width}}  " + "  ".join(f"{count:>6}" for count in row)
                  for name, row in zip(names, metrics["confusion_matrix"], strict=True)]
    elif metrics["most_confused"]:
        lines += ["", "most confused (true -> predicted: images):"]
        lines += [f"{pair['true']} -> {pair['predicted']}: {pair['count']}" for pair in metrics["most_confused"]]
    mistakes = metrics.get("misclassified") or []
    if mistakes:
        lines += ["", "misclassified, most confident first:"]
        lines += [f"{m['path']}: {m['true']}, predicted {m['predicted']} ({m['probability']:.1%})"
                  for m in mistakes[:MISTAKES_LISTED]]
        if len(mistakes) > MISTAKES_LISTED:
            lines.append(f"... and {len(mistakes) - MISTAKES_LISTED} more (all in metrics.json)")
    return "\n".join(lines)
