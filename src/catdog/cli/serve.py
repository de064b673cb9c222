"""`catdog predict`, `catdog serve` and `catdog export`: using a trained run."""

from __future__ import annotations

import argparse

from catdog import config
from catdog.cli.common import add_json_option, add_run_argument, info, positive_int, positive_number, print_json
from catdog.errors import CatdogError


def register(subparsers) -> None:
    predict = subparsers.add_parser(
        "predict",
        help="predict the class of images with a trained run",
        description="Print the predicted class and its probability for each image (folders are searched recursively).",
    )
    add_run_argument(predict)
    predict.add_argument("sources", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files or folders of images")
    predict.add_argument(
        "--batch-size", type=positive_int, default=config.BATCH_SIZE, help="images per model call (default: %(default)s)"
    )
    add_runtime_option(predict)
    add_json_option(predict)
    predict.set_defaults(func=run_predict)

    serve = subparsers.add_parser(
        "serve",
        help="serve a trained run: a web page and a JSON API",
        description="Serve a web page to drop images on and a JSON API (POST /predict, GET /model, GET /health).",
    )
    add_run_argument(serve)
    serve.add_argument("--host", default=config.SERVE_HOST, help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=config.SERVE_PORT, help="port to listen on (default: %(default)s)")
    serve.add_argument(
        "--max-upload-mb", type=positive_number, default=config.MAX_UPLOAD_MB, help="largest request body in MB (default: %(default)s)"
    )
    serve.add_argument(
        "--max-pixels", type=positive_int, default=config.MAX_IMAGE_PIXELS, help="largest image in pixels (default: %(default)s)"
    )
    serve.add_argument(
        "--max-files", type=positive_int, default=config.MAX_UPLOAD_FILES, help="most images in one request (default: %(default)s)"
    )
    add_runtime_option(serve)
    serve.set_defaults(func=run_serve)

    export = subparsers.add_parser(
        "export",
        help="export a trained run as a SavedModel, TFLite or ONNX model",
        description=(
            "Write a run's model in a deployment format, then run it with that format's own runtime on a few "
            "images (--check-images if given, else the run's test split, else generated ones) and fail if its "
            "probabilities differ from the Keras model's by more than the format's tolerance."
        ),
    )
    add_run_argument(export)
    export.add_argument("--format", required=True, choices=config.EXPORT_FORMATS, help="the format to write")
    export.add_argument(
        "--out", metavar="PATH", help="where to write it (default: RUN/export/model.tflite, model.onnx or savedmodel/)"
    )
    export.add_argument("--quantize", action="store_true", help="tflite only: store weights as int8 (dynamic range)")
    export.add_argument(
        "--check-images", metavar="IMAGE_OR_FOLDER", nargs="+", help="images to check the export on instead of the test split"
    )
    add_json_option(export)
    export.set_defaults(func=run_export)


def add_runtime_option(parser: argparse.ArgumentParser) -> None:
    from catdog.predict import RUNTIMES

    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="auto",
        help=(
            "what runs the model: keras, or onnx (onnxruntime on the run's ONNX export, from "
            "`catdog export RUN --format onnx`; faster on a CPU); auto takes onnx when the run has an "
            "export newer than its model (default: %(default)s)"
        ),
    )


def run_predict(args: argparse.Namespace) -> int:
    from catdog.predict import Predictor

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
        raise CatdogError(
            f"no image could be predicted ({skipped} unreadable)" if skipped else "no image files found in the given paths"
        )
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from catdog.serve import Limits, serve

    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels, max_files=args.max_files)
    info(f"loading {args.run}; the page will be at http://{args.host}:{args.port}/")
    serve(args.run, host=args.host, port=args.port, limits=limits, runtime=args.runtime)
    return 0


def _file_size(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.1f} KB"


def run_export(args: argparse.Namespace) -> int:
    from catdog.export import export

    info(f"exporting {args.run} as {args.format}...")
    report = export(args.run, args.format, out=args.out, quantize=args.quantize, check_images=args.check_images)
    if args.json:
        print_json(report.to_dict())
    else:
        weights = ", int8 weights" if report.quantized else ""
        print(f"wrote {report.path} ({report.format}{weights}, {_file_size(report.size_bytes)})")
        print(
            f"checked on {report.images} images ({report.images_from}): largest probability difference from Keras "
            f"{report.max_difference:.2g} (tolerance {report.tolerance:g})"
        )
    return 0
