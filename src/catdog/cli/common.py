"""Options and output helpers shared by the command modules."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from catdog import config


def add_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        metavar="DIR",
        help=f"folder of labelled images (default: ${config.ENV_DATA}, else the cached seed data set)",
    )


def add_run_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run folder written by `catdog train`")


def add_seed_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=config.SEED,
                        help="seed for splits, shuffling and weights (default: %(default)s)")


def add_backbone_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", metavar="NAME",
                        help="pretrained presets: the network under the head (default: mobilenet_v2; "
                        "`catdog models` lists them)")


def add_weights_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", metavar="W",
                        help="starting weights: imagenet (Keras' download, or its cache), PATH to an .h5/.weights.h5 "
                        f"file, or none (default: imagenet for pretrained presets, with ${config.ENV_WEIGHTS} as a "
                        "local copy for mobilenet_v2; none otherwise)")


def add_runtime_option(parser: argparse.ArgumentParser) -> None:
    from catdog.deploy.runtimes import AUTO, RUNTIMES

    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=AUTO,
        help=(
            "what runs the model: keras, or an export's own runtime (onnx: onnxruntime on the run's ONNX export "
            "from `catdog export RUN --format onnx [--quantize]`, its int8 one first, faster on a CPU); auto takes "
            "onnx when the run has an export newer than its model (default: %(default)s)"
        ),
    )


def import_tensorflow_if_needed(run: str, runtime: str) -> None:
    """Import TensorFlow, quietly, if running `run` with `runtime` needs it: with an ONNX export,
    `predict` and `serve` start without it, seconds sooner (images are decoded by Pillow)."""
    from catdog.cli import import_tensorflow_quietly
    from catdog.deploy import runtimes
    from catdog.runs import open_run

    chosen, _ = runtimes.choose(open_run(run), runtime)
    if runtimes.needs_tensorflow(chosen):
        import_tensorflow_quietly()


def option_name(parser: argparse.ArgumentParser, dest: str) -> str | None:
    """How the user names the parameter `dest` on `parser`'s command line (`--image-size`)."""
    for action in parser._actions:
        if action.dest == dest:
            return action.option_strings[-1] if action.option_strings else action.metavar or dest
    return None


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


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


def info(message: str) -> None:
    """A progress or status message: stderr, so stdout stays clean for results."""
    print(message, file=sys.stderr, flush=True)
