"""`catdog predict`, `catdog serve` and `catdog export`: using a trained run."""

from __future__ import annotations

import argparse

from catdog import config
from catdog.cli.common import add_json_option, info, positive_int, print_json
from catdog.errors import CatdogError


def register(subparsers) -> None:
    predict = subparsers.add_parser(
        "predict",
        help="predict the class of images with a trained run",
        description="Print the predicted class and its probability for each image (folders are searched recursively).",
    )
    predict.add_argument("run", metavar="RUN", help="run folder written by `catdog train`")
    predict.add_argument("sources", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files or folders of images")
    predict.add_argument(
        "--batch-size", type=positive_int, default=config.BATCH_SIZE, help="images per model call (default: %(default)s)"
    )
    add_json_option(predict)
    predict.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from catdog.predict import Predictor

    predictor = Predictor(args.run)
    skipped = 0

    def skip(path: str, reason: str) -> None:
        nonlocal skipped
        skipped += 1
        info(f"skipping {path}: {reason}")

    predicted = 0
    for prediction in predictor.predict_paths(args.sources, batch_size=args.batch_size, on_skip=skip):
        predicted += 1
        if args.json:
            print_json(prediction)
        else:
            print(f"{prediction['path']}: {prediction['label']} ({prediction['probability']:.1%})", flush=True)
    if not predicted:
        raise CatdogError(
            f"no image could be predicted ({skipped} unreadable)" if skipped else "no image files found in the given paths"
        )
    return 0
