"""`catdog serve`: a web page and a JSON API over a trained run."""

from __future__ import annotations

import argparse

from catdog import config
from catdog.cli.common import add_run_argument, add_runtime_option, info, positive_int, positive_number


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a trained run: a web page and a JSON API",
        description="Serve a web page to drop images on and a JSON API (POST /predict, GET /model, GET /health).",
    )
    add_run_argument(parser)
    parser.add_argument("--host", default=config.SERVE_HOST, help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=port_number, default=config.SERVE_PORT,
                        help="port to listen on, 0 to 65535; 0 takes a free one (default: %(default)s)")
    parser.add_argument("--max-upload-mb", type=positive_number, default=config.MAX_UPLOAD_MB,
                        help="largest request body in MB (default: %(default)s)")
    parser.add_argument("--max-pixels", type=positive_int, default=config.MAX_IMAGE_PIXELS,
                        help="largest image in pixels (default: %(default)s)")
    parser.add_argument("--max-request-pixels", type=positive_int, default=config.MAX_REQUEST_PIXELS,
                        help="most pixels of all the images in one request, read from their headers before "
                        "decoding (default: %(default)s)")
    parser.add_argument("--max-files", type=positive_int, default=config.MAX_UPLOAD_FILES,
                        help="most images in one request (default: %(default)s)")
    parser.add_argument("--docs", action="store_true",
                        help="serve the interactive API docs at /docs and /redoc (their pages load scripts "
                        "from a CDN; off by default)")
    add_runtime_option(parser)
    parser.set_defaults(func=run, needs_tensorflow=False)


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port: ports are 0 to 65535")
    return value


def run(args: argparse.Namespace) -> int:
    from catdog.cli.common import import_tensorflow_if_needed
    from catdog.deploy.serve import Limits, serve

    import_tensorflow_if_needed(args.run, args.runtime)
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels,
                    max_files=args.max_files, max_request_pixels=args.max_request_pixels)
    info(f"loading {args.run}")
    serve(args.run, host=args.host, port=args.port, limits=limits, runtime=args.runtime, docs=args.docs)
    return 0
