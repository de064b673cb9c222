"""`catdog serve`: a web page and a JSON API over a trained run."""

from __future__ import annotations

import argparse

from catdog.cli.common import add_run_argument, add_runtime_option, info, positive_int, positive_number


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a trained run: a web page and a JSON API",
        description="Serve a web page to drop images on and a JSON API (POST /predict, GET /model, GET /health).",
    )
    add_run_argument(parser)
    from catdog.deploy.serve.limits import HOST, PORT, Limits

    limits = Limits()
    parser.add_argument("--host", default=HOST, help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=port_number, default=PORT,
                        help="port to listen on, 0 to 65535; 0 takes a free one (default: %(default)s)")
    parser.add_argument("--max-upload-mb", type=positive_number, default=limits.max_upload_bytes // 2**20,
                        help="largest request body in MB (default: %(default)s)")
    parser.add_argument("--max-pixels", type=positive_int, default=limits.max_pixels,
                        help="largest image in pixels (default: %(default)s)")
    parser.add_argument("--max-request-pixels", type=positive_int, default=limits.max_request_pixels,
                        help="most pixels of all the images in one request, read from their headers before "
                        "decoding (default: %(default)s)")
    parser.add_argument("--max-files", type=positive_int, default=limits.max_files,
                        help="most images in one request (default: %(default)s)")
    parser.add_argument("--docs", action="store_true",
                        help="serve the interactive API docs at /docs and /redoc (their pages load scripts "
                        "from a CDN; off by default)")
    add_runtime_option(parser)
    parser.set_defaults(func=execute, needs_tensorflow=False)


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port: ports are 0 to 65535")
    return value


def execute(args: argparse.Namespace) -> int:
    from catdog.cli.common import import_tensorflow_if_needed
    from catdog.deploy.serve.app import serve
    from catdog.deploy.serve.limits import Limits
    from catdog.runs import Run

    run = Run.open(args.run)
    import_tensorflow_if_needed(run, args.runtime)
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels,
                    max_files=args.max_files, max_request_pixels=args.max_request_pixels)
    info(f"loading {run.path}")
    serve(run, host=args.host, port=args.port, limits=limits, runtime=args.runtime, docs=args.docs)
    return 0
