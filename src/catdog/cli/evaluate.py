"""`catdog evaluate`: a run's model scored on its test split, or on a folder of labelled images."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from catdog import defaults
from catdog.cli.common import add_data_option, add_json_option, add_run_argument, data_source, positive_int, print_json
from catdog.errors import CatdogError
from catdog.outputs import UNLIKE_TRAINING_IMAGES

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
    few classes, the most confused pairs for many; for tags, a row per tag."""
    if "per_tag" in metrics:
        return _format_tag_metrics(metrics)
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
    lines += _trust_lines(metrics)
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
    lines += _mistake_lines(metrics, "misclassified, most confident first:",
                            lambda m: f"{m['true']}, predicted {m['predicted']} ({m['probability']:.1%})")
    return "\n".join(lines)


def _tags(names: list[str]) -> str:
    return " ".join(names) or "no tag"


def _mistake_lines(metrics: dict[str, Any], heading: str, describe: Callable[[dict], str]) -> list[str]:
    """The first `MISTAKES_LISTED` wrongly labelled images of `metrics`, each as `describe` says."""
    mistakes = metrics.get("misclassified") or []
    if not mistakes:
        return []
    lines = ["", heading, *(f"{m['path']}: {describe(m)}" for m in mistakes[:MISTAKES_LISTED])]
    if len(mistakes) > MISTAKES_LISTED:
        lines.append(f"... and {len(mistakes) - MISTAKES_LISTED} more (all in metrics.json)")
    return lines


def _trust_lines(metrics: dict[str, Any]) -> list[str]:
    lines = []
    if calibration := metrics.get("calibration"):
        temperature = calibration["temperature"]
        scaled = (f"temperature {temperature:.3f}" if isinstance(temperature, int | float) else
                  f"a temperature per tag, {min(temperature):.3f} to {max(temperature):.3f}")
        worse = "; the temperature made it worse here" if calibration["ece"] > calibration["ece_uncalibrated"] else ""
        lines.append(f"calibration: {scaled}, expected calibration error {calibration['ece']:.2%} "
                     f"({calibration['ece_uncalibrated']:.2%} uncalibrated{worse})")
    if ood := metrics.get("ood"):
        lines.append(f"{UNLIKE_TRAINING_IMAGES}: {ood['flagged']:.1%} of these ({ood['method']}; the threshold flags "
                     f"{ood['rate']:.0%} of the validation images)")
    return lines


def _format_tag_metrics(metrics: dict[str, Any]) -> str:
    """A multi-label run's metrics: the summary figures, a row per tag, the images most wrong."""
    names = list(metrics["per_tag"])
    width = max(len(name) for name in [*names, "tag"])
    tta = " with test-time augmentation" if metrics.get("tta") else ""
    lines = [
        f"{metrics['data']}: mean average precision {metrics['mean_average_precision']:.2%}, micro F1 "
        f"{metrics['micro_f1']:.2%}, macro F1 {metrics['macro_f1']:.2%}, {metrics['n']} images{tta}",
        f"every tag right for {metrics['subset_accuracy']:.2%} of the images; {metrics['hamming_loss']:.2%} of "
        f"image-tag pairs wrong (Hamming loss); loss {metrics['loss']:.4f}",
        *_trust_lines(metrics),
        "",
        f"{'tag':<{width}}  precision  recall      f1      AP  threshold       n",
    ]
    for name, row in metrics["per_tag"].items():
        lines.append(f"{name:<{width}}  {row['precision']:>9.2%}  {row['recall']:>6.2%}  {row['f1']:>6.2%}  "
                     f"{row['average_precision']:>6.2%}  {row['threshold']:>9.3f}  {row['n']:>6}")
    lines += _mistake_lines(metrics, "tags not all right, most wrong first:",
                            lambda m: f"{_tags(m['true'])}, given {_tags(m['predicted'])}")
    return "\n".join(lines)
