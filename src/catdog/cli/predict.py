"""`catdog predict`: the class of image files and folders, with a trained run."""

from __future__ import annotations

import argparse

from catdog import config
from catdog.cli.common import add_json_option, add_run_argument, add_runtime_option, info, positive_int, print_json
from catdog.errors import CatdogError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict the class of images with a trained run",
        description="Print the predicted class and its probability for each image (folders are searched recursively).",
    )
    add_run_argument(parser)
    parser.add_argument("sources", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files or folders of images")
    parser.add_argument("--batch-size", type=positive_int, default=config.BATCH_SIZE,
                        help="images per model call (default: %(default)s)")
    add_runtime_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=run, needs_tensorflow=False)


def run(args: argparse.Namespace) -> int:
    from catdog.cli.common import import_tensorflow_if_needed
    from catdog.deploy.predict import Predictor

    import_tensorflow_if_needed(args.run, args.runtime)
    predictor = Predictor(args.run, runtime=args.runtime)
    info(f"running {predictor.model_path} with {predictor.runtime}")
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
        raise CatdogError(f"no image could be predicted ({skipped} unreadable)" if skipped
                          else "no image files found in the given paths")
    return 0
