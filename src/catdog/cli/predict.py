"""`catdog predict`: the class of image files and folders, with a trained run."""

from __future__ import annotations

import argparse

from catdog import config
from catdog.cli.common import (
    add_json_option,
    add_labels_options,
    add_run_argument,
    add_runtime_option,
    info,
    positive_int,
    print_json,
)
from catdog.errors import CatdogError

UNLIKE = "unlike the training images"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict the class of images with a trained run",
        description="Print the predicted class and its probability for each image (folders are searched recursively). "
        "Probabilities are calibrated by the run's temperature; an image unlike the training images is marked "
        f"\"{UNLIKE}\" (--json: \"in_distribution\": false, with its \"ood_score\", above 1).",
    )
    add_run_argument(parser)
    parser.add_argument("sources", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files or folders of images")
    parser.add_argument("--batch-size", type=positive_int, default=config.BATCH_SIZE,
                        help="images per model call (default: %(default)s)")
    add_runtime_option(parser)
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average each image's probabilities with its mirror image's")
    add_labels_options(parser)
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from catdog.deploy.predict import Predictor

    predictor = Predictor(args.run, runtime=args.runtime, tta=args.tta, reject_unknown=args.reject_unknown,
                          min_confidence=args.min_confidence)
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
            print(f"{prediction['path']}: {describe(prediction)}", flush=True)
    if not predicted:
        raise CatdogError(f"no image could be predicted ({skipped} unreadable)" if skipped
                          else "no image files found in the given paths")
    return 0


def describe(prediction: dict) -> str:
    """A prediction in words: `cats (97.0%)`, `dogs (99.3%), unlike the training images`,
    `unknown (unlike the training images; dogs 99.3%)`, `unsure (cats 55.0%)`."""
    best = max(prediction["probabilities"], key=prediction["probabilities"].get)
    top = f"{best} {prediction['probability']:.1%}"
    unlike = prediction.get("in_distribution") is False
    if prediction["label"] != best:
        return f"{prediction['label']} ({UNLIKE}; {top})" if unlike else f"{prediction['label']} ({top})"
    return f"{best} ({prediction['probability']:.1%})" + (f", {UNLIKE}" if unlike else "")
