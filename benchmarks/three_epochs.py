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

from bench import catdog_command, child_env, fmt, markdown_table, read_history
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
    metrics = json.loads((out / "metrics.json").read_text())
    return record | {"test_accuracy": metrics["accuracy"], "test_loss": metrics["loss"], "test_n": metrics["n"],
                     "best_val_accuracy": max(read_history(out / "history.csv")["val_accuracy"])}


def render(results: dict[str, Any]) -> str:
    """The Markdown page: one row per seed, then the means and the count of wins."""
    by = {(r["preset"], r["seed"]): r for r in results["runs"] if "error" not in r}
    seeds = results["seeds"]
    rows = [[str(seed), *cells(by.get(("transfer", seed), {}), by.get(("finetune", seed), {}))] for seed in seeds]
    means = {p: {key: mean(by, p, seeds, key) for key in ("test_accuracy", "test_loss", "best_val_accuracy")}
             for p in PRESETS}
    rows.append(["**mean**", *cells(means["transfer"], means["finetune"])])
    pairs = [(by[("transfer", s)]["test_accuracy"], by[("finetune", s)]["test_accuracy"])
             for s in seeds if ("transfer", s) in by and ("finetune", s) in by]
    ahead = sum(f > t for t, f in pairs)
    level = sum(f == t for t, f in pairs)
    lines = [
        f"# `transfer` against `finetune` at {results['epochs']} epochs, over {len(seeds)} seeds",
        "",
        f"Measured {results['date']} by `{results['command']}` ({results['seconds'] / 60:.1f} min).",
        f"Each row: `catdog train --model transfer|finetune --epochs {results['epochs']} --seed S --data DATA "
        "--weights WEIGHTS`; each seed draws its own split (test split: 200 images of the seed data) and "
        "its own initial weights.",
        "",
        markdown_table(COLUMNS, rows),
        "",
        f"`finetune` ahead on test accuracy for {ahead} of {len(pairs)} seeds, level for {level}, "
        f"behind for {len(pairs) - ahead - level}.",
    ]
    lines += [f"- not measured: {r['preset']}, seed {r['seed']}: {r['error']}" for r in results["runs"] if "error" in r]
    return "\n".join(lines) + "\n"


COLUMNS = ["seed", "transfer test accuracy", "finetune test accuracy", "transfer test loss", "finetune test loss",
           "transfer best val.", "finetune best val."]


def cells(transfer: dict[str, Any], finetune: dict[str, Any]) -> list[str]:
    """One row's figures after its label: test accuracy, test loss, best validation accuracy, each preset."""
    def loss(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    return [fmt(transfer.get("test_accuracy"), "%"), fmt(finetune.get("test_accuracy"), "%"),
            loss(transfer.get("test_loss")), loss(finetune.get("test_loss")),
            fmt(transfer.get("best_val_accuracy"), "%"), fmt(finetune.get("best_val_accuracy"), "%")]


def mean(by: dict, preset: str, seeds: list[int], key: str) -> float | None:
    values = [by[(preset, s)][key] for s in seeds if (preset, s) in by]
    return statistics.fmean(values) if values else None


def write(results: dict[str, Any], out: Path) -> None:
    """The JSON record and the Markdown page, each written atomically."""
    from catdog.files import write_json, write_text

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
    parser.add_argument("--seeds", type=seed_list, default=[42, 1, 2, 3, 4], help="default: 42,1,2,3,4")
    parser.add_argument("--epochs", type=int, default=3, help="total epochs of each run (default: 3)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"default: {DEFAULT_DATA}")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help=f"default: {DEFAULT_WEIGHTS}")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "three-epochs.md",
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
