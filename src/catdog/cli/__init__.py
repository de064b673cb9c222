"""The `catdog` command: a thin layer over the Python API.

Each command lives in the module named after it and exposes `register(subparsers)`,
which adds its parser and sets `func` on it. Results go to stdout, messages to
stderr; exit codes: 0 success, 1 failure, 2 bad input or usage, 130 interrupted.
A library error about a parameter (`ParameterError`) is shown with the option's name.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import tempfile

from catdog import __version__, environment
from catdog.cli.common import option_name
from catdog.errors import CatdogError, ParameterError

COMMAND_MODULES = ("data", "audit", "models", "train", "evaluate", "predict", "explain", "serve", "export", "run")


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line like catdog's others (and its subcommands too)."""

    def error(self, message: str):
        self.exit(2, f"catdog: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="catdog",
        description="Train, evaluate, serve and export image classifiers (cats vs dogs and beyond).",
    )
    parser.add_argument("--version", action="version", version=f"catdog {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"catdog.cli.{name}").register(subparsers)
    _record_command_parsers(parser)
    return parser


def _record_command_parsers(parser: argparse.ArgumentParser) -> None:
    """Let every (sub)command's parser put itself in the namespace as `command_parser`, so
    errors can name its options (the innermost command's parse runs last, and wins)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.set_defaults(command_parser=command)
                _record_command_parsers(command)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up chatter hidden.

    TensorFlow writes several lines to file descriptor 2 while loading, before
    `TF_CPP_MIN_LOG_LEVEL` takes effect. They are captured and shown only if the
    import fails.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    # TensorFlow's own Python warnings (retracing when several models run in one process,
    # deprecations inside Keras) are for library developers; catdog reports what users need.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


class _PlainFormatter(logging.Formatter):
    """Progress as plain lines; warnings and errors prefixed like the CLI's own messages."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"catdog: {record.levelname.lower()}: {message}"
        return message


def _log_to_stderr() -> None:
    """Show the library's progress and warnings (logged under `catdog`) on the current stderr."""
    logger = logging.getLogger("catdog")
    handler = next((h for h in logger.handlers if isinstance(h.formatter, _PlainFormatter)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler.setFormatter(_PlainFormatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    handler.stream = sys.stderr  # not setStream: it flushes the old stream, which tests may have closed


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else 2
    _log_to_stderr()
    try:
        if getattr(args, "needs_tensorflow", True):
            environment.check_tensorflow()
            import_tensorflow_quietly()
            environment.configure_devices()  # before TensorFlow sets up its devices
        return args.func(args) or 0
    except ParameterError as e:
        name = option_name(args.command_parser, e.parameter) or e.parameter
        print(f"catdog: error: {e.in_terms_of(name)}", file=sys.stderr)
        return e.exit_code
    except CatdogError as e:
        print(f"catdog: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("catdog: interrupted", file=sys.stderr)
        return 130
