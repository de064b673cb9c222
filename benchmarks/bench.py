#!/usr/bin/env python3
"""The catdog benchmark: catdog against the seed recipe, on the same data, machine and epochs.

Each repeat trains every catdog preset with `catdog train` (the whole command is timed),
trains the seed's four models with `seed_recipe.py` and scores them on catdog's leak-free
test split, and times `catdog predict` over a folder of JPEGs against a loop calling
`model.predict` on one image at a time. Once, it measures the peak memory of `catdog run`
with every preset. It writes `results.md` and `results.json` beside this file, with
medians over the repeats, the ratios to the seed, and each target of the issue passed or not.

    python benchmarks/bench.py                 # the full benchmark (hours on 2 cores)
    python benchmarks/bench.py --quick         # a few minutes' check: results-quick.md
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from benchkit import DEFAULT_DATA, DEFAULT_WEIGHTS, REPO, image_files, link_flat, link_subset, run_measured

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / "work"
# Hand-written notes on the targets the last full run missed, copied into results.md.
MISSES = BENCH_DIR / "misses.md"

PRESETS = ("scratch", "augmented", "preprocessed", "transfer", "finetune", "cnn")
PRETRAINED_ORDER = ("transfer", "finetune")
PRETRAINED = frozenset(PRETRAINED_ORDER)
SEED_MODELS = (1, 2, 3, 4)
SEED_EPOCHS = 20
# The seed model with the same architecture as each from-scratch preset.
SEED_COUNTERPART = {"scratch": 1, "augmented": 2, "preprocessed": 3}

QUICK_EPOCHS = 2
QUICK_PER_CLASS = {"train": 100, "validation": 50}
QUICK_PREDICT_IMAGES = 100
PREDICT_IMAGES = 1000
RUN_MEMORY_EPOCHS = 2

# The targets.
TRANSFER_ACCURACY = 0.97
TRANSFER_TIME_RATIO = 1 / 8
FINETUNE_ACCURACY = 0.985
SCRATCH_EPOCH_RATIO = 0.6
CNN_ACCURACY = 0.85
CNN_SECONDS = 30 * 60
PREDICT_SPEEDUP = 3.0
PREDICT_RATE = 200.0  # images per second
MEMORY_BYTES = 4e9


@dataclass
class Job:
    """One `catdog train` command: a preset, possibly with extra options, under a name."""

    name: str
    preset: str
    extra: list[str] = field(default_factory=list)


# Measuring ----------------------------------------------------------------------------


def catdog_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "catdog", *args]


def shown(command: Sequence[str]) -> str:
    """`command` as a person would type it in the repository: `catdog ...`, relative paths."""
    words = list(command)
    if words[:3] == catdog_command():
        words[:3] = ["catdog"]
    return shlex.join(os.path.relpath(w, REPO) if w.startswith(str(REPO)) else w for w in words)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def catdog_has(command: str) -> bool:
    """Whether this checkout's `catdog` implements `command` (placeholders register nothing)."""
    probe = subprocess.run(catdog_command(command, "--help"), capture_output=True)
    return probe.returncode == 0


def read_history(path: Path) -> dict[str, list[float]]:
    """history.csv as columns of numbers."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def epoch_stats(seconds: Sequence[float]) -> dict[str, float | None]:
    """Mean time per epoch, the first epoch's, and the median and the fastest of the later ones.

    The fastest later epoch is the least disturbed by anything else the machine does (time only
    ever gets added), as `timeit` takes the minimum; the mean includes every disturbance.
    """
    return {
        "epoch_mean": statistics.fmean(seconds) if seconds else None,
        "epoch_first": seconds[0] if seconds else None,
        "epoch_later": statistics.median(seconds[1:]) if len(seconds) > 1 else None,
        "epoch_fastest": min(seconds[1:]) if len(seconds) > 1 else None,
    }


def train_catdog(job: Job, data: Path, weights: Path, epochs: int | None, out: Path, log: Path, env) -> dict:
    """Run `catdog train` for one job, timed from start to a finished run folder, and read the folder."""
    command = catdog_command("train", "--model", job.preset, "--data", str(data), "--out", str(out), *job.extra)
    if epochs is not None:
        command += ["--epochs", str(epochs)]
    if job.preset in PRETRAINED:
        command += ["--weights", str(weights)]
    shutil.rmtree(out, ignore_errors=True)
    info(f"catdog train {job.name}")
    measured = run_measured(command, log=log, env=env)
    record: dict[str, Any] = {
        "name": job.name,
        "preset": job.preset,
        "command": shown(command),
        "returncode": measured.returncode,
        "command_seconds": measured.seconds,
        "peak_rss_bytes": measured.peak_rss_bytes,
        "log": str(log),
        "run": str(out),
    }
    if measured.returncode != 0:
        return record | {"error": f"exit status {measured.returncode}; see {log}"}
    history = read_history(out / "history.csv")
    metrics = json.loads((out / "metrics.json").read_text())
    record |= {
        "epochs": len(history.get("seconds", [])),
        "epoch_seconds": history.get("seconds", []),
        **epoch_stats(history.get("seconds", [])),
        "history_seconds": sum(history.get("seconds", [])),
        "best_val_accuracy": max(history["val_accuracy"], default=None),
        "last_val_accuracy": history["val_accuracy"][-1] if history["val_accuracy"] else None,
        "test_accuracy": metrics.get("accuracy"),
        "test_n": metrics.get("n"),
    }
    return record


def run_seed(
    data: Path, weights: Path, models: Sequence[int], epochs: int, manifest: Path | None, out: Path, log: Path, env
) -> dict:
    """Run the seed recipe (each model in a process of its own) and read its figures."""
    command = [
        sys.executable,
        str(BENCH_DIR / "seed_recipe.py"),
        "--data",
        str(data),
        "--weights",
        str(weights),
        "--models",
        ",".join(map(str, models)),
        "--epochs",
        str(epochs),
        "--out",
        str(out),
    ]
    if manifest is not None:
        command += ["--manifest", str(manifest)]
    info(f"seed recipe, models {','.join(map(str, models))}")
    measured = run_measured(command, log=log, env=env)
    if measured.returncode != 0:
        return {"error": f"exit status {measured.returncode}; see {log}", "log": str(log)}
    result = json.loads(out.read_text())
    return {
        "command": shown(command),
        "seconds": measured.seconds,
        "log": str(log),
        "models": {str(m["model"]): m | epoch_stats(m["epoch_seconds"]) for m in result["models"]},
    }


def count_predictions(path: Path) -> int:
    """The JSON prediction lines `catdog predict --json` wrote."""
    count = 0
    for line in path.read_text().splitlines():
        try:
            count += "label" in json.loads(line)
        except (json.JSONDecodeError, TypeError):
            pass
    return count


def bench_predict(run: Path, folder: Path, one: Path, work: Path, env) -> dict:
    """`catdog predict` over `folder` against the one-image-at-a-time loop, each a fresh process.

    The run is first exported to ONNX (timed), so `catdog predict` runs it with onnxruntime,
    its default for a run with an export; `--runtime keras` is timed too. A second `catdog
    predict` on a folder of one image gives the command's fixed cost (start-up and model
    loading), so its steady rate can be told apart from its total.
    """
    images = len(image_files(folder))
    info("catdog export --format onnx")
    exported = run_measured(catdog_command("export", str(run), "--format", "onnx"), log=work / "export.log", env=env)
    if exported.returncode:
        return {"error": f"catdog export failed; see {work / 'export.log'}"}

    def folder_and_one(name: str, *options: str) -> tuple:
        """`catdog predict` timed on the whole folder, then on the folder of one image."""
        return tuple(
            run_measured(
                catdog_command("predict", str(run), str(source), "--json", *options),
                stdout=work / f"{label}.jsonl",
                log=work / f"{label}.log",
                env=env,
            )
            for label, source in ((name, folder), (f"{name}-one", one))
        )

    info(f"catdog predict, {images} images, with onnxruntime and with Keras")
    sides = {"catdog_": folder_and_one("predict"), "keras_": folder_and_one("predict-keras", "--runtime", "keras")}
    info(f"one-at-a-time loop, {images} images")
    loop = run_measured(
        [sys.executable, str(BENCH_DIR / "predict_loop.py"), str(run), str(folder), "--out", str(work / "loop.json")],
        log=work / "predict-loop.log",
        env=env,
    )
    if loop.returncode or any(m.returncode for pair in sides.values() for m in pair):
        return {"error": f"prediction failed; see the logs in {work}"}
    for name in ("predict", "predict-keras"):
        predicted = count_predictions(work / f"{name}.jsonl")
        if predicted != images:
            return {"error": f"catdog predict printed {predicted} predictions for {images} images; "
                             f"see {work / name}.log"}
    loop_result = json.loads((work / "loop.json").read_text())
    record = {
        "images": images,
        "image_size": json.loads((run / "config.json").read_text()).get("image_size"),
        "export_seconds": exported.seconds,
        "loop_seconds": loop.seconds,
        "loop_images_per_second": images / loop.seconds,
        "loop_fixed_seconds": loop.seconds - loop_result["loop_seconds"],
        "loop_steady_images_per_second": loop_result["images_per_second"],
        "loop_peak_rss_bytes": loop.peak_rss_bytes,
    }
    for prefix, (full, single) in sides.items():
        steady = full.seconds - single.seconds
        record |= {
            f"{prefix}seconds": full.seconds,
            f"{prefix}images_per_second": images / full.seconds,
            f"{prefix}fixed_seconds": single.seconds,
            f"{prefix}steady_images_per_second": (images - 1) / steady if steady > 0 else None,
            f"{prefix}peak_rss_bytes": full.peak_rss_bytes,
        }
    record["speedup"] = loop.seconds / record["catdog_seconds"]
    return record


def run_memory(data: Path, epochs: int, out: Path, log: Path, env) -> dict:
    """Peak resident memory of `catdog run` with every preset."""
    command = catdog_command(
        "run", "--data", str(data), "--models", ",".join(PRESETS), "--epochs", str(epochs), "--out", str(out)
    )
    shutil.rmtree(out, ignore_errors=True)
    info(f"catdog run, every preset, {epochs} epochs")
    measured = run_measured(command, log=log, env=env)
    record = {
        "command": shown(command),
        "epochs": epochs,
        "seconds": measured.seconds,
        "peak_rss_bytes": measured.peak_rss_bytes,
        "log": str(log),
    }
    if measured.returncode != 0:
        record["error"] = f"exit status {measured.returncode}; see {log}"
    return record


# Summarising --------------------------------------------------------------------------


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that were measured, or None if none was."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def median_record(records: Sequence[dict]) -> dict:
    """Field-wise medians of the numbers in `records`; other fields are taken from the first."""
    ok = [r for r in records if "error" not in r]
    if not ok:
        return {"error": records[0]["error"]} if records else {}
    merged = {}
    for key, value in ok[0].items():
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        merged[key] = median(r.get(key) for r in ok) if numeric else value
    merged["repeats"] = len(ok)
    return merged


def summarise(repeats: Sequence[dict]) -> dict:
    """Medians over the repeats, per seed model, per catdog job, and for prediction."""
    seed_models = sorted({k for r in repeats for k in r.get("seed", {}).get("models", {})})
    jobs = list(dict.fromkeys(k for r in repeats for k in r.get("catdog", {})))
    return {
        "seed": {
            m: median_record([r["seed"]["models"][m] for r in repeats if m in r["seed"].get("models", {})])
            for m in seed_models
        },
        "catdog": {j: median_record([r["catdog"][j] for r in repeats if j in r["catdog"]]) for j in jobs},
        "predict": median_record([r["predict"] for r in repeats if "predict" in r]),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def figure(table: dict, row: str, key: str) -> float | None:
    return table.get(row, {}).get(key)


WHOLE = "whole command / fit"
# How the from-scratch presets' epochs are compared: the mean, and the fastest later epoch.
EPOCH_COMPARISONS = {"time per epoch": "epoch_mean", "fastest later epoch": "epoch_fastest"}


def comparisons(summary: dict) -> list[tuple[str, str, str, float | None, float | None]]:
    """Each catdog preset against its seed counterpart: (preset, seed model, what, catdog, seed)."""
    seed, catdog = summary["seed"], summary["catdog"]
    rows = [
        (
            preset,
            str(model),
            what,
            figure(catdog, preset, key),
            figure(seed, str(model), key),
        )
        for what, key in EPOCH_COMPARISONS.items()
        for preset, model in SEED_COUNTERPART.items()
    ]
    rows += [
        (
            preset,
            "4",
            WHOLE,
            figure(catdog, preset, "command_seconds"),
            figure(seed, "4", "fit_seconds"),
        )
        for preset in PRETRAINED_ORDER
    ]
    return rows


@dataclass
class Target:
    """One of the issue's targets: what was measured against what is needed."""

    name: str
    measured: float | None
    needed: float
    at_most: bool  # True: the measured figure must not exceed `needed`; False: it must reach it
    unit: str = ""

    @property
    def passed(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured <= self.needed if self.at_most else self.measured >= self.needed


def targets(summary: dict, memory: dict | None) -> list[Target]:
    """Each target of the issue, from the summary's medians."""
    catdog, predict = summary["catdog"], summary["predict"]
    ratios = {(preset, what): ratio(ours, theirs) for preset, _, what, ours, theirs in comparisons(summary)}
    found = [
        Target("transfer: test accuracy", figure(catdog, "transfer", "test_accuracy"), TRANSFER_ACCURACY, False, "%"),
        Target("transfer: command time / seed model 4 fit", ratios["transfer", WHOLE], TRANSFER_TIME_RATIO, True, "x"),
        Target("finetune: test accuracy", figure(catdog, "finetune", "test_accuracy"), FINETUNE_ACCURACY, False, "%"),
        Target("finetune: command time / seed model 4 fit", ratios["finetune", WHOLE], 1.0, True, "x"),
    ]
    found += [
        Target(f"{preset}: {what} / seed model {model}", ratios[preset, what], SCRATCH_EPOCH_RATIO, True, "x")
        for what in EPOCH_COMPARISONS
        for preset, model in SEED_COUNTERPART.items()
    ]
    peak = memory.get("peak_rss_bytes") if memory and not {"error", "skipped"} & memory.keys() else None
    found += [
        Target("cnn: test accuracy", figure(catdog, "cnn", "test_accuracy"), CNN_ACCURACY, False, "%"),
        Target("cnn: command time", figure(catdog, "cnn", "command_seconds"), CNN_SECONDS, True, "s"),
        Target("predict: speed-up over the one-at-a-time loop", predict.get("speedup"), PREDICT_SPEEDUP, False, "x"),
        Target("predict: images/s, whole command", predict.get("catdog_images_per_second"), PREDICT_RATE, False, "/s"),
        Target(
            "predict: images/s, steady (start-up left out)",
            predict.get("catdog_steady_images_per_second"),
            PREDICT_RATE,
            False,
            "/s",
        ),
        Target("memory: `catdog run` with every preset, peak RSS", peak, MEMORY_BYTES, True, "B"),
    ]
    return found


# Writing ------------------------------------------------------------------------------

EPOCH_COLUMNS = [("epochs", "epochs", ""), ("s/epoch", "epoch_mean", "s"), ("1st epoch", "epoch_first", "s")]
EPOCH_COLUMNS += [("later epochs", "epoch_later", "s"), ("fastest later", "epoch_fastest", "s")]
ACCURACY_COLUMNS = [("best val", "best_val_accuracy", "%"), ("last val", "last_val_accuracy", "%")]
SEED_COLUMNS = [
    *EPOCH_COLUMNS,
    ("fit total", "fit_seconds", "s"),
    ("process", "process_seconds", "s"),
    ("peak RSS", "peak_rss_bytes", "B"),
    *ACCURACY_COLUMNS,
    ("test (catdog split)", "test_accuracy", "%"),
    ("seed's own test (leaky)", "seed_test_accuracy", "%"),
]
CATDOG_COLUMNS = [
    *EPOCH_COLUMNS,
    ("epochs total", "history_seconds", "s"),
    ("whole command", "command_seconds", "s"),
    ("peak RSS", "peak_rss_bytes", "B"),
    *ACCURACY_COLUMNS,
    ("test", "test_accuracy", "%"),
]
PREDICT_COLUMNS = [
    ("whole process", "seconds", "s"),
    ("images/s", "images_per_second", "/s"),
    ("fixed cost", "fixed_seconds", "s"),
    ("steady images/s", "steady_images_per_second", "/s"),
    ("peak RSS", "peak_rss_bytes", "B"),
]


def fmt(value: float | None, unit: str = "") -> str:
    """A figure for the tables: `%` for fractions, `s`, `x` for ratios, `B` for bytes (shown in MB)."""
    if value is None:
        return "–"
    if unit == "%":
        return f"{100 * value:.1f} %"
    if unit == "s":
        return f"{value:.1f} s" if value < 600 else f"{value / 60:.1f} min"
    if unit == "x":
        return f"{value:.3g}×"
    if unit == "B":
        return f"{value / 1e6:,.0f} MB"
    if unit == "/s":
        return f"{value:.0f}/s"
    return f"{value:g}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def record_table(label: str, records: dict[str, dict], columns: Sequence[tuple[str, str, str]]) -> str:
    """One row per record, one column per (header, key, unit); a failed record says why."""
    rows = [
        [name, f"failed: {r['error']}", *[""] * (len(columns) - 1)]
        if "error" in r
        else [name, *(fmt(r.get(key), unit) for _, key, unit in columns)]
        for name, r in records.items()
    ]
    return markdown_table([label, *(header for header, _, _ in columns)], rows)


def verdict(passed: bool | None) -> str:
    return {True: "pass", False: "**FAIL**", None: "not measured"}[passed]


def about_rows(results: dict) -> list[list[str]]:
    """The run's circumstances: date, command, machine, software, load, data, epochs."""
    machine, settings, load = results["machine"], results["settings"], results["load_average"]
    cores = f"{machine['cores']} cores ({machine['usable_cores']} usable)"
    bf16 = "yes" if machine["bfloat16"] else "no"
    software = f"Python {machine['python']}, TensorFlow {machine['tensorflow']}, Keras {machine['keras']}"
    subset = f", subset: {settings['subset']}" if settings["subset"] else ""
    return [
        ["date", results["date"]],
        ["command", f"`{results['command']}`"],
        [
            "machine",
            f"{machine['cpu']}, {cores}, {machine['memory_bytes'] / 1e9:.0f} GB, bfloat16 instructions: {bf16}",
        ],
        ["software", f"{software}, {machine['os']}"],
        [
            "load average (1, 5, 15 min)",
            f"{load_text(load['start'])} at the start, {load_text(load['end'])} at the end",
        ],
        ["data", f"`{settings['data']}`{subset}"],
        [
            "epochs",
            f"seed {settings['seed_epochs']}; catdog {settings['catdog_epochs'] or 'each preset at its defaults'}",
        ],
        ["repeats", f"{settings['repeat']} (figures are medians)" if settings["repeat"] > 1 else "1"],
        ["took", fmt(results["seconds"], "s")],
    ] + [
        ["re-measured", f"{', '.join(r['rows'])} on {r['date']}: `{r['command']}` (load average at the end "
                        f"{load_text(r['load_average'])}); the other rows are from the run above"]
        for r in results.get("remeasured", [])
    ]


def load_text(load: Sequence[float] | None) -> str:
    return ", ".join(f"{x:.2f}" for x in load) if load else "–"


def prediction_text(predict: dict) -> str:
    if not predict:
        return "Not measured."
    if "error" in predict:
        return f"Failed: {predict['error']}"
    sides = {
        "`catdog predict RUN FOLDER --json` (onnxruntime)": "catdog_",
        "`catdog predict RUN FOLDER --json --runtime keras`": "keras_",
        "loop of `model.predict`, one image at a time": "loop_",
    }
    records = {
        label: {key.removeprefix(prefix): value for key, value in predict.items() if key.startswith(prefix)}
        for label, prefix in sides.items()
    }
    size = predict.get("image_size")
    return (
        f"A `transfer` run at {size:.0f} px ({PREDICT_JOB.name} above) on {predict['images']:.0f} JPEGs, each "
        f"side a fresh process. `catdog export RUN --format onnx` took {fmt(predict.get('export_seconds'), 's')} "
        "first; `catdog predict` then runs that export with onnxruntime, its default for a run with one.\n\n"
        + record_table("method", records, PREDICT_COLUMNS)
    )


def memory_text(memory: dict | None) -> str:
    if not memory:
        return "Not measured."
    if "skipped" in memory:
        return f"Skipped: {memory['skipped']}."
    if "error" in memory:
        return f"Failed: {memory['error']} (peak RSS until then {fmt(memory['peak_rss_bytes'], 'B')})."
    return (
        f"`{memory['command']}`: peak RSS {fmt(memory['peak_rss_bytes'], 'B')} in {fmt(memory['seconds'], 's')}. "
        f"It trains every preset for {plural(memory['epochs'], 'epoch')}: memory peaks within the first, where "
        "datasets, caches and models are built; the `catdog train` rows above give each preset's peak at full length."
    )


def render(results: dict) -> str:
    """results.md: the circumstances, the targets, then every figure."""
    summary, settings = results["summary"], results["settings"]
    parts = ["# catdog benchmark: catdog against the seed recipe" + (" (quick mode)" if settings["quick"] else "")]
    if settings["quick"]:
        parts.append(
            f"> **Quick mode**: {settings['catdog_epochs']} epochs on a subset, to check that the benchmark works. "
            "Accuracy targets are not expected to pass, and the times are not the benchmark's."
        )
    if results.get("stopped_during"):
        parts.append(
            f"> **Stopped** during {results['stopped_during']}: that step, and any other not reported below, "
            "was not measured in this run."
        )
    table_targets = [
        [t["name"], fmt(t["measured"], t["unit"]), ("≤ " if t["at_most"] else "≥ ") + fmt(t["needed"], t["unit"])]
        + [verdict(t["passed"])]
        for t in results["targets"]
    ]
    table_ratios = [
        [preset, f"model {model}", what, fmt(ours, "s"), fmt(theirs, "s"), fmt(ratio(ours, theirs), "x")]
        for preset, model, what, ours, theirs in comparisons(summary)
    ]
    seed_models = {f"model {m}": record for m, record in summary["seed"].items()}
    parts += [
        markdown_table(["", ""], about_rows(results)),
        "## Targets",
        markdown_table(["target", "measured", "needed", "result"], table_targets),
        "## catdog against the seed",
        markdown_table(["catdog", "seed", "compared", "catdog", "seed", "ratio"], table_ratios),
        "## The seed recipe (001), per model",
        record_table("model", seed_models, SEED_COLUMNS),
        "## catdog, per preset",
        record_table("preset", summary["catdog"], CATDOG_COLUMNS),
        "## Prediction",
        prediction_text(summary["predict"]),
        "## Memory of `catdog run`",
        memory_text(results.get("run_memory")),
        "## How this was measured",
        METHOD,
    ]
    if MISSES.is_file() and not settings["quick"]:
        parts.append(MISSES.read_text().strip())
    return "\n\n".join(parts) + "\n"


METHOD = """\
- Every model (seed) and every command (catdog) runs in a child process of its own; its wall time is
  taken from start to exit and its peak resident memory (RSS) is the kernel's figure for that child
  (`os.wait4`), so one model's memory never hides another's. MB are 10^6 bytes.
- Seed: `benchmarks/seed_recipe.py`, the recipe of `../shared/seeds/001_*.txt` written fresh with only the
  Keras 3 fixes it needs (listed at the top of that file). *s/epoch* is the mean wall time of an epoch
  (training and validation), from a callback; *fit total* is the wall time of `model.fit`, the figure the
  transfer and finetune targets compare with; *process* adds start-up, data loading and scoring.
- catdog: `catdog train --model PRESET`, timed as a whole command, from start to a finished run folder
  (scoring, plots and the model file included); *s/epoch* is the mean of history.csv's `seconds`.
- Epoch times on a shared 2-core virtual machine are disturbed from outside: the same epoch of the
  same model takes 5, 10, 15 or 20 s from one epoch to the next, on both sides (see each run's
  history.csv). The from-scratch presets are therefore compared twice: by the mean time per epoch,
  which includes every disturbance, and by the fastest epoch after the first (the first includes
  tracing, and for catdog filling its cache), which is the least disturbed, as `timeit` reports the
  minimum.
- Test accuracy, both sides: catdog's leak-free test split (the `test` rows of the run's splits.csv),
  the same files for every model. The seed's own test figure is shown for reference only: its split
  is drawn from a dataset that reshuffles on every pass and overlaps the validation images. The seed
  validates on its own split, as written, which holds catdog's test files; it never selects or stops on
  it, so its test score stays fair.
- Prediction: `catdog predict` on a folder of JPEGs against `benchmarks/predict_loop.py`, which loads the
  same model and calls `model.predict` once per image. *Fixed cost* is what does not depend on the
  number of images (start-up, imports, model loading): for `catdog predict` the time it takes for one
  image, for the loop its whole time less the loop's; *steady* rates leave it out.
- The data files are read once before timing starts, so neither side pays for a cold disk cache."""


def machine() -> dict:
    """Cores, CPU model, memory and library versions of this machine."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""

    def first(key: str) -> str:
        return next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith(key)), "")

    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem_kib = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0)
    flags = first("flags").split()
    return {
        "cpu": first("model name") or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "bfloat16": "avx512_bf16" in flags or "amx_bf16" in flags,
        "memory_bytes": mem_kib * 1024,
        "python": platform.python_version(),
        "tensorflow": installed_version("tensorflow-cpu", "tensorflow"),
        "keras": installed_version("keras"),
        "os": platform.platform(),
    }


def installed_version(*distributions: str) -> str:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return "not installed"


def write_results(results: dict, markdown_path: Path) -> None:
    """Summarise the repeats, judge the targets, and write results.md and its .json."""
    from catdog.files import write_json, write_text

    results["summary"] = summarise(results["repeats"])
    results["targets"] = [asdict(t) | {"passed": t.passed} for t in targets(results["summary"], results["run_memory"])]
    results["failures"] = list(dict.fromkeys(f for r in results["repeats"] for f in r["failures"]))
    write_json(markdown_path.with_suffix(".json"), results)
    write_text(markdown_path, render(results))


# Driving ------------------------------------------------------------------------------


# The step under way, as last announced by `info`: what a stopped run says it stopped in.
LAST_STEP = ["the start"]


def info(message: str) -> None:
    LAST_STEP[0] = f"`{message}`"
    print(f"bench: {message}", file=sys.stderr, flush=True)


def warm_page_cache(root: Path) -> None:
    """Read every file once, so that neither side pays for a cold disk cache."""
    for path in root.rglob("*"):
        if path.is_file():
            path.read_bytes()


def parse_job(text: str) -> Job:
    """`NAME=PRESET [OPTIONS...]`: an extra `catdog train` row, e.g. `transfer-aug=transfer --augment`."""
    name, sep, spec = text.partition("=")
    words = shlex.split(spec)
    if not sep or not name or not words:
        raise argparse.ArgumentTypeError(f"{text!r}: write a variant as NAME=PRESET [OPTIONS...]")
    return Job(name, words[0], words[1:])


def comma_list(choices: Sequence[str] | None) -> Callable[[str], list[str]]:
    """A parser of comma-separated names, each one of `choices` (None: any)."""

    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{text!r}: name at least one")
        unknown = [item for item in items if choices is not None and item not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {','.join(choices)}")
        return items

    return parse


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See benchmarks/README.md.")
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_EPOCHS} epochs on a subset; writes results-quick.md"
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=1,
        help="repeat the training and prediction steps N times and report medians (default: 1)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="seed-layout data folder (default: ../shared/data/cats_and_dogs_filtered)",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        default=DEFAULT_WEIGHTS,
        help="MobileNetV2 ImageNet weights without top (default: ../shared/weights/mobilenet_v2_1.0_no_top.h5)",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        help=f"epochs, both sides (default: the seed's {SEED_EPOCHS} and each preset's own; --quick: {QUICK_EPOCHS})",
    )
    parser.add_argument(
        "--presets", type=comma_list(PRESETS), default=list(PRESETS), help="catdog presets to train (default: all)"
    )
    parser.add_argument(
        "--seed-models",
        type=comma_list([str(m) for m in SEED_MODELS]),
        default=[str(m) for m in SEED_MODELS],
        help="seed models to train (default: 1,2,3,4)",
    )
    parser.add_argument(
        "--variant",
        type=parse_job,
        action="append",
        default=[],
        metavar="NAME=PRESET [OPTIONS]",
        help="an extra catdog row: a preset with other options (repeatable)",
    )
    parser.add_argument(
        "--predict-images",
        type=positive_int,
        help=f"images in the prediction folder (default: {PREDICT_IMAGES}; --quick: {QUICK_PREDICT_IMAGES})",
    )
    parser.add_argument(
        "--run-epochs",
        type=positive_int,
        help=f"epochs per preset for the `catdog run` memory step (default: {RUN_MEMORY_EPOCHS}; --quick: 1)",
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: write the results file again from its .json (after a change to the report)",
    )
    parser.add_argument(
        "--remeasure",
        type=comma_list(None),
        metavar="ROWS",
        help="train these catdog rows again (after a change to them) and put them into the existing results "
        "file, keeping every other figure; the results say which rows were re-measured, when",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="results file (default: benchmarks/results.md; --quick: benchmarks/results-quick.md); JSON beside it",
    )
    args = parser.parse_args(argv)
    if not (args.data / "train").is_dir() or not (args.data / "validation").is_dir():
        parser.exit(2, f"bench: error: {args.data} has no train/ and validation/ folders; pass --data DIR\n")
    if not args.weights.is_file():
        parser.exit(2, f"bench: error: MobileNetV2 weights {args.weights} are missing; pass --weights PATH\n")
    args.out = args.out or BENCH_DIR / ("results-quick.md" if args.quick else "results.md")
    args.predict_images = args.predict_images or (QUICK_PREDICT_IMAGES if args.quick else PREDICT_IMAGES)
    args.run_epochs = args.run_epochs or (1 if args.quick else RUN_MEMORY_EPOCHS)
    return args


def prediction_images(data: Path, count: int) -> list[Path]:
    """`count` images from the validation folders, the classes taking turns."""
    per_class = [image_files(d) for d in sorted((data / "validation").iterdir()) if d.is_dir()]
    interleaved = [image for group in zip(*per_class, strict=False) for image in group]
    return interleaved[:count]


@dataclass
class Plan:
    """What one repeat runs, on which data, with which settings."""

    data: Path
    weights: Path
    jobs: list[Job]
    catdog_epochs: int | None
    seed_models: list[int]
    seed_epochs: int
    predict_folder: Path
    predict_one: Path
    env: dict[str, str]
    can_train: bool
    can_predict: bool


# Each catdog preset is timed against the seed model it improves on; the pairs run in this
# order (the targets that matter most first), so a run cut short still holds whole comparisons.
SEED_PAIRS = {4: ("transfer", "finetune"), 1: ("scratch",), 2: ("augmented",), 3: ("preprocessed",)}
# Prediction is timed on `transfer` at 160 px, the size the prediction target names.
PREDICT_JOB = Job("transfer-160", "transfer", ["--image-size", "160"])


def training_data(data: Path, quick: bool, work: Path) -> Path:
    """The data both sides train on: `data`, or in quick mode a subset of it linked into `work`."""
    return link_subset(data, work / "data", QUICK_PER_CLASS) if quick else data


def child_env(weights: Path) -> dict[str, str]:
    """The environment of every measured child process: quiet TensorFlow, the shared weights."""
    return os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2", "CATDOG_WEIGHTS": str(weights)}


def write_manifest(data: Path, out: Path, log: Path, env) -> Path:
    """catdog's leak-free split of `data`, which both sides are scored on."""
    command = catdog_command("data", "split", "--data", str(data), "--out", str(out))
    measured = run_measured(command, log=log, env=env)
    if measured.returncode != 0:
        raise SystemExit(f"bench: `{shown(command)}` failed; see {log}")
    return out


def prediction_step(here: Path, repeat: dict, train: Callable[[Job], None], plan: Plan) -> None:
    """Train the prediction benchmark's model, then time `catdog predict` on it."""
    if not plan.can_predict:
        repeat["failures"].append("prediction: `catdog predict` is not implemented in this checkout")
        return
    train(PREDICT_JOB)
    run = repeat["catdog"].get(PREDICT_JOB.name, {})
    if "run" in run and "error" not in run:
        repeat["predict"] = bench_predict(Path(run["run"]), plan.predict_folder, plan.predict_one, here, plan.env)
        if "error" in repeat["predict"]:
            repeat["failures"].append(f"prediction: {repeat['predict']['error']}")


def run_repeat(plan: Plan, here: Path, repeat: dict, save: Callable[[], None]) -> None:
    """One repeat into `repeat`, saving after every step: each seed model with the catdog
    presets paired with it, prediction after the transfer run, then the unpaired presets."""
    here.mkdir(parents=True)
    repeat.update({"catdog": {}, "seed": {"models": {}}, "failures": []})
    manifest = write_manifest(plan.data, here / "splits.csv", here / "split.log", plan.env)

    def train(job: Job) -> None:
        if not plan.can_train:
            repeat["failures"].append("`catdog train` is not implemented in this checkout: catdog was not measured")
            return
        record = train_catdog(job, plan.data, plan.weights, plan.catdog_epochs, here / job.name,
                              here / f"{job.name}.log", plan.env)
        put_training(repeat, job.name, record)
        save()

    paired = {preset for presets in SEED_PAIRS.values() for preset in presets}
    for model, presets in SEED_PAIRS.items():
        if model in plan.seed_models:
            seed = run_seed(plan.data, plan.weights, [model], plan.seed_epochs, manifest,
                            here / f"seed-{model}.json", here / f"seed-{model}.log", plan.env)
            if "error" in seed:
                repeat["failures"].append(f"seed recipe model {model}: {seed['error']}")
            repeat["seed"]["models"].update(seed.get("models", {}))
            save()
        for job in plan.jobs:
            if job.preset in presets:
                train(job)
        if model == 4 and "transfer" in {job.preset for job in plan.jobs}:
            prediction_step(here, repeat, train, plan)
            save()
    for job in plan.jobs:
        if job.preset not in paired:
            train(job)


def put_training(repeat: dict, name: str, record: dict) -> None:
    """Put the record of catdog row `name` into `repeat`, with its failure if it failed (and
    without the failure of an earlier measurement of the row)."""
    repeat["catdog"][name] = record
    repeat["failures"] = [f for f in repeat["failures"] if not f.startswith(f"{name}: ")]
    if "error" in record:
        repeat["failures"].append(f"{name}: {record['error']}")


def remeasure(markdown_path: Path, names: Sequence[str], command: str) -> int:
    """Train the catdog rows `names` again, as the run recorded in `markdown_path`'s .json
    trained them, and put them into every repeat there; every other figure stays as it was
    measured. The prediction model is not re-measured alone: its figures belong to its run."""
    json_path = markdown_path.with_suffix(".json")
    if not json_path.is_file():
        info(f"error: {os.path.relpath(json_path)} does not exist; run the benchmark first")
        return 2
    results = json.loads(json_path.read_text())
    settings = results["settings"]
    jobs = {job["name"]: Job(**job) for job in settings["jobs"]}
    refused = [name for name in names if name not in jobs or name == PREDICT_JOB.name]
    if refused:
        choices = ", ".join(sorted(set(jobs) - {PREDICT_JOB.name}))
        info(f"error: cannot re-measure {', '.join(refused)}: choose from {choices}")
        return 2
    work = WORK_DIR / "remeasure"
    shutil.rmtree(work, ignore_errors=True)
    data = training_data(Path(settings["data"]), settings["quick"], work)
    env = child_env(Path(settings["weights"]))
    warm_page_cache(data)
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    for n, repeat in enumerate(results["repeats"], 1):
        here = work / f"r{n}"
        here.mkdir(parents=True, exist_ok=True)
        for name in names:
            record = train_catdog(jobs[name], data, Path(settings["weights"]), settings["catdog_epochs"],
                                  here / name, here / f"{name}.log", env)
            put_training(repeat, name, record)
    results.setdefault("remeasured", []).append(
        {"date": started, "command": command, "rows": list(names), "load_average": list(os.getloadavg())}
    )
    write_results(results, markdown_path)
    info(f"re-measured {', '.join(names)} into {os.path.relpath(markdown_path)} and its .json")
    return 1 if any("error" in r["catdog"][name] for r in results["repeats"] for name in names) else 0


def rerender(markdown_path: Path) -> None:
    """Write `markdown_path` again from its .json, every epoch figure recomputed from the
    recorded epoch times: a change to the report needs no new measurements."""
    results = json.loads(markdown_path.with_suffix(".json").read_text())
    for repeat in results["repeats"]:
        records = [*repeat.get("catdog", {}).values(), *repeat.get("seed", {}).get("models", {}).values()]
        for record in records:
            if "epoch_seconds" in record:
                record |= epoch_stats(record["epoch_seconds"])
    write_results(results, markdown_path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.render:
        rerender(args.out)
        info(f"wrote {os.path.relpath(args.out)} again from its .json")
        return 0
    if args.remeasure:
        return remeasure(args.out, args.remeasure, shown([sys.executable, str(BENCH_DIR / "bench.py"), *argv]))
    started = time.perf_counter()
    work = WORK_DIR / ("quick" if args.quick else "full")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    images = prediction_images(args.data, args.predict_images)
    plan = Plan(
        data=training_data(args.data, args.quick, work),
        weights=args.weights,
        jobs=[Job(preset, preset) for preset in args.presets] + args.variant,
        catdog_epochs=args.epochs or (QUICK_EPOCHS if args.quick else None),
        seed_models=[int(m) for m in args.seed_models],
        seed_epochs=args.epochs or (QUICK_EPOCHS if args.quick else SEED_EPOCHS),
        predict_folder=link_flat(images, work / "predict"),
        predict_one=link_flat(images[:1], work / "predict-one"),
        env=child_env(args.weights),
        can_train=catdog_has("train"),
        can_predict=catdog_has("predict"),
    )
    warm_page_cache(args.data)
    subset = ", ".join(f"{n} {split} images per class" for split, n in QUICK_PER_CLASS.items())
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": shown([sys.executable, str(BENCH_DIR / "bench.py"), *argv]),
        "machine": machine(),
        "load_average": {"start": list(os.getloadavg()), "end": None},
        "settings": {
            "quick": args.quick,
            "data": str(args.data),
            "subset": subset if args.quick else None,
            "weights": str(args.weights),
            "seed_epochs": plan.seed_epochs,
            "catdog_epochs": plan.catdog_epochs,
            "repeat": args.repeat,
            "jobs": [asdict(job) for job in plan.jobs],
        },
        "repeats": [],
        "run_memory": None,
    }

    def save() -> None:
        results["load_average"]["end"] = list(os.getloadavg())
        results["seconds"] = time.perf_counter() - started
        write_results(results, args.out)

    try:
        for n in range(1, args.repeat + 1):
            info(f"repeat {n} of {args.repeat}")
            results["repeats"].append({})
            run_repeat(plan, work / f"r{n}", results["repeats"][-1], save)
        if catdog_has("run"):
            results["run_memory"] = run_memory(plan.data, args.run_epochs, work / "run", work / "run.log", plan.env)
        else:
            results["run_memory"] = {"skipped": "`catdog run` is not implemented in this checkout yet"}
    except KeyboardInterrupt:
        results["stopped_during"] = LAST_STEP[0]
        save()
        info(f"stopped during {LAST_STEP[0]}; wrote what finished to {os.path.relpath(args.out)}")
        return 130
    save()

    info(f"wrote {os.path.relpath(args.out)} and its .json in {fmt(results['seconds'], 's')}")
    for failure in results["failures"]:
        info(f"not measured: {failure}")
    return 1 if results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
