"""`catdog run`: the reference tutorial's whole exercise, from data summary to report."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

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
    program,
    settings_overrides,
)

HELP = "run the whole exercise: data summary, previews, every model trained and scored, a report"


def register(subparsers) -> None:
    from catdog.models import REFERENCE_PRESETS

    parser = subparsers.add_parser(
        "run",
        help=HELP,
        description=HELP + ". Everything goes into one folder (--out): report.html, report.md, summary.json and a run "
        "folder per model. Run it again with the same --out to continue an interrupted exercise. Afterwards, every "
        "command that takes a run folder takes this folder too, and uses the model it chose.",
    )
    data = parser.add_argument_group("the data")
    add_data_option(data)
    models = parser.add_argument_group("the models")
    models.add_argument(
        "--models",
        default=",".join(REFERENCE_PRESETS),
        help="comma-separated presets to train, in order (default: %(default)s; see `catdog models`)",
    )
    models.add_argument("--epochs", type=positive_int,
                        help="epochs per model (default: each preset's own: 20, 60 for cnn)")
    models.add_argument("--image-size", type=positive_int, metavar="S",
                        help="image side in pixels (default: each preset's own, see `catdog models`)")
    models.add_argument("--batch-size", type=positive_int, default=defaults.BATCH_SIZE, metavar="B",
                        help="images per training step (default: %(default)s)")
    add_seed_option(models)
    add_backbone_option(models)
    add_weights_option(models)
    add_patience_option(models)
    output = parser.add_argument_group("output")
    output.add_argument("--out", metavar="DIR", help="output folder (default: runs/exercise-<timestamp>)")
    add_json_option(output)
    advanced = parser.add_argument_group("advanced")
    add_class_weight_option(advanced)
    add_strategy_option(advanced)
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from catdog.exercise import exercise_settings, run_exercise

    models = [name.strip() for name in args.models.split(",") if name.strip()]
    settings = exercise_settings(models, **settings_overrides(args))
    summary = run_exercise(data_source(args), settings, out=args.out, strategy=args.strategy)
    if args.json:
        print_json(summary)
        return 0
    print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    """What `catdog run` prints when it is done: each model's figures, the chosen model, where
    the report is, and the commands to try next, with the exercise's real paths."""
    from catdog.terminal import duration, percent

    lines = [f"{'model':<14}{'parameters':>12}{'epochs':>8}{'best validation':>17}{'test':>9}{'time':>12}"]
    for row in summary["models"]:
        lines.append(f"{row['preset']:<14}{row['parameters']:>12,}{row['epochs']:>8}"
                     f"{percent(row['best_val_accuracy']):>17}{percent(row['test_accuracy']):>9}"
                     f"{duration(row['training_seconds']):>12}")
    best = next(row for row in summary["models"] if row["preset"] == summary["best"])
    baseline = summary["data"].get("baseline_accuracy")
    versus = f" (always answering the most frequent class: {percent(baseline)})" if baseline is not None else ""
    exercise = shlex.quote(str(Path(summary["report"]).parent))
    catdog = program()
    photo = shlex.quote(_example_photo(best))
    took = f"done in {duration(summary['seconds'])}. " if summary.get("seconds") else ""
    lines += [
        "",
        f"chosen by validation accuracy: {best['preset']}, {percent(best['test_accuracy'])} on the {best['test_n']:,} "
        f"test images{versus}",
        f"{took}The report: {summary['report']} (open it in a web browser)",
        "next:",
        f"  {catdog} serve {exercise}",
        f"      a web page to try {best['preset']}, the chosen model, on your own photos",
        f"  {catdog} explain {exercise} {photo}",
        "      why it labels a test photo as it does (a heatmap, in explanations/)",
        f"  {catdog} predict {exercise} {photo}",
        "      its label and probabilities for that photo (or any photos and folders you name)",
    ]
    return "\n".join(lines)


def _example_photo(model: dict) -> str:
    """A test photo of the model's to explain: the one it got most confidently wrong, else its first."""
    from catdog.data.splits import TEST
    from catdog.runs import Run

    run = Run.open(model["run"])
    mistakes = (run.metrics or {}).get("misclassified") or []
    return mistakes[0]["path"] if mistakes else run.manifest().files(TEST)[0][0]
