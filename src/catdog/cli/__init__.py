"""The `catdog` command: a thin layer over the Python API.

Each command lives in the module named after it and exposes `register(subparsers)`,
which adds its parser and sets its handler, `execute(args)`, as `func`. Results go to
stdout, messages to stderr; exit codes: 0 success, 1 failure, 2 bad input or usage, 130
interrupted. An error is one line (a library error about a parameter, `ParameterError`,
names the option); `--debug` or `$CATDOG_DEBUG=1` prints the full traceback under it.

- `common.py`: the options and output helpers the commands share.
- `run.py`: `catdog run`, the whole exercise.
- `data.py`: `catdog data fetch|info|show|split|pack`.
- `audit.py`: `catdog audit`.
- `review.py`: `catdog review`.
- `models.py`: `catdog models`.
- `train.py`: `catdog train`.
- `evaluate.py`: `catdog evaluate`.
- `explain.py`: `catdog explain`.
- `predict.py`: `catdog predict`.
- `serve.py`: `catdog serve`.
- `export.py`: `catdog export`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from catdog import __version__, environment, terminal
from catdog.cli.common import option_name
from catdog.errors import CatdogError, ParameterError

# In the order of the work: the whole exercise first, then each of its steps on its own.
COMMAND_MODULES = ("run", "data", "audit", "review", "models", "train", "evaluate", "explain", "predict", "serve",
                   "export")

EXAMPLES = """\
start here:
  catdog run                           the whole exercise on the reference photos: five models, then a
                                       report (about 25 minutes on two CPU cores)
  catdog serve runs/exercise-<time>/   a web page to try the exercise's chosen model on your own photos
  catdog train --model transfer --data PHOTOS/
                                       one model on your own photos: PHOTOS/<class>/*.jpg

`catdog COMMAND --help` describes each command; `catdog models` lists the models."""


QUIET_HELP = "draw no progress bars (they are drawn only when stderr is a terminal)"


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line like catdog's others (and its subcommands too)."""

    def error(self, message: str):
        self.exit(2, f"catdog: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="catdog",
        description=EXAMPLES,
        epilog="catdog trains, evaluates, explains, serves and exports image classifiers, starting from cats "
        "versus dogs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"catdog {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help=f"print the full traceback under an error (or set ${environment.ENV_DEBUG}=1)")
    parser.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"catdog.cli.{name}").register(subparsers)
    _record_command_parsers(parser)
    return parser


def _record_command_parsers(parser: argparse.ArgumentParser) -> None:
    """Let every (sub)command's parser put itself in the namespace as `command_parser`, so
    errors can name its options (the innermost command's parse runs last, and wins), and take
    `--debug` after the command too."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.set_defaults(command_parser=command)
                command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                     help="print the full traceback under an error")
                command.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP)
                _record_command_parsers(command)


class _PlainFormatter(logging.Formatter):
    """Progress as plain lines; warnings and errors prefixed like the CLI's own messages."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"catdog: {record.levelname.lower()}: {message}"
        return message


class _StderrHandler(logging.StreamHandler):
    """Writes each record to `sys.stderr` as it is when the record comes, not as it was when the
    handler was made (a caller may have redirected or replaced it since, and closed the old one)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def _log_to_stderr() -> None:
    """Show the library's progress and warnings (logged under `catdog`) on stderr."""
    logger = logging.getLogger("catdog")
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_PlainFormatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else 2
    _log_to_stderr()
    terminal.set_quiet(args.quiet)
    try:
        if getattr(args, "needs_tensorflow", True):
            environment.check_tensorflow()
            environment.import_tensorflow_quietly()
            environment.configure_devices()  # before TensorFlow sets up its devices
        return args.func(args) or 0
    except ParameterError as e:
        name = option_name(args.command_parser, e.parameter) or e.parameter
        return _error(e.in_terms_of(name), e.exit_code, args)
    except CatdogError as e:
        return _error(str(e), e.exit_code, args)
    except KeyboardInterrupt:
        print("catdog: interrupted", file=sys.stderr)
        return 130


def _error(message: str, code: int, args: argparse.Namespace) -> int:
    """Print the error on one line, and with --debug the traceback (its causes too) under it."""
    print(f"catdog: error: {message}", file=sys.stderr)
    if args.debug or environment.debug():
        traceback.print_exc(file=sys.stderr)
    return code
