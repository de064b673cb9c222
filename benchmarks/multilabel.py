#!/usr/bin/env python3
"""Multi-label classification on photos that hold a cat, a dog, both or neither.

The set is the one the tests train on (`tests/messy.py`'s `tag_pairs`), larger: each image is two
tiles side by side, each a cat, a dog (the middle of one of the reference's training photos, each
photo used once) or an empty textured backdrop, tagged in a Kaggle-style `tags.csv` (`ID,TAGS`,
extensionless ids, space-separated tags, empty for two backdrops). Each preset then trains at its
defaults, as the issue's command has it:

    catdog train --model PRESET --data DIR --labels DIR/tags.csv --path-column ID --label-column TAGS

and is scored on its own test split (`metrics.json`: mean average precision, micro and macro F1,
subset accuracy, Hamming loss) and on two folders made from the reference's validation photos, which
no run trains on: pairs of a cat and a dog (the answer is `cats dogs`) and pairs of backdrops (no tag).
Writes `multilabel.md` and `multilabel.json` beside this file.

    python benchmarks/multilabel.py [--pairs 1000] [--presets transfer,finetune] [--data D] [--weights W]
    python benchmarks/multilabel.py --render    # multilabel.md again from multilabel.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from catdog.files import write_json, write_text
from catdog.report import Heading, Paragraph, Table, to_markdown

from bench import catdog_command, child_env, fmt, shown
from benchkit import DEFAULT_DATA, DEFAULT_WEIGHTS, REPO, run_measured

sys.path.insert(0, str(REPO / "tests"))
from messy import backdrop, pair_of, photos, tag_pairs, tile_of  # noqa: E402  (the tests' own maker)

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / "work" / "multilabel"
CHECKS = 100


def make_checks(data: Path, out: Path, n: int = CHECKS, seed: int = 7) -> Path:
    """`both/`: `n` pairs of a cat and a dog (sides alternating); `empty/`: `n` pairs of backdrops."""
    for name in ("both", "empty"):
        (out / name).mkdir(parents=True)
    rng = np.random.default_rng(seed)
    cats, dogs = photos(data, "cats", n, folder="validation"), photos(data, "dogs", n, folder="validation")
    for i in range(n):
        pair_of(*[tile_of(cats[i]), tile_of(dogs[i])][:: 1 if i % 2 else -1]).save(out / "both" / f"{i}.jpg")
        pair_of(backdrop(rng), backdrop(rng)).save(out / "empty" / f"{i}.jpg")
    return out


def predicted_tags(run: Path, folder: Path, env: dict[str, str]) -> list[list[str]]:
    """The tag lists `catdog predict RUN FOLDER --json` gives."""
    listing = WORK_DIR / f"{run.name}-{folder.name}.jsonl"
    measured = run_measured(catdog_command("predict", str(run), str(folder), "--json"), stdout=listing,
                            log=WORK_DIR / "predict.log", env=env)
    if measured.returncode != 0:
        raise SystemExit(f"[multilabel] catdog predict failed; see {WORK_DIR / 'predict.log'}")
    return [json.loads(line)["labels"] for line in listing.read_text().splitlines()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000, help="images in the set (default: %(default)s)")
    parser.add_argument("--presets", default="transfer,finetune", help="presets to train (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the reference data set (default: %(default)s)")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="MobileNetV2 weights (no top)")
    parser.add_argument("--render", action="store_true", help="measure nothing: write multilabel.md from the .json")
    args = parser.parse_args(argv)
    if args.render:
        write_text(BENCH_DIR / "multilabel.md", render(json.loads((BENCH_DIR / "multilabel.json").read_text())))
        return 0

    shutil.rmtree(WORK_DIR, ignore_errors=True)
    WORK_DIR.mkdir(parents=True)
    data = WORK_DIR / "pairs"
    tags = tag_pairs(args.data, data, args.pairs, seed=0)
    checks = make_checks(args.data, WORK_DIR / "checks")
    env = child_env(args.weights)
    results = {"started": time.strftime("%Y-%m-%d %H:%M"), "load_average": os.getloadavg(), "pairs": args.pairs,
               "tag_sets": _tag_sets(tags), "checks": CHECKS, "runs": {}}
    for preset in args.presets.split(","):
        run = WORK_DIR / preset
        command = catdog_command("train", "--model", preset, "--data", str(data), "--labels", str(tags),
                                 "--path-column", "ID", "--label-column", "TAGS", "--out", str(run))
        print(f"[multilabel] {shown(command)}", file=sys.stderr)
        measured = run_measured(command, log=WORK_DIR / f"{preset}.log", env=env)
        if measured.returncode != 0:
            results["runs"][preset] = {"command": shown(command), "error": f"exit {measured.returncode}"}
            continue
        metrics = json.loads((run / "metrics.json").read_text())
        both, empty = predicted_tags(run, checks / "both", env), predicted_tags(run, checks / "empty", env)
        results["runs"][preset] = {
            "command": shown(command), "seconds": measured.seconds, "peak_rss_bytes": measured.peak_rss_bytes,
            "epochs": len((run / "history.csv").read_text().splitlines()) - 1,
            **{key: metrics[key] for key in ("n", "mean_average_precision", "micro_f1", "macro_f1", "subset_accuracy",
                                             "hamming_loss")},
            "per_tag": {tag: {key: row[key] for key in ("n", "precision", "recall", "f1", "average_precision",
                                                        "threshold")} for tag, row in metrics["per_tag"].items()},
            "both_right": sum(labels == ["cats", "dogs"] for labels in both),
            "empty_right": sum(labels == [] for labels in empty),
        }
    results["load_average_end"] = os.getloadavg()
    write_json(BENCH_DIR / "multilabel.json", results)
    write_text(BENCH_DIR / "multilabel.md", render(results))
    print(BENCH_DIR / "multilabel.md")
    return 0


def _tag_sets(tags: Path) -> dict[str, int]:
    """How many images hold each set of tags."""
    counts: dict[str, int] = {}
    for line in tags.read_text().splitlines()[1:]:
        tag_set = line.split(",", 1)[1] or "(none)"
        counts[tag_set] = counts.get(tag_set, 0) + 1
    return dict(sorted(counts.items()))


def render(results: dict) -> str:
    runs = results["runs"]
    sets = ", ".join(f"{name} {count}" for name, count in results["tag_sets"].items())
    blocks = [
        Heading("Multi-label: a cat, a dog, both or neither", 1),
        Paragraph(f"Measured by `python benchmarks/multilabel.py` on {results['started']} (load average "
                  f"{results['load_average'][0]:.1f} at the start, {results['load_average_end'][0]:.1f} at the end), "
                  f"on the 2-core CPU machine. {results['pairs']} images, each two tiles side by side (a cat, a dog or "
                  f"an empty backdrop), made from the reference's training photos and tagged in a Kaggle-style CSV "
                  f"(tag sets: {sets}). Each preset trains at its defaults and is scored on its own test split; then "
                  f"`catdog predict --json` on {results['checks']} pairs of a cat and a dog and {results['checks']} "
                  "pairs of backdrops made from the validation photos, which no run trains on."),
        Table(["preset", "test images", "mean AP", "micro F1", "macro F1", "subset accuracy", "Hamming loss",
               "both animals: `cats dogs`", "backdrops: no tag", "epochs", "time"],
              [[f"`{name}`", f"failed: {r['error']}", *[""] * 9] if "error" in r else
               [f"`{name}`", str(r["n"]), fmt(r["mean_average_precision"], "%"), fmt(r["micro_f1"], "%"),
                fmt(r["macro_f1"], "%"), fmt(r["subset_accuracy"], "%"), f"{r['hamming_loss']:.3f}",
                f"{r['both_right']} of {results['checks']}", f"{r['empty_right']} of {results['checks']}",
                str(r["epochs"]), f"{r['seconds']:.0f} s"] for name, r in runs.items()]),
        Paragraph("Per tag, on the test split (the threshold is the tag's, chosen for the best F1 on validation):"),
        Table(["preset", "tag", "images", "precision", "recall", "F1", "AP", "threshold"],
              [[f"`{name}`", tag, str(row["n"]), fmt(row["precision"], "%"), fmt(row["recall"], "%"),
                fmt(row["f1"], "%"), fmt(row["average_precision"], "%"), f"{row['threshold']:.2f}"]
               for name, r in runs.items() if "error" not in r for tag, row in r["per_tag"].items()]),
        Paragraph("Commands: " + "; ".join(f"`{r['command']}`" for r in runs.values()) + "."),
    ]
    return to_markdown(blocks, BENCH_DIR)


if __name__ == "__main__":
    sys.exit(main())
