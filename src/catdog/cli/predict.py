"""`catdog predict`: the class of image files and folders, with a trained run."""

from __future__ import annotations

import argparse

from catdog import defaults, environment
from catdog.cli.common import (
    add_json_option,
    add_labels_options,
    add_run_argument,
    add_runtime_option,
    import_tensorflow_if_needed,
    info,
    positive_int,
    positive_number,
    print_json,
)
from catdog.errors import CatdogError
from catdog.outputs import UNLIKE_TRAINING_IMAGES as UNLIKE


def register(subparsers) -> None:
    from catdog.deploy.ray_batch import CONNECT_TIMEOUT_S

    parser = subparsers.add_parser(
        "predict",
        help="predict the class of images with a trained run",
        description="Print the predicted class and its probability for each image (folders are searched recursively). "
        "Probabilities are calibrated by the run's temperature; an image unlike the training images is marked "
        f"\"{UNLIKE}\" (--json: \"in_distribution\": false, with its \"ood_score\", above 1).",
    )
    add_run_argument(parser)
    parser.add_argument("sources", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files or folders of images")
    parser.add_argument("--batch-size", type=positive_int, default=defaults.BATCH_SIZE,
                        help="images per model call (default: %(default)s)")
    add_runtime_option(parser)
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average each image's probabilities with its mirror image's")
    add_labels_options(parser)
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: this process (default); ray: Ray Data, on this machine or the cluster at "
                        "--address, with the run's ONNX export (`catdog export RUN --format onnx`); sources may then "
                        "also be text files of paths and URLs such as s3://bucket/photos/")
    parser.add_argument("--export", action="store_true",
                        help="--engine ray: write the run's ONNX export first if it has none newer than its model")
    parser.add_argument("--address", help="the Ray cluster to use (default: a local one; 'auto': the one running)")
    parser.add_argument("--timeout", type=positive_number, metavar="S",
                        help="--address: seconds to wait for the Ray cluster to answer (default: "
                        f"{CONNECT_TIMEOUT_S:g})")
    parser.add_argument("--out", metavar="FILE", help="write the predictions to FILE.jsonl or FILE.parquet "
                        "(one file) instead of printing them")
    add_json_option(parser)
    parser.set_defaults(func=execute, needs_tensorflow=False)


def execute(args: argparse.Namespace) -> int:
    from catdog.runs import Run

    skipped = 0

    def skip(path: str, reason: str) -> None:
        nonlocal skipped
        skipped += 1
        info(f"skipping {path}: {reason}")

    labelling = {"tta": args.tta, "reject_unknown": args.reject_unknown, "min_confidence": args.min_confidence}
    if args.out:
        from catdog.deploy.prediction_files import check_target

        check_target(args.out)  # before the work, not after it
    run = Run.open(args.run)
    if args.engine == "ray":
        from catdog.deploy import ray_batch

        if args.runtime not in ("auto", "onnx"):
            raise CatdogError(f"the ray engine runs the run's ONNX export; leave out --runtime {args.runtime}")
        if args.export:
            environment.import_tensorflow_quietly()  # the export may be written first
        info(f"predicting on Ray{f' at {args.address}' if args.address else ''}")
        predictions = ray_batch.predict(run, args.sources, address=args.address, batch_size=args.batch_size,
                                        on_skip=skip, export_missing=args.export,
                                        timeout=args.timeout or ray_batch.CONNECT_TIMEOUT_S, **labelling)
    else:
        from catdog.deploy.predict import Predictor

        for given, option in ((args.address, "--address"), (args.export, "--export"), (args.timeout, "--timeout")):
            if given:
                raise CatdogError(f"{option} is for the Ray engine: use it with --engine ray")
        import_tensorflow_if_needed(run, args.runtime)
        predictor = Predictor(run, runtime=args.runtime, **labelling)
        info(f"running {predictor.model_path} with {predictor.runtime}")
        predictions = predictor.predict_paths(args.sources, batch_size=args.batch_size, on_skip=skip)

    def at_least_one(predictions):
        """The predictions; an error once they are over if there was none (inside the writing
        of --out, so that no empty file is left)."""
        predicted = 0
        for prediction in predictions:
            predicted += 1
            yield prediction
        if not predicted:
            raise CatdogError(f"no image could be predicted ({skipped} unreadable)" if skipped
                              else "no image files found in the given paths")

    if args.out:
        from catdog.deploy.prediction_files import write

        info(f"wrote {write(at_least_one(predictions), args.out)} predictions to {args.out}")
        return 0
    for prediction in at_least_one(predictions):
        if args.json:
            print_json(prediction)
        else:
            print(f"{prediction['path']}: {describe(prediction)}", flush=True)
    return 0


def describe(prediction: dict) -> str:
    """A prediction in words: `cats (97.0%)`, `dogs (99.3%), unlike the training images`,
    `unknown (unlike the training images; dogs 99.3%)`, `unsure (cats 55.0%)`; a multi-label run's:
    `cats (98.0%), dogs (91.2%)`, `no tag (of 2)`."""
    unlike = prediction.get("in_distribution") is False
    if "labels" in prediction:  # a multi-label run: the tags given, each with its probability
        probabilities = prediction["probabilities"]
        given = ", ".join(f"{tag} ({probabilities[tag]:.1%})" for tag in prediction["labels"] if tag in probabilities)
        said = given or ("unknown" if prediction["labels"] else f"no tag (of {len(probabilities)})")
        return said + (f", {UNLIKE}" if unlike else "")
    best = max(prediction["probabilities"], key=prediction["probabilities"].get)
    top = f"{best} {prediction['probability']:.1%}"
    if prediction["label"] != best:
        return f"{prediction['label']} ({UNLIKE}; {top})" if unlike else f"{prediction['label']} ({top})"
    return f"{best} ({prediction['probability']:.1%})" + (f", {UNLIKE}" if unlike else "")
