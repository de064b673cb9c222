"""`catdog train`: a preset trained into a run folder, or an interrupted run completed."""

from __future__ import annotations

import argparse
import textwrap

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
    option_name,
    positive_int,
    positive_number,
    print_json,
    settings_overrides,
)
from catdog.errors import CatdogError

# The options that describe a new run; `--resume` continues one with its recorded settings.
NEW_RUN_OPTIONS = ("preset", "epochs", "image_size", "batch_size", "backbone", "weights", "out", "learning_rate",
                   "views", "end_to_end", "precision", "xla", "patience", "class_weight", "labels", "path_column",
                   "label_column", "label_delimiter", "task", "min_images", "ood_rate", "ood_method")


def register(subparsers) -> None:
    from catdog.models import PRESETS
    from catdog.runs.settings import PRECISIONS
    from catdog.trust.ood import METHODS, OOD_METHOD, OOD_RATE

    parser = subparsers.add_parser(
        "train",
        help="train a model preset into a run folder",
        usage="catdog train --model NAME [--data DIR] [options]\n       catdog train --resume RUN",
        description=textwrap.fill(
            "Train a model preset and write a run folder: model.keras (the best epoch by validation accuracy), "
            "config.json, splits.csv, history.csv, accuracy and loss curves, TensorBoard logs, the temperature and "
            "out-of-distribution detector fitted on validation, and the test split's metrics and figures. Prints the "
            "run folder. Ctrl-C leaves a run that --resume completes.", 79)
        + "\n\npresets (`catdog models` describes them):\n"
        + "\n".join(f"  {name:<13} {preset.description}" for name, preset in PRESETS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    basics = parser.add_argument_group("what to train, on what")
    basics.add_argument("--model", dest="preset", metavar="NAME",
                        help=f"the preset to train, one of {', '.join(PRESETS)}; needed unless --resume")
    add_data_option(basics)
    basics.add_argument("--out", metavar="DIR", help="run folder (default: runs/<model>-<timestamp>)")
    basics.add_argument("--resume", metavar="RUN",
                        help="complete an interrupted run from its last finished epoch, with its own settings")
    add_json_option(basics)
    settings = parser.add_argument_group("training")
    settings.add_argument("--epochs", type=positive_int,
                          help="epochs (default: the preset's: 20, 60 for cnn)")
    settings.add_argument("--image-size", type=positive_int, metavar="S",
                          help="image side in pixels (default: the preset's, or its backbone's; see `catdog models`)")
    settings.add_argument("--batch-size", type=positive_int, metavar="B",
                          help=f"images per training step (default: {defaults.BATCH_SIZE})")
    add_seed_option(settings)
    add_backbone_option(settings)
    add_weights_option(settings)
    add_patience_option(settings)
    advanced = parser.add_argument_group("advanced: how it trains, and where")
    advanced.add_argument("--learning-rate", type=positive_number, metavar="LR",
                          help="learning rate (default: the preset's)")
    add_class_weight_option(advanced)
    advanced.add_argument("--views", type=positive_int, metavar="K",
                          help="pretrained presets: stored views of each training image: 1 = the image, 2 = also its "
                          "mirror image, more = also random augmentations; each costs one pass over the training "
                          "images (default: the preset's, 1 for transfer, 2 for finetune)")
    advanced.add_argument("--end-to-end", action="store_true",
                          help="pretrained presets: run every image through the frozen backbone every epoch, as the "
                          "reference does, instead of computing its output once")
    advanced.add_argument("--precision", choices=PRECISIONS,
                          help="Keras dtype policy; auto: on GPUs mixed_bfloat16 (compute capability 8.0 on) or "
                          "mixed_float16 (7.x), on CPUs with bfloat16 instructions mixed_bfloat16 for the presets that "
                          "train as well in it, else float32 (default: auto)")
    advanced.add_argument("--xla", action="store_true", help="compile training steps with XLA")
    advanced.add_argument("--ood-rate", type=positive_number, metavar="RATE",
                          help="share of validation images the out-of-distribution threshold flags as unlike the "
                          f"training images: the false-alarm rate on images like them (default: {OOD_RATE})")
    advanced.add_argument("--ood-method", choices=list(METHODS),
                          help="how distance from the training images is measured: knn (cosine distance to the "
                          "nearest training images' features) or mahalanobis (per-class Gaussians, shared covariance) "
                          f"(default: {OOD_METHOD})")
    add_strategy_option(advanced)
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from catdog import workflow
    from catdog.runs import TrainSettings

    if args.resume:
        given = [name for name in NEW_RUN_OPTIONS if _given(getattr(args, name))]
        if given:
            flags = ", ".join(option_name(args.command_parser, name) for name in given)
            raise CatdogError(f"--resume continues a run with its recorded settings; leave out {flags}")
        run = workflow.resume_run(args.resume, args.data, strategy=args.strategy)
    elif args.preset is None:
        raise CatdogError("name the model to train (--model NAME) or a run to resume (--resume RUN)")
    else:
        settings = TrainSettings.resolve(args.preset, **settings_overrides(args))
        run = workflow.train_run(settings, data_source(args), out=args.out, strategy=args.strategy)
    if args.json:
        print_json({"run": str(run.path), **(run.metrics or {})})
    else:
        print(run.path)
    return 0


def _given(value) -> bool:
    """Whether an option was given: store_true options are False when not."""
    return value is not None and value is not False
