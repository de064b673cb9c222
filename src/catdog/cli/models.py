"""`catdog models`: the presets (recipes) and the backbones (pretrained networks) they train on."""

from __future__ import annotations

import argparse

from catdog.cli.common import add_json_option, print_json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the model presets and backbones",
        description="List the presets `catdog train --model` accepts (parameters for two classes at each preset's "
        "default image size, on the default backbone) and the backbones `--backbone` accepts.",
    )
    add_json_option(parser)
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from catdog.models import describe

    listing = describe()
    if args.json:
        print_json(listing)
        return 0
    presets, backbones = listing["presets"], listing["backbones"]
    width = max(len(row["name"]) for row in presets + backbones)
    print(f"{'preset':<{width}}  {'size':>4}  {'parameters':>10}  {'trainable':>10}  description")
    for row in presets:
        print(f"{row['name']:<{width}}  {row['image_size']:>4}  {row['parameters']:>10,}  {row['trainable']:>10,}  "
              f"{row['description']}")
    print()
    print(f"{'backbone':<{width}}  {'size':>4}  {'parameters':>10}  {'fine-tunes from':<34}  description")
    for row in backbones:
        print(f"{row['name']:<{width}}  {row['image_size']:>4}  {row['parameters']:>10,}  {row['fine_tune_from']:<34}  "
              f"{row['description']}")
    return 0
