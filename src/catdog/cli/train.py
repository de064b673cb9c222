"""`catdog train` and `catdog evaluate`: a run folder trained, and scored."""

from __future__ import annotations

import argparse
from typing import Any

from catdog import config
from catdog.cli.common import add_data_option, add_json_option, add_run_argument, add_seed_option, positive_int, print_json

# How many misclassified files `catdog evaluate` prints; metrics.json has them all.
MISTAKES_LISTED = 10


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a model preset into a run folder",
        description="Train a model preset (see `catdog models`) and write a run folder: model.keras (the best epoch "
        "by validation accuracy), config.json, splits.csv, history.csv, accuracy and loss curves, TensorBoard logs, "
        "and the test-split metrics and figures. Prints the run folder. Ctrl-C leaves a run that --resume continues.",
    )
    train.add_argument("--model", metavar="NAME", help="the preset to train (see `catdog models`)")
    add_data_option(train)
    train.add_argument("--epochs", type=positive_int, help="epochs (default: the preset's, 20 for the seed's models)")
    train.add_argument("--image-size", type=positive_int, metavar="S",
                       help=f"image side in pixels (default: the preset's, {config.IMAGE_SIZE} for most)")
    train.add_argument("--batch-size", type=positive_int, default=config.BATCH_SIZE, metavar="B",
                       help="batch size (default: %(default)s)")
    add_seed_option(train)
    train.add_argument("--weights", metavar="W",
                       help="starting weights: imagenet (Keras' download), PATH to an .h5/.weights.h5 file, or none "
                       f"(default: ${config.ENV_WEIGHTS}, else imagenet, for transfer and finetune; none otherwise)")
    train.add_argument("--out", metavar="DIR", help="run folder (default: runs/<model>-<timestamp>)")
    train.add_argument("--resume", metavar="RUN",
                       help="continue an interrupted run from its last finished epoch, with its own settings")
    train.add_argument("--learning-rate", type=float, metavar="LR", help="learning rate (default: the preset's)")
    train.add_argument("--views", type=positive_int, metavar="K",
                       help="pretrained presets: stored views of each training image: 1 = the image, 2 = also its "
                       "mirror image, more = also random augmentations; each costs one pass over the training "
                       "images (default: the preset's, 1 for transfer, 2 for finetune)")
    train.add_argument("--end-to-end", action="store_true",
                       help="pretrained presets: run every image through the frozen base every epoch, as the seed "
                       "does, instead of computing its output once")
    train.add_argument("--precision", default="auto", choices=config.PRECISIONS,
                       help="Keras dtype policy; auto: mixed_bfloat16 for the presets that train as well in it, on "
                       "CPUs with bfloat16 instructions, else float32 (default: %(default)s)")
    train.add_argument("--xla", action="store_true", help="compile training steps with XLA")
    add_json_option(train)
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="score a run's model on its test split or a folder",
        description="Score a run's model on its test split, or with --data on every image of a folder of class "
        "folders, and write metrics.json, confusion_matrix.png and misclassified.png (into the run folder, or "
        "for --data into evaluation-<folder>/ inside it).",
    )
    add_run_argument(evaluate)
    evaluate.add_argument("--data", metavar="DIR", help="folder of class folders to score instead of the test split")
    evaluate.add_argument("--batch-size", type=positive_int, default=config.BATCH_SIZE, metavar="B",
                          help="batch size (default: %(default)s)")
    add_json_option(evaluate)
    evaluate.set_defaults(func=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    from catdog.runs import open_run
    from catdog.train import train

    run = train(
        args.model, args.data, epochs=args.epochs, image_size=args.image_size, batch_size=args.batch_size,
        seed=args.seed, weights=args.weights, out=args.out, resume=args.resume, learning_rate=args.learning_rate,
        frozen_features=not args.end_to_end, views=args.views, precision=args.precision, jit_compile=args.xla,
    )
    if args.json:
        print_json({"run": str(run), **open_run(run).metrics})
    else:
        print(run)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from catdog.evaluate import evaluate

    metrics = evaluate(args.run, args.data, batch_size=args.batch_size)
    if args.json:
        print_json(metrics)
    else:
        print(format_metrics(metrics))
    return 0


def format_metrics(metrics: dict[str, Any]) -> str:
    """The human-readable form of `catdog.evaluate.evaluate`'s metrics."""
    names = list(metrics["per_class"])
    width = max(len(name) for name in [*names, "class"])
    lines = [
        f"{metrics['data']}: accuracy {metrics['accuracy']:.2%}, loss {metrics['loss']:.4f}, {metrics['n']} images",
        "",
        f"{'class':<{width}}  precision  recall      f1       n",
    ]
    for name, row in metrics["per_class"].items():
        lines.append(f"{name:<{width}}  {row['precision']:>9.2%}  {row['recall']:>6.2%}  {row['f1']:>6.2%}  {row['n']:>6}")
    lines += ["", "confusion matrix (rows: true, columns: predicted):"]
    lines += [f"{name:<{width}}  " + "  ".join(f"{count:>6}" for count in row)
              for name, row in zip(names, metrics["confusion_matrix"])]
    mistakes = metrics.get("misclassified") or []
    if mistakes:
        lines += ["", "misclassified, most confident first:"]
        lines += [f"{m['path']}: {m['true']}, predicted {m['predicted']} ({m['probability']:.1%})"
                  for m in mistakes[:MISTAKES_LISTED]]
        if len(mistakes) > MISTAKES_LISTED:
            lines.append(f"... and {len(mistakes) - MISTAKES_LISTED} more (all in metrics.json)")
    return "\n".join(lines)
