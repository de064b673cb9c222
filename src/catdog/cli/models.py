"""`catdog models`: the model presets, one line each."""

from __future__ import annotations

import argparse

from catdog import config
from catdog.cli.common import add_json_option, print_json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the model presets",
        description=f"List the model presets `catdog train --model` accepts, with their parameter counts "
        f"(at {config.IMAGE_SIZE} px, two classes) and default weights.",
    )
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from catdog.models import describe

    rows = describe()
    if args.json:
        print_json(rows)
        return 0
    width = max(len(row["name"]) for row in rows)
    print(f"{'model':<{width}}  {'parameters':>10}  {'trainable':>10}  {'weights':<8}  description")
    for row in rows:
        print(f"{row['name']:<{width}}  {row['parameters']:>10,}  {row['trainable']:>10,}  {row['weights']:<8}  "
              f"{row['description']}")
    return 0
