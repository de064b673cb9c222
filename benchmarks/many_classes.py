#!/usr/bin/env python3
"""The issue's 120-breed case, made from the reference photos, trained with the default settings.

Kaggle's dog-breed data sets come as one folder of images named by ids and a `labels.csv`
(`id,breed`, ids without extensions), with 120 classes of a few images each. The reference data set
has two classes, so this makes 120 from it: a class is an animal (cat, dog), a rotation (0, 90, 180,
270 degrees) and one of 15 colour casts, and holds 2 to 17 photos (drawn at random, seeded),
each photo used once. Then it runs, with every default,

    catdog run --data DIR/images --labels DIR/labels.csv --path-column id --label-column breed

and writes `many-classes.md` and `many-classes.json` beside this file: the classes' sizes,
what the split left out of validation and test, the baseline, and each model's test accuracy,
balanced accuracy, macro F1 and top-5 accuracy, with the pairs of classes the chosen model
confuses most.

    python benchmarks/many_classes.py [--data REFERENCE_DATA] [--weights WEIGHTS]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

from PIL import Image, ImageFilter, ImageOps

from catdog.files import write_json, write_text
from catdog.report import Heading, Paragraph, Table, to_markdown

from bench import catdog_command, child_env, fmt, shown
from benchkit import DEFAULT_DATA, DEFAULT_WEIGHTS, run_measured

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / "work" / "many-classes"
ROTATIONS = (0, 90, 180, 270)


def _channels(order: str):
    return lambda image: Image.merge("RGB", [image.getchannel(c) for c in order])


# Fifteen looks a photo can be given, each plain to see (a colour cast alone is too faint for the
# frozen features to tell 15 of them apart from 7 photos each: measured, 4.5 % out of fold).
LOOKS = {
    "plain": lambda image: image,
    "grey": lambda image: ImageOps.grayscale(image).convert("RGB"),
    "inverted": ImageOps.invert,
    "sepia": lambda image: ImageOps.colorize(ImageOps.grayscale(image), (40, 20, 0), (255, 230, 180)),
    "posterised": lambda image: ImageOps.posterize(image, 2),
    "solarised": lambda image: ImageOps.solarize(image, 128),
    "edges": lambda image: image.filter(ImageFilter.FIND_EDGES),
    "embossed": lambda image: image.filter(ImageFilter.EMBOSS),
    "blurred": lambda image: image.filter(ImageFilter.GaussianBlur(6)),
    "bgr": _channels("BGR"),
    "gbr": _channels("GBR"),
    "brg": _channels("BRG"),
    "red": lambda image: Image.blend(image, Image.new("RGB", image.size, (230, 30, 30)), 0.5),
    "blue": lambda image: Image.blend(image, Image.new("RGB", image.size, (30, 60, 230)), 0.5),
    "mirrored": ImageOps.mirror,
}
SMALLEST, LARGEST = 2, 17


def make_breeds(data: Path, out: Path, seed: int = 0) -> dict[str, int]:
    """Write the 120-class set into `out` (images/<id>.jpg and labels.csv); its class sizes."""
    rng = random.Random(seed)
    pools = {animal: sorted((data / "train" / f"{animal}s").iterdir()) + sorted((data / "validation" /
                                                                                   f"{animal}s").iterdir())
             for animal in ("cat", "dog")}
    for pool in pools.values():
        rng.shuffle(pool)
    shutil.rmtree(out, ignore_errors=True)
    (out / "images").mkdir(parents=True)
    rows, sizes = [], {}
    for animal, pool in pools.items():
        for rotation in ROTATIONS:
            for look, change in LOOKS.items():
                breed = f"{animal}_{rotation:03d}_{look}"
                sizes[breed] = rng.randint(SMALLEST, LARGEST)
                for _ in range(sizes[breed]):
                    with Image.open(pool.pop()) as photo:
                        image = change(photo.convert("RGB").rotate(rotation, expand=True))
                    image_id = f"{rng.getrandbits(128):032x}"
                    image.save(out / "images" / f"{image_id}.jpg", quality=90)
                    rows.append(f"{image_id},{breed}")
    rng.shuffle(rows)
    (out / "labels.csv").write_text("id,breed\n" + "\n".join(rows) + "\n")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the reference data set (default: %(default)s)")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="MobileNetV2 weights (no top)")
    args = parser.parse_args(argv)

    data, run = WORK_DIR / "breeds", WORK_DIR / "run"
    sizes = make_breeds(args.data, data)
    shutil.rmtree(run, ignore_errors=True)
    command = catdog_command("run", "--data", str(data / "images"), "--labels", str(data / "labels.csv"),
                             "--path-column", "id", "--label-column", "breed", "--out", str(run))
    print(f"[many_classes] {len(sizes)} classes, {sum(sizes.values())} images: {shown(command)}", file=sys.stderr)
    started = time.strftime("%Y-%m-%d %H:%M")
    measured = run_measured(command, log=WORK_DIR / "run.log", env=child_env(args.weights))
    if measured.returncode != 0:
        print(f"[many_classes] failed (exit {measured.returncode}); see {WORK_DIR / 'run.log'}", file=sys.stderr)
        return 1
    summary = json.loads((run / "summary.json").read_text())
    best = next(m for m in summary["models"] if m["preset"] == summary["best"])
    confused = json.loads((Path(best["run"]) / "metrics.json").read_text())["most_confused"]
    results = {"started": started, "command": shown(command), "seconds": measured.seconds, "sizes": sizes,
               "data": {k: summary["data"][k] for k in ("splits", "missing", "imbalance", "baseline_accuracy",
                                                        "baseline_balanced_accuracy")},
               "models": summary["models"], "best": summary["best"], "most_confused": confused,
               "audit": {k: len(summary["audit"][k]) for k in ("duplicates", "label_issues", "outliers")}}
    write_json(BENCH_DIR / "many-classes.json", results)
    write_text(BENCH_DIR / "many-classes.md", render(results))
    print(BENCH_DIR / "many-classes.md")
    return 0


def render(results: dict) -> str:
    sizes, data = results["sizes"], results["data"]
    counts = {split: sum(c.values()) for split, c in data["splits"].items()}
    blocks = [
        Heading("120 classes of 2 to 17 images, trained with the default settings", 1),
        Paragraph(f"Made by `python benchmarks/many_classes.py` on {results['started']} from the reference photos: "
                  f"{len(sizes)} classes (cat or dog, 4 rotations, 15 looks), {sum(sizes.values())} images, "
                  f"{min(sizes.values())} to {max(sizes.values())} per class, in one folder named by ids with a "
                  "`labels.csv` (`id,breed`, no extensions), as Kaggle's breed data sets come. Then, in "
                  f"{results['seconds'] / 60:.0f} minutes on the 2-core machine: `{results['command']}`."),
        Paragraph(f"Split: {counts['train']} training, {counts['validation']} validation and {counts['test']} test "
                  f"images; {len(data['missing']['validation'])} classes have no validation image and "
                  f"{len(data['missing']['test'])} no test image (too small to spare one; training comes first). "
                  f"The largest class has {data['imbalance']:.1f}x the training images of the smallest. Baseline "
                  f"(always the most frequent class): accuracy {fmt(data['baseline_accuracy'], '%')}, balanced "
                  f"accuracy {fmt(data['baseline_balanced_accuracy'], '%')}."),
        Table(["model", "test accuracy", "balanced accuracy", "macro F1", "top-5 accuracy", "training time"],
              [[f"`{m['preset']}`", fmt(m["test_accuracy"], "%"), fmt(m["test_balanced_accuracy"], "%"),
                fmt(m["test_macro_f1"], "%"), fmt(m["test_top_5_accuracy"], "%"), f"{m['training_seconds']:.0f} s"]
               for m in results["models"]]),
        Paragraph(f"Chosen by validation accuracy: `{results['best']}`. The pairs it confuses most on the test "
                  "split (true class, predicted class, images):"),
        Table(["true", "predicted", "images"],
              [[f"`{c['true']}`", f"`{c['predicted']}`", str(c["count"])] for c in results["most_confused"]]),
        Paragraph(f"The run's audit: {results['audit']['duplicates']} duplicate groups, "
                  f"{results['audit']['label_issues']} suspected label errors, {results['audit']['outliers']} "
                  "outliers."),
    ]
    return to_markdown(blocks, BENCH_DIR)


if __name__ == "__main__":
    sys.exit(main())
