"""Options and output helpers shared by the command modules."""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catdog import defaults, environment

if TYPE_CHECKING:
    from catdog.data import Source

DATA_HELP = ("folder of labelled images, or a pack (catdog data pack) at a path or URL (default: "
             f"${environment.ENV_DATA}, else the reference data set, downloaded once)")


def add_data_option(parser: argparse.ArgumentParser, *, help: str = DATA_HELP, min_images: bool = True) -> None:
    """--data, and how to read it: --labels (with its column names) and, if `min_images`, --min-images."""
    parser.add_argument("--data", metavar="DIR", help=help)
    parser.add_argument("--labels", metavar="FILE.csv",
                        help="the classes of the images under --data, from a CSV file with a header: one row per "
                        "image, its path relative to --data (an entry without an extension names the one image "
                        "file of that name) and its class (default: the class folders name the classes)")
    parser.add_argument("--path-column", metavar="NAME",
                        help="--labels: the column of the paths (default: path)")
    parser.add_argument("--label-column", metavar="NAME",
                        help="--labels: the column of the classes (default: label)")
    parser.add_argument("--label-delimiter", metavar="CHAR",
                        help="--labels: what separates the labels of a cell holding several, for a multi-label data "
                        "set (a photo may be 'cats dogs', an empty cell: no tag) (default: a space; | and ; are "
                        "common)")
    parser.add_argument("--task", choices=("auto", "multiclass", "multilabel"),
                        help="--labels: multiclass (one class per image; a row with several labels is skipped), "
                        "multilabel (any number of tags per image), or auto: multilabel if a row has several labels, "
                        "said in one line (default: auto)")
    if min_images:
        parser.add_argument("--min-images", type=positive_int, metavar="K",
                            help="leave out the classes with fewer than K usable images, with a warning "
                            "(default: keep every class; a small class trains first, then validation and test "
                            "take what it can spare)")


def data_source(args: argparse.Namespace) -> Source:
    """The data set the options of `add_data_option` name."""
    from catdog.data import Source
    from catdog.data.labels import AUTO, DELIMITER, LABEL_COLUMN, PATH_COLUMN, LabelsFile, check_labels_file
    from catdog.errors import CatdogError

    labels = None
    if args.labels:
        labels = LabelsFile(Path(args.labels).expanduser(), args.path_column or PATH_COLUMN,
                            args.label_column or LABEL_COLUMN, args.label_delimiter or DELIMITER, args.task or AUTO)
        check_labels_file(labels)
    elif args.path_column or args.label_column or args.label_delimiter or args.task:
        raise CatdogError("--path-column, --label-column, --label-delimiter and --task say how to read --labels; "
                          "give --labels FILE.csv too")
    return Source(args.data, labels, getattr(args, "min_images", None))


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the options of a training command override (see `catdog.runs.TrainSettings.resolve`):
    those given, by the names `resolve` takes."""
    renamed = {"xla": "jit_compile"}
    chosen = {renamed.get(name, name): getattr(args, name) for name in SETTING_OPTIONS if hasattr(args, name)}
    if getattr(args, "end_to_end", False):
        chosen["frozen_features"] = False
    return {name: value for name, value in chosen.items() if value is not None and value is not False}


# The options of `catdog train` and `catdog run` that are training settings.
SETTING_OPTIONS = ("epochs", "image_size", "batch_size", "seed", "backbone", "weights", "learning_rate", "views",
                   "precision", "xla", "class_weight", "patience", "ood_rate", "ood_method")


def add_class_weight_option(parser: argparse.ArgumentParser) -> None:
    from catdog.data import IMBALANCE_RATIO
    from catdog.runs.settings import CLASS_WEIGHTS

    parser.add_argument("--class-weight", choices=CLASS_WEIGHTS,
                        help="how the classes weigh in the loss: none; balanced (each class as much in total, so a "
                        "small class is not ignored); auto: balanced when the largest class has more than "
                        f"{IMBALANCE_RATIO:g}x the training images of the smallest, else none (default: auto)")


def add_run_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run folder written by `catdog train`, or the folder of a "
                        "`catdog run` exercise (its chosen model)")


def add_seed_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=defaults.SEED,
                        help="random seed for splits, shuffling and weights (default: %(default)s)")


def add_backbone_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", metavar="NAME",
                        help="pretrained presets: the network under the head (default: mobilenet_v2; "
                        "`catdog models` lists them)")


def add_weights_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", metavar="W",
                        help="starting weights: imagenet (Keras' download, or its cache), PATH to an .h5/.weights.h5 "
                        "file, or none (default: imagenet for pretrained presets, with "
                        f"${environment.ENV_WEIGHTS} as a local copy for mobilenet_v2; none otherwise)")


def add_strategy_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", default="auto", choices=("auto", "none", "mirrored", "multiworker"),
                        help="where to train: none (one device), mirrored (every GPU, or the logical CPUs "
                        "$CATDOG_CPU_DEVICES makes), multiworker (a cluster described by $TF_CONFIG), auto (mirrored "
                        "with more than one GPU, else none); the batch size is the global batch (default: %(default)s)")


def add_runtime_option(parser: argparse.ArgumentParser) -> None:
    from catdog.formats import AUTO, AUTO_PREFERENCE, RUNTIMES

    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=AUTO,
        help=(
            "what runs the model: keras, or the runtime of the run's export in that format (written by `catdog "
            "export RUN --format NAME [--quantize]`; its int8 export first, faster on a CPU); auto prefers "
            f"{', then '.join(AUTO_PREFERENCE)}: the first whose runtime is installed and of which the run has an "
            "export newer than its model; else keras (default: %(default)s)"
        ),
    )


def add_labels_options(parser: argparse.ArgumentParser) -> None:
    """--reject-unknown and --min-confidence, for `catdog predict` and `catdog serve`."""
    from catdog.outputs import UNLIKE_TRAINING_IMAGES

    parser.add_argument("--reject-unknown", action="store_true",
                        help=f"label images {UNLIKE_TRAINING_IMAGES} (out-of-distribution score above 1) \"unknown\"")
    parser.add_argument("--min-confidence", type=probability, metavar="P",
                        help="label predictions whose probability is under P \"unsure\"")


def probability(text: str) -> float:
    value = positive_number(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text} is not a probability (above 0, at most 1)")
    return value


def import_tensorflow_if_needed(run, runtime: str) -> None:
    """Import TensorFlow, quietly, if running `run` (a `catdog.runs.Run`) with `runtime` needs it:
    with an ONNX export, `predict` and `serve` start without it, seconds sooner (images are
    decoded by Pillow)."""
    from catdog.formats import needs_tensorflow

    chosen, _ = run.runtime_for(runtime)
    if needs_tensorflow(chosen):
        environment.import_tensorflow_quietly()


def option_name(parser: argparse.ArgumentParser, dest: str) -> str | None:
    """How the user names the parameter `dest` on `parser`'s command line (`--image-size`)."""
    for action in parser._actions:
        if action.dest == dest:
            return action.option_strings[-1] if action.option_strings else action.metavar or dest
    return None


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def whole_number(minimum: int):
    """An argparse `type`: a whole number of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
        return value

    return parse


positive_int = whole_number(1)
non_negative_int = whole_number(0)


def add_patience_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patience", type=non_negative_int, metavar="N",
                        help="end training once validation accuracy has not improved for N epochs (of the last "
                        "stage), keeping the best epoch; 0 runs every epoch (default: the preset's; see `catdog "
                        "models`)")


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number above 0")
    return value


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout)
    sys.stdout.write("\n")


def program() -> str:
    """How to call catdog again, as this process was called: `catdog` where that command is on
    PATH, else the path it was called by (`.venv/bin/catdog` after `make`)."""
    called = sys.argv[0]
    if Path(called).name != "catdog":  # python -m catdog
        return "catdog"
    on_path = shutil.which("catdog")
    return "catdog" if on_path and Path(on_path).resolve() == Path(called).resolve() else called


def info(message: str) -> None:
    """A progress or status message: stderr, so stdout stays clean for results."""
    print(message, file=sys.stderr, flush=True)
