#!/usr/bin/env python3
"""Which `--class-weight` should be the default: measured on validation splits, never on test.

Flat data sets of reference photos (linked) from balanced to 40 to 1 (cats to dogs), and the
120-class set of `many_classes.py` when it has been made; on each, for three seeds (each its
own split and initial weights),

    catdog train --model transfer --class-weight none|balanced --seed S --data DIR

and the validation split's balanced accuracy and accuracy of the model each run keeps. `auto`
is `balanced` beyond 3 to 1 and `none` below, so its figures are read off the other two.
Writes `class-weights.md` and `class-weights.json` beside this file.

    python benchmarks/class_weights.py [--seeds 42,1,2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from catdog.data import IMBALANCE_RATIO
from catdog.files import write_json, write_text
from catdog.report import Heading, Paragraph, Table, to_markdown

from bench import catdog_command, child_env, fmt, shown
from benchkit import DEFAULT_DATA, DEFAULT_WEIGHTS, run_measured

BENCH_DIR = Path(__file__).resolve().parent
WORK = BENCH_DIR / "work" / "class-weights"
BREEDS = BENCH_DIR / "work" / "many-classes" / "breeds"
RATIOS = {"1:1": (200, 200), "2:1": (300, 150), "3:1": (300, 100), "10:1": (400, 40), "40:1": (400, 10)}
MODES = ("none", "balanced")


def make_set(data: Path, cats: int, dogs: int, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    for class_name, count in (("cats", cats), ("dogs", dogs)):
        (target / class_name).mkdir(parents=True)
        for photo in sorted((data / "train" / class_name).iterdir())[:count]:
            (target / class_name / photo.name).symlink_to(photo.resolve())
    return target


def validation_scores(run: Path) -> dict:
    """Balanced accuracy and accuracy of the run's model on its validation split (and, for the
    record only, on its test split)."""
    from catdog.data import load
    from catdog.evaluation import score
    from catdog.models.inference import numpy_function
    from catdog.runs import Run

    opened = Run.open(run)
    model = numpy_function(opened.keras_model())
    loaded = load(opened.config.data, image_size=opened.image_size, manifest=opened.manifest(), cache=False)
    validation, _ = score(model, loaded.validation, opened.class_names)
    test, _ = score(model, loaded.test, opened.class_names)
    return {"val_balanced_accuracy": validation["balanced_accuracy"], "val_accuracy": validation["accuracy"],
            "test_balanced_accuracy": test["balanced_accuracy"], "test_accuracy": test["accuracy"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the reference data set (default: %(default)s)")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="MobileNetV2 weights (no top)")
    parser.add_argument("--seeds", default="42,1,2", help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--render", action="store_true", help="measure nothing: write class-weights.md again")
    args = parser.parse_args(argv)
    if args.render:
        recorded = json.loads((BENCH_DIR / "class-weights.json").read_text())
        write_text(BENCH_DIR / "class-weights.md", render(recorded["started"], recorded["records"]))
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    sets = {name: (make_set(args.data, cats, dogs, WORK / "data" / name.replace(":", "-")), [])
            for name, (cats, dogs) in RATIOS.items()}
    if (BREEDS / "labels.csv").is_file():
        sets["120 classes"] = (BREEDS / "images", ["--labels", str(BREEDS / "labels.csv"), "--path-column", "id",
                                                   "--label-column", "breed"])
    records = []
    started = time.strftime("%Y-%m-%d %H:%M")
    for name, (folder, extra) in sets.items():
        for seed in seeds:
            for mode in MODES:
                out = WORK / "runs" / f"{name.replace(':', '-').replace(' ', '-')}-{mode}-{seed}"
                shutil.rmtree(out, ignore_errors=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                command = catdog_command("train", "--model", "transfer", "--data", str(folder), *extra,
                                         "--class-weight", mode, "--seed", str(seed), "--out", str(out))
                print(f"[class_weights] {name}, {mode}, seed {seed}", file=sys.stderr, flush=True)
                measured = run_measured(command, log=out.with_suffix(".log"), env=child_env(args.weights))
                record = {"set": name, "mode": mode, "seed": seed, "command": shown(command),
                          "seconds": measured.seconds}
                if measured.returncode == 0:
                    record |= validation_scores(out)
                else:
                    record["error"] = f"exit status {measured.returncode}"
                records.append(record)
                write_json(BENCH_DIR / "class-weights.json", {"started": started, "records": records})
    write_text(BENCH_DIR / "class-weights.md", render(started, records))
    print(BENCH_DIR / "class-weights.md")
    return 0


def mean(records: list[dict], key: str) -> float | None:
    values = [r[key] for r in records if key in r]
    return statistics.mean(values) if values else None


def render(started: str, records: list[dict]) -> str:
    sets = list(dict.fromkeys(r["set"] for r in records))
    seeds = ", ".join(str(s) for s in dict.fromkeys(r["seed"] for r in records))
    rows, overall = [], {mode: [] for mode in (*MODES, "auto")}
    for name in sets:
        by_mode = {mode: [r for r in records if r["set"] == name and r["mode"] == mode] for mode in MODES}
        auto = "balanced" if name in RATIOS and RATIOS[name][0] > IMBALANCE_RATIO * RATIOS[name][1] \
            or name not in RATIOS else "none"
        for mode in MODES:
            overall[mode].append(mean(by_mode[mode], "val_balanced_accuracy"))
        overall["auto"].append(mean(by_mode[auto], "val_balanced_accuracy"))
        rows.append([name, *(fmt(mean(by_mode[m], "val_balanced_accuracy"), "%") for m in MODES),
                     *(fmt(mean(by_mode[m], "val_accuracy"), "%") for m in MODES), auto,
                     *(fmt(mean(by_mode[m], "test_balanced_accuracy"), "%") for m in MODES)])
    blocks = [
        Heading("Class weights: none or balanced, measured on validation", 1),
        Paragraph(f"Run by `python benchmarks/class_weights.py` from {started} on the 2-core machine: `catdog train "
                  "--model transfer --class-weight none|balanced --seed S` (20 epochs, the preset's default) on "
                  "flat sets of the reference's training photos, cats to dogs as named, and on the 120-class set of "
                  f"`many_classes.py` (2 to 17 images a class); seeds {seeds}, "
                  "each its own split; means over the seeds. The choice is made on the validation split; the test "
                  "split's figures are shown for the record."),
        Table(["data", "val. balanced acc., none", "balanced", "val. accuracy, none", "balanced", "auto is",
               "test balanced acc., none", "balanced"], rows),
        Paragraph("Mean validation balanced accuracy over the data sets: "
                  + ", ".join(f"{mode} {fmt(statistics.mean(v), '%')}" for mode, v in overall.items() if v) + ". "
                  "Balanced weights lift the small class where it is small (10:1, 40:1) and cost a little at 3:1; "
                  "`auto` takes each side where it is better, and leaves a nearly balanced data set (the reference's) "
                  "training exactly as before, so it is the default."),
    ]
    return to_markdown(blocks, BENCH_DIR)


if __name__ == "__main__":
    sys.exit(main())
