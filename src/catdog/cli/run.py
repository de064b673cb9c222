"""`catdog run`: the reference tutorial's whole exercise, from data summary to report."""

from __future__ import annotations

import argparse

from catdog import defaults
from catdog.cli.common import (
    add_backbone_option,
    add_class_weight_option,
    add_data_option,
    add_json_option,
    add_patience_option,
    add_seed_option,
    add_strategy_option,
    add_weights_option,
    data_source,
    positive_int,
    print_json,
    settings_overrides,
)

HELP = "run the whole exercise: data summary, previews, every model trained and scored, a report"


def register(subparsers) -> None:
    from catdog.models import REFERENCE_PRESETS

    parser = subparsers.add_parser(
        "run",
        help=HELP,
        description=HELP + ". Run it again with the same --out to continue an interrupted exercise.",
    )
    add_data_option(parser)
    parser.add_argument(
        "--models",
        default=",".join(REFERENCE_PRESETS),
        help="comma-separated presets to train, in order (default: %(default)s; see `catdog models`)",
    )
    parser.add_argument("--epochs", type=positive_int,
                        help="epochs per model (default: each preset's own, 20 for the reference's)")
    parser.add_argument("--image-size", type=positive_int,
                        help="image side in pixels (default: each preset's own, see `catdog models`)")
    parser.add_argument("--batch-size", type=positive_int, default=defaults.BATCH_SIZE,
                        help="batch size (default: %(default)s)")
    add_seed_option(parser)
    add_backbone_option(parser)
    add_weights_option(parser)
    add_strategy_option(parser)
    parser.add_argument("--out", metavar="DIR", help="output folder (default: runs/exercise-<timestamp>)")
    add_class_weight_option(parser)
    add_patience_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from catdog.exercise import exercise_settings, run_exercise

    models = [name.strip() for name in args.models.split(",") if name.strip()]
    settings = exercise_settings(models, **settings_overrides(args))
    summary = run_exercise(data_source(args), settings, out=args.out, strategy=args.strategy)
    if args.json:
        print_json(summary)
        return 0
    print(f"{'model':<14}{'parameters':>12}{'best val':>10}{'last val':>10}{'test':>8}{'time':>9}")
    for row in summary["models"]:
        print(
            f"{row['preset']:<14}{row['parameters']:>12,}{row['best_val_accuracy']:>10.1%}"
            f"{row['last_val_accuracy']:>10.1%}{row['test_accuracy']:>8.1%}{row['training_seconds']:>8.0f}s"
        )
    print(f"best by validation accuracy: {summary['best']}")
    print(f"report: {summary['report']}")
    return 0
