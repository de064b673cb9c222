"""`catdog explain`: per image, a picture of why the model gave its label (Grad-CAM)."""

from __future__ import annotations

import argparse
from pathlib import Path

from catdog.cli.common import add_json_option, add_run_argument, info, print_json
from catdog.errors import CatdogError
from catdog.outputs import UNLIKE_TRAINING_IMAGES

DEFAULT_OUT = "explanations"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="draw why a trained run labels images as it does (Grad-CAM heatmaps)",
        description="For each image (folders are searched recursively), write OUT/<name>.png: the photo, the photo "
        "under a heatmap of the regions that drove the prediction (Grad-CAM on the last convolutional layer: red "
        "raised the class's score most, blue not at all), and the label. A PNG that catdog wrote there before is "
        "replaced; any other file is left alone.",
    )
    add_run_argument(parser)
    parser.add_argument("sources", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files or folders of images")
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT, help="folder to write into (default: %(default)s)")
    parser.add_argument("--class", dest="class_name", metavar="NAME",
                        help="the class whose heatmap to draw (default: each image's predicted class)")
    add_json_option(parser)
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from catdog.explain.explainer import Explainer, write

    out = Path(args.out)
    _check_targets(out, args.sources)
    explainer = Explainer(args.run)
    taken: set[str] = set()
    written = skipped = 0

    def skip(path: str, reason: str) -> None:
        nonlocal skipped
        skipped += 1
        info(f"skipping {path}: {reason}")

    for explanation in explainer.explain_paths(args.sources, args.class_name, on_skip=skip):
        stem = Path(explanation.path).stem
        if explanation.labels is not None:  # a multi-label run: a picture per image and tag
            stem = f"{stem}-{explanation.explained}"
        path = write(explanation, out / _free_name(stem, taken))
        written += 1
        if args.json:
            print_json({**explanation.to_dict(), "explanation": str(path)})
        else:
            unlike = f", {UNLIKE_TRAINING_IMAGES}" if explanation.in_distribution is False else ""
            print(f"{path}: {explanation.label} ({explanation.probability:.1%}){unlike}; heatmap of "
                  f"{explanation.explained}", flush=True)
    if not written:
        raise CatdogError(f"no image could be explained ({skipped} unreadable)" if skipped
                          else "no image files found in the given paths")
    return 0


def _check_targets(out: Path, sources: list[str]) -> None:
    """Refuse, before any work, an --out that is not a folder, and any picture it would be written
    over that catdog did not write (the names of every image found, as `_free_name` gives them)."""
    from catdog import files
    from catdog.data.images import find_images

    files.check_replaceable(out, files.INTO_FOLDER)
    taken: set[str] = set()
    for path in find_images(sources):
        files.check_replaceable(out / _free_name(path.stem, taken), files.CATDOG_PNG)


def _free_name(stem: str, taken: set[str]) -> str:
    """`stem`.png, or `stem`-2.png and so on for a name already written by this command."""
    name, n = f"{stem}.png", 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}.png"
    taken.add(name)
    return name
