#!/usr/bin/env python3
"""Scaling out, measured on this machine: several replicas against one, Ray against `catdog predict`,
and scanning a folder of 100,000 files, first and again.

    python benchmarks/scale.py                  # writes benchmarks/scale.md and scale.json
    python benchmarks/scale.py --files 10000    # a smaller scan

1. `catdog train --model transfer --epochs 2` on the reference data with `--strategy none`, then with
   `CATDOG_CPU_DEVICES=2 ... --strategy mirrored`: whole command, time per epoch, test accuracy.
   The same for `scratch` (trained end to end, where the replicas do the work of every step).
2. `catdog predict RUN FOLDER --json` on 1,000 photos (the run's ONNX export) against the same
   with `--engine ray --out preds.parquet` (a local Ray), and each on one photo: the difference is
   each engine's fixed cost (start-up; for Ray its cluster and actors).
3. A folder of N small generated JPEGs in 10 class folders: listing it (os.walk), `catdog data
   info` the first time (every file checked) and the second time (the scan cache).

Every command runs in a child process of its own (benchkit.run_measured). On 2 cores, two replicas
cannot be faster than one: the point is that they work and what they cost.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from catdog import files
from catdog.cli.common import positive_int
from catdog.report import Table, to_markdown
from catdog.runs.folder import read_history

from benchkit import DEFAULT_DATA, DEFAULT_WEIGHTS, REPO, image_files, link_flat, run_measured

BENCH_DIR = Path(__file__).resolve().parent
WORK = BENCH_DIR / "work" / "scale"


def catdog(*args: str) -> list[str]:
    return [sys.executable, "-m", "catdog", *args]


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "TF_CPP_MIN_LOG_LEVEL": "3",
            "CATDOG_HOME": str(WORK / "home"), **extra}


def checked(measured, what: str):
    if measured.returncode != 0:
        raise SystemExit(f"{what} failed (exit {measured.returncode}); see the logs in {WORK}")
    return measured


def replicas(data: Path, weights: Path, epochs: int) -> list[dict]:
    rows = []
    for preset in ("transfer", "scratch"):
        for strategy, devices in (("none", "1"), ("mirrored", "2")):
            out = WORK / f"{preset}-{strategy}"
            shutil.rmtree(out, ignore_errors=True)
            command = catdog("train", "--model", preset, "--epochs", str(epochs), "--data", str(data),
                             "--weights", str(weights) if preset == "transfer" else "none",
                             "--strategy", strategy, "--out", str(out))
            measured = checked(run_measured(command, log=WORK / f"{out.name}.log",
                                            env=env(CATDOG_CPU_DEVICES=devices)), out.name)
            history = read_history(out / "history.csv")
            config = json.loads((out / "config.json").read_text())
            rows.append({"preset": preset, "strategy": strategy, "replicas": config["replicas"],
                         "seconds": measured.seconds, "epoch_seconds": [row["seconds"] for row in history],
                         "test_accuracy": json.loads((out / "metrics.json").read_text())["accuracy"]})
    return rows


def prediction(data: Path, weights: Path, count: int) -> dict:
    run = WORK / "predict-run"
    shutil.rmtree(run, ignore_errors=True)
    checked(run_measured(catdog("train", "--model", "transfer", "--epochs", "1", "--data", str(data), "--weights",
                                str(weights), "--out", str(run)), log=WORK / "predict-run.log", env=env()), "training")
    checked(run_measured(catdog("export", str(run), "--format", "onnx"), log=WORK / "export.log", env=env()), "export")
    photos = [p for split in ("cats", "dogs") for p in image_files(data / "validation" / split)]
    folder = WORK / "photos"
    shutil.rmtree(folder, ignore_errors=True)
    link_flat(photos[:count], folder)
    one = WORK / "one"
    shutil.rmtree(one, ignore_errors=True)
    link_flat(photos[:1], one)
    result = {"images": count}
    for engine, extra in (("local", ["--json"]), ("ray", ["--engine", "ray"])):
        for name, source in (("folder", folder), ("one", one)):
            out = WORK / f"{engine}-{name}.parquet"
            out.unlink(missing_ok=True)
            command = catdog("predict", str(run), str(source), *extra, "--out", str(out))
            measured = checked(run_measured(command, log=WORK / f"predict-{engine}-{name}.log", env=env()),
                               f"{engine} prediction")
            result[f"{engine}_{name}_seconds"] = measured.seconds
        folder_s, one_s = result[f"{engine}_folder_seconds"], result[f"{engine}_one_seconds"]
        result[f"{engine}_images_per_second"] = count / folder_s
        result[f"{engine}_steady_images_per_second"] = (count - 1) / max(folder_s - one_s, 1e-9)
    return result


def scanning(n_files: int) -> dict:
    from PIL import Image

    folder = WORK / f"scan-{n_files}"
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        for i in range(n_files):
            path = folder / f"class{i % 10}" / f"{i:07d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (32, 32), ((i * 7) % 256, (i * 13) % 256, (i * 29) % 256)).save(path, quality=80)
        (folder / ".complete").write_text(f"{time.perf_counter() - started:.0f} s to generate\n")
    shutil.rmtree(WORK / "home" / "scans", ignore_errors=True)
    started = time.perf_counter()
    listed = sum(len(names) for _, _, names in os.walk(folder))
    listing = time.perf_counter() - started
    result = {"files": n_files, "listed": listed, "listing_seconds": listing}
    for attempt in ("first", "second"):
        measured = checked(run_measured(catdog("data", "info", "--data", str(folder), "--json"),
                                        stdout=WORK / f"scan-{attempt}.json", log=WORK / "scan.log", env=env()),
                           f"{attempt} scan")
        result[f"{attempt}_scan_seconds"] = measured.seconds
    return result


def _machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "a CPU")
    return f"{os.cpu_count()} cores ({model})"


def s(seconds: float) -> str:
    return f"{seconds:.1f} s"


def render(results: dict) -> str:
    rows = []
    for row in results["replicas"]:
        epochs = row["epoch_seconds"]
        fastest = s(min(epochs[1:])) if len(epochs) > 1 else "-"
        rows.append([f"`{row['preset']}`", row["strategy"], str(row["replicas"]), s(row["seconds"]),
                     s(epochs[0]), fastest, f"{100 * row['test_accuracy']:.1f} %"])
    p, scan = results["prediction"], results["scanning"]
    blocks = [
        f"# Scaling out, measured\n\n{results['when']}, {results['machine']}, load average "
        f"{results['load_average']}. Command: `{results['command']}`.",
        "## Two logical CPU replicas against one device\n\n`catdog train --model PRESET --epochs "
        f"{results['epochs']} --data DATA --strategy none`, and with `CATDOG_CPU_DEVICES=2 ... --strategy mirrored`"
        " (global batch 32, split 16 + 16). On 2 cores two replicas share the same cores: no gain is expected.",
        to_markdown([Table(["preset", "strategy", "replicas", "whole command", "first epoch", "fastest later epoch",
                            "test accuracy"], rows)], Path(".")),
        f"## Ray batch prediction against `catdog predict`\n\nThe ONNX export of a `transfer` run (224 px) on "
        f"{p['images']} photos, written to Parquet; the fixed cost is the time for one photo.",
        to_markdown([Table(["engine", "whole command", "images/s", "one image (fixed cost)", "images/s once started"], [
            [engine, s(p[f"{engine}_folder_seconds"]), f"{p[f'{engine}_images_per_second']:.0f}",
             s(p[f"{engine}_one_seconds"]), f"{p[f'{engine}_steady_images_per_second']:.0f}"]
            for engine in ("local", "ray")])], Path(".")),
        f"## Scanning {scan['files']:,} files\n\n`catdog data info --data FOLDER --json` on {scan['files']:,} "
        "generated 32x32 JPEGs in 10 class folders.",
        to_markdown([Table(["step", "seconds"], [
            ["listing (os.walk)", f"{scan['listing_seconds']:.1f}"],
            ["first scan (every file checked)", f"{scan['first_scan_seconds']:.1f}"],
            ["second scan (unchanged: the scan cache)", f"{scan['second_scan_seconds']:.1f}"]])], Path(".")),
    ]
    return "\n\n".join(block.strip() for block in blocks) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--epochs", type=positive_int, default=2)
    parser.add_argument("--predict-images", type=positive_int, default=1000)
    parser.add_argument("--files", type=positive_int, default=100_000)
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    results = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": _machine(),
               "command": " ".join(["python benchmarks/scale.py", *(argv or sys.argv[1:])]), "epochs": args.epochs}
    results["load_at_start"] = f"{os.getloadavg()[0]:.1f}"
    results["scanning"] = scanning(args.files)
    results["prediction"] = prediction(args.data, args.weights, args.predict_images)
    results["replicas"] = replicas(args.data, args.weights, args.epochs)
    results["load_average"] = f"{results.pop('load_at_start')} at the start, {os.getloadavg()[0]:.1f} at the end"
    files.write_json(BENCH_DIR / "scale.json", results)
    files.write_text(BENCH_DIR / "scale.md", render(results))
    print(BENCH_DIR / "scale.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
