"""`catdog export`: a trained run's model in a deployment format, checked against Keras."""

from __future__ import annotations

import argparse

from catdog.cli.common import add_json_option, add_run_argument, info, print_json


def register(subparsers) -> None:
    from catdog.formats import FORMATS

    parser = subparsers.add_parser(
        "export",
        help=f"export a trained run's model ({', '.join(FORMATS)})",
        description=(
            "Write a run's model in a deployment format, then run it with that format's own runtime on a few "
            "images (--check-images if given, else the run's test split, else generated ones) and fail if its "
            "probabilities differ from the Keras model's by more than the format's tolerance."
        ),
    )
    add_run_argument(parser)
    parser.add_argument("--format", required=True, choices=list(FORMATS), help="the format to write")
    parser.add_argument(
        "--out", metavar="PATH", help="where to write it (default: RUN/export/model.tflite, model.onnx or savedmodel/)"
    )
    quantizable = ", ".join(name for name, spec in FORMATS.items() if spec.quantizable)
    parser.add_argument("--quantize", action="store_true",
                        help=f"{quantizable} only: store weights as int8 (onnx: activations too, calibrated on "
                             "training images, and checked to lose at most half a point of test accuracy)")
    parser.add_argument("--check-images", metavar="IMAGE_OR_FOLDER", nargs="+",
                        help="images to check the export on instead of the test split")
    add_json_option(parser)
    parser.set_defaults(func=execute)


def _file_size(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.1f} KB"


def execute(args: argparse.Namespace) -> int:
    from catdog.deploy.export import export

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
        if report.test_accuracy is not None:
            print(f"test accuracy {report.test_accuracy:.1%} (Keras model: {report.keras_test_accuracy:.1%})")
    return 0
