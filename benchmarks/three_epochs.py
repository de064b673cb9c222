#!/usr/bin/env python3
"""The models issue's quick check, over several seeds: `transfer` against `finetune` at 3 epochs.

    catdog train --model transfer|finetune --epochs 3 --seed S --data DATA --weights WEIGHTS

One seed's test split holds 200 images, where the two presets land within an image or two of
each other; each seed draws another split and other initial weights, so the mean over seeds
says more than any one of them. Writes `three-epochs.md` and `three-epochs.json` beside this
file: each run's test accuracy and loss, the mean, and for how many seeds `finetune` came out
ahead, level or behind.

    python benchmarks/three_epochs.py                        # seeds 42 (the default), 1, 2, 3, 4
    python benchmarks/three_epochs.py --seeds 42 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from catdog.cli.common import positive_int
from catdog.files import write_json, write_text
from catdog.report import Heading, Paragraph, Table, to_markdown
from catdog.runs.folder import HISTORY_FILE, METRICS_FILE, read_history

from bench import catdog_command, child_env, fmt
from benchkit import DEFAULT_DATA, DEFAULT_WEIGHTS, run_measured

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / "work" / "three-epochs"
PRESETS = ("transfer", "finetune")


def train(preset: str, seed: int, args: argparse.Namespace, env) -> dict[str, Any]:
    """One `catdog train` run; its test figures, best validation accuracy and time."""
    out = WORK_DIR / f"{preset}-seed{seed}"
    command = catdog_command("train", "--model", preset, "--epochs", str(args.epochs), "--seed", str(seed),
                             "--data", str(args.data), "--weights", str(args.weights), "--out", str(out))
    shutil.rmtree(out, ignore_errors=True)
    print(f"[three_epochs] {preset}, seed {seed}", file=sys.stderr, flush=True)
    measured = run_measured(command, log=WORK_DIR / f"{preset}-seed{seed}.log", env=env)
    record = {"preset": preset, "seed": seed, "command": shlex.join(command[1:]), "seconds": measured.seconds}
    if measured.returncode != 0:
        return record | {"error": f"exit status {measured.returncode}"}
    metrics = json.loads((out / METRICS_FILE).read_text())
    return record | {"test_accuracy": metrics["accuracy"], "test_loss": metrics["loss"], "test_n": metrics["n"],
                     "best_val_accuracy": max(row["val_accuracy"] for row in read_history(out / HISTORY_FILE))}


# The figures of each run, in the table's column order (each for transfer, then finetune): key, header, format.
FIGURES = [("test_accuracy", "test accuracy", lambda v: fmt(v, "%")),
           ("test_loss", "test loss", lambda v: "–" if v is None else f"{v:.3f}"),
           ("best_val_accuracy", "best val.", lambda v: fmt(v, "%"))]


def render(results: dict[str, Any]) -> str:
    """The Markdown page: one row per seed, then the means and the count of wins."""
    by = {(r["preset"], r["seed"]): r for r in results["runs"] if "error" not in r}
    seeds = results["seeds"]

    def mean(preset: str, key: str) -> float | None:
        values = [by[preset, s][key] for s in seeds if (preset, s) in by]
        return statistics.fmean(values) if values else None

    def cells(label: str, records: dict[str, dict]) -> list[str]:
        return [label, *(show(records[p].get(key)) for key, _, show in FIGURES for p in PRESETS)]

    rows = [cells(str(seed), {p: by.get((p, seed), {}) for p in PRESETS}) for seed in seeds]
    rows.append(cells("**mean**", {p: {key: mean(p, key) for key, _, _ in FIGURES} for p in PRESETS}))
    pairs = [(by["transfer", s]["test_accuracy"], by["finetune", s]["test_accuracy"])
             for s in seeds if ("transfer", s) in by and ("finetune", s) in by]
    ahead, level = sum(f > t for t, f in pairs), sum(f == t for t, f in pairs)
    not_measured = "".join(f"\n- not measured: {r['preset']}, seed {r['seed']}: {r['error']}"
                           for r in results["runs"] if "error" in r)
    epochs = results["epochs"]
    return to_markdown([
        Heading(f"`transfer` against `finetune` at {epochs} epochs, over {len(seeds)} seeds", level=1),
        Paragraph(f"Measured {results['date']} by `{results['command']}` ({results['seconds'] / 60:.1f} min).\n"
                  f"Each row: `catdog train --model transfer|finetune --epochs {epochs} --seed S --data DATA "
                  "--weights WEIGHTS`; each seed draws its own split (test split: 200 images of the reference data) "
                  "and its own initial weights."),
        Table(["seed", *(f"{p} {header}" for _, header, _ in FIGURES for p in PRESETS)], rows),
        Paragraph(f"`finetune` ahead on test accuracy for {ahead} of {len(pairs)} seeds, level for {level}, "
                  f"behind for {len(pairs) - ahead - level}.{not_measured}"),
    ], BENCH_DIR)


def write(results: dict[str, Any], out: Path) -> None:
    """The JSON record and the Markdown page, each written atomically."""
    write_json(out.with_suffix(".json"), results)
    write_text(out, render(results))


def seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("name at least one seed")
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--seeds", type=seed_list, default=[42, 1, 2, 3, 4], help="default: 42,1,2,3,4")
    add("--epochs", type=positive_int, default=3, help="total epochs of each run (default: 3)")
    add("--data", type=Path, default=DEFAULT_DATA, help=f"default: {DEFAULT_DATA}")
    add("--weights", type=Path, default=DEFAULT_WEIGHTS, help=f"default: {DEFAULT_WEIGHTS}")
    add("--out", type=Path, default=BENCH_DIR / "three-epochs.md",
        help="results file (default: benchmarks/three-epochs.md); JSON beside it")
    args = parser.parse_args(argv)
    for path in (args.data, args.weights):
        if not path.exists():
            parser.error(f"{path} does not exist")

    started = time.perf_counter()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    env = child_env(args.weights)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": shlex.join(["python", "benchmarks/three_epochs.py", *(sys.argv[1:] if argv is None else argv)]),
        "epochs": args.epochs, "seeds": args.seeds, "runs": [], "seconds": 0.0,
    }
    for seed in args.seeds:
        for preset in PRESETS:
            results["runs"].append(train(preset, seed, args, env))
            results["seconds"] = time.perf_counter() - started
            write(results, args.out)
    print(render(results), end="")
    return 1 if any("error" in r for r in results["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
