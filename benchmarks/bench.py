#!/usr/bin/env python3
"""The catdog benchmark: catdog against the reference recipe, on the same data, machine and epochs.

Each repeat trains every catdog preset with `catdog train` (the whole command is timed),
trains the reference's four models with `reference_recipe.py` and scores them on catdog's leak-free
test split, and times `catdog predict` over a folder of JPEGs (after the export the README
recommends) against a loop calling `model.predict` on one image at a time, and how soon
`catdog serve` answers. Once, it times `catdog run` at its defaults (the whole exercise),
with its peak memory. It writes `results.md` and `results.json` beside this file, with
medians over the repeats, the ratios to the reference, and each target of the issue passed or not.
This driver stays light (no TensorFlow): everything it measures runs in a child process.

    python benchmarks/bench.py                 # the full benchmark (hours on 2 cores)
    python benchmarks/bench.py --quick         # a few minutes' check: results-quick.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from catdog.cli.common import positive_int
from catdog.files import write_json, write_text
from catdog.report import Heading, Paragraph, Table, to_markdown
from catdog.runs import Run
from catdog.runs.folder import HISTORY_FILE, METRICS_FILE, read_history

from benchkit import DEFAULT_DATA, DEFAULT_WEIGHTS, REPO, image_files, link_flat, link_subset, run_measured

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / "work"
# Hand-written notes on the targets the last full run missed, copied into results.md.
MISSES = BENCH_DIR / "misses.md"

PRESETS = ("scratch", "augmented", "preprocessed", "transfer", "finetune", "cnn")
PRETRAINED = ("transfer", "finetune")
REFERENCE_MODELS = ("1", "2", "3", "4")
REFERENCE_EPOCHS = 20
QUICK_EPOCHS = 2
QUICK_PER_CLASS = {"train": 100, "validation": 50}
QUICK_PREDICT_IMAGES = 100
PREDICT_IMAGES = 1000
# The export the README tells users to make before predicting.
EXPORT_OPTIONS = ("--format", "openvino")
SERVE_TIMEOUT = 120.0


class Target(NamedTuple):
    """One of the issue's targets: a figure of the summary against what it needs."""

    name: str
    # A path into the medians: `catdog.ROW.KEY`, `reference.MODEL.KEY`, `reference_total.KEY` (its four
    # models together), `predict.KEY`, `run.KEY` (the `catdog run` step; `run.models.PRESET.KEY`
    # for its models), with the keys of results.json; or the ratio `A / B` or difference `A - B`.
    figure: str
    direction: str  # "<=": the figure must not exceed `needed`; ">=": it must reach it
    needed: float
    unit: str  # how `fmt` shows the figure: % s x /s B (see `FORMATS`)


# The models of `catdog run` at its defaults and the reference model each stands for.
EXERCISE_PAIRS = (("scratch", "1"), ("augmented", "2"), ("preprocessed", "3"), ("transfer", "4"), ("finetune", "4"))

# The targets, in the order results.md lists them: adding a target is adding a row.
TARGETS = [
    Target("transfer: test accuracy", "catdog.transfer.test_accuracy", ">=", 0.97, "%"),
    Target("transfer: command time / reference model 4 fit",
           "catdog.transfer.command_seconds / reference.4.fit_seconds", "<=", 1 / 8, "x"),
    Target("finetune: test accuracy", "catdog.finetune.test_accuracy", ">=", 0.985, "%"),
    Target("finetune: command time / reference model 4 fit",
           "catdog.finetune.command_seconds / reference.4.fit_seconds", "<=", 1.0, "x"),
    Target("scratch: time per epoch / reference model 1", "catdog.scratch.epoch_mean / reference.1.epoch_mean",
           "<=", 0.6, "x"),
    Target("augmented: time per epoch / reference model 2", "catdog.augmented.epoch_mean / reference.2.epoch_mean",
           "<=", 0.6, "x"),
    Target("preprocessed: time per epoch / reference model 3",
           "catdog.preprocessed.epoch_mean / reference.3.epoch_mean", "<=", 0.6, "x"),
    Target("scratch: fastest later epoch / reference model 1",
           "catdog.scratch.epoch_fastest / reference.1.epoch_fastest", "<=", 0.6, "x"),
    Target("augmented: fastest later epoch / reference model 2",
           "catdog.augmented.epoch_fastest / reference.2.epoch_fastest", "<=", 0.6, "x"),
    Target("preprocessed: fastest later epoch / reference model 3",
           "catdog.preprocessed.epoch_fastest / reference.3.epoch_fastest", "<=", 0.6, "x"),
    Target("cnn: test accuracy", "catdog.cnn.test_accuracy", ">=", 0.85, "%"),
    Target("cnn: command time", "catdog.cnn.command_seconds", "<=", 30 * 60, "s"),
    Target("`catdog run` at its defaults: command time / the reference's four models' fit",
           "run.command_seconds / reference_total.fit_seconds", "<=", 0.5, "x"),
    *[Target(f"`catdog run`: {preset} test accuracy / reference model {model}'s",
             f"run.models.{preset}.test_accuracy / reference.{model}.test_accuracy", ">=", 1.0, "x")
      for preset, model in EXERCISE_PAIRS],
    Target("predict: speed-up over the one-at-a-time loop", "predict.speedup", ">=", 3.0, "x"),
    Target("predict: images/s, whole command", "predict.catdog_images_per_second", ">=", 200.0, "/s"),
    Target("predict: images/s, steady (start-up left out)", "predict.catdog_steady_images_per_second",
           ">=", 200.0, "/s"),
    Target("predict: the export's test accuracy below the Keras model's",
           "predict.keras_test_accuracy - predict.export_test_accuracy", "<=", 0.005, "%"),
    Target("serve: first answer after start", "predict.serve_first_answer_seconds", "<=", 5.0, "s"),
    Target("memory: `catdog run` at its defaults, peak RSS", "run.peak_rss_bytes", "<=", 4e9, "B"),
]

# catdog against the reference: (preset, reference model, what is compared, the key of both figures or of each).
# The from-scratch presets' epochs are compared by the mean and by the fastest later epoch.
COMPARISONS = [
    (preset, model, what, key, key)
    for what, key in (("time per epoch", "epoch_mean"), ("fastest later epoch", "epoch_fastest"))
    for preset, model in (("scratch", "1"), ("augmented", "2"), ("preprocessed", "3"))
] + [(preset, "4", "whole command / fit", "command_seconds", "fit_seconds") for preset in PRETRAINED]


@dataclass
class Job:
    """One `catdog train` command: a preset, possibly with extra options, under a name."""

    name: str
    preset: str
    extra: list[str] = field(default_factory=list)


# Each reference model runs with the catdog presets paired with it, in this order (the targets that
# matter most first), so a run cut short still holds whole comparisons.
REFERENCE_PAIRS = {"4": ("transfer", "finetune"), "1": ("scratch",), "2": ("augmented",), "3": ("preprocessed",)}
# Prediction and serving are timed on this row's run: `transfer` at its defaults (224 px).
PREDICT_ROW = "transfer"


# Measuring ----------------------------------------------------------------------------


def catdog_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "catdog", *args]


def shown(command: Sequence[str]) -> str:
    """`command` as a person would type it in the repository: `catdog ...`, relative paths."""
    words = list(command)
    if words[:3] == catdog_command():
        words[:3] = ["catdog"]
    return shlex.join(os.path.relpath(w, REPO) if w.startswith(str(REPO)) else w for w in words)


def epoch_stats(seconds: Sequence[float]) -> dict[str, float | None]:
    """Mean time per epoch, the first epoch's, and the median and the fastest of the later ones.

    The fastest later epoch is the least disturbed by anything else the machine does (time only
    ever gets added), as `timeit` takes the minimum; the mean includes every disturbance.
    """
    later = seconds[1:]
    return {
        "epoch_mean": statistics.fmean(seconds) if seconds else None,
        "epoch_first": seconds[0] if seconds else None,
        "epoch_later": statistics.median(later) if later else None,
        "epoch_fastest": min(later) if later else None,
    }


def train_catdog(job: Job, data: Path, weights: Path, epochs: int | None, out: Path, log: Path, env) -> dict:
    """Run `catdog train` for one job, timed from start to a finished run folder, and read the folder."""
    command = catdog_command("train", "--model", job.preset, "--data", str(data), "--out", str(out), *job.extra)
    command += ["--epochs", str(epochs)] if epochs is not None else []
    command += ["--weights", str(weights)] if job.preset in PRETRAINED else []
    shutil.rmtree(out, ignore_errors=True)
    info(f"catdog train {job.name}")
    measured = run_measured(command, log=log, env=env)
    record: dict[str, Any] = {"name": job.name, "preset": job.preset, "command": shown(command),
                              "returncode": measured.returncode, "command_seconds": measured.seconds,
                              "peak_rss_bytes": measured.peak_rss_bytes, "log": str(log), "run": str(out)}
    if measured.returncode != 0:
        return record | {"error": f"exit status {measured.returncode}; see {log}"}
    history = read_history(out / HISTORY_FILE)
    seconds = [row["seconds"] for row in history]
    validation = [row["val_accuracy"] for row in history]
    metrics = json.loads((out / METRICS_FILE).read_text())
    return record | {
        "epochs": len(history), "epoch_seconds": seconds, **epoch_stats(seconds), "history_seconds": sum(seconds),
        "best_val_accuracy": max(validation, default=None), "last_val_accuracy": validation[-1] if validation else None,
        "test_accuracy": metrics.get("accuracy"), "test_n": metrics.get("n"),
    }


def run_reference(data: Path, weights: Path, model: str, epochs: int, manifest: Path, out: Path, log: Path,
                  env) -> dict:
    """Train one model of the reference recipe in a process of its own, timed, and read its figures."""
    command = [sys.executable, str(BENCH_DIR / "reference_recipe.py"), "--model", model, "--data", str(data),
               "--weights", str(weights), "--epochs", str(epochs), "--manifest", str(manifest), "--out", str(out)]
    info(f"reference recipe, model {model}")
    measured = run_measured(command, log=log, env=env)
    if measured.returncode != 0:
        return {"error": f"exit status {measured.returncode}; see {log}"}
    result = json.loads(out.read_text())
    return result | {"process_seconds": measured.seconds, "peak_rss_bytes": measured.peak_rss_bytes,
                     **epoch_stats(result["epoch_seconds"])}


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

    The run is first exported as the README tells users to (`EXPORT_OPTIONS`, timed; the
    export reports its test accuracy and the Keras model's), so `catdog predict` runs it
    with onnxruntime, its default for a run with one; `--runtime keras` is timed too. A
    second `catdog predict` on a folder of one image gives the command's fixed cost
    (start-up and model loading), so its steady rate can be told apart from its total.
    Last, `catdog serve` is started and timed until it answers a prediction.
    """
    images = len(image_files(folder))
    info(f"catdog export {' '.join(EXPORT_OPTIONS)}")
    exported = run_measured(catdog_command("export", str(run), *EXPORT_OPTIONS, "--json"),
                            stdout=work / "export.json", log=work / "export.log", env=env)
    if exported.returncode:
        return {"error": f"catdog export failed; see {work / 'export.log'}"}
    report = json.loads((work / "export.json").read_text())

    def folder_and_one(name: str, *options: str) -> tuple:
        """`catdog predict` timed on the whole folder, then on the folder of one image."""
        return tuple(run_measured(catdog_command("predict", str(run), str(source), "--json", *options),
                                  stdout=work / f"{label}.jsonl", log=work / f"{label}.log", env=env)
                     for label, source in ((name, folder), (f"{name}-one", one)))

    info(f"catdog predict, {images} images, with the export and with Keras")
    sides = {"catdog_": folder_and_one("predict"), "keras_": folder_and_one("predict-keras", "--runtime", "keras")}
    info(f"one-at-a-time loop, {images} images")
    loop = run_measured([sys.executable, str(BENCH_DIR / "predict_loop.py"), str(run), str(folder),
                         "--out", str(work / "loop.json")], log=work / "predict-loop.log", env=env)
    if loop.returncode or any(m.returncode for pair in sides.values() for m in pair):
        return {"error": f"prediction failed; see the logs in {work}"}
    for name in ("predict", "predict-keras"):
        if (predicted := count_predictions(work / f"{name}.jsonl")) != images:
            return {"error": f"catdog predict printed {predicted} predictions for {images} images; "
                             f"see {work / name}.log"}
    loop_result = json.loads((work / "loop.json").read_text())
    record = {"images": images, "image_size": Run.open(run).image_size, "export_seconds": exported.seconds,
              "export": shown(catdog_command("export", "RUN", *EXPORT_OPTIONS)), "export_path": report["path"],
              "export_test_accuracy": report.get("test_accuracy"),
              "keras_test_accuracy": report.get("keras_test_accuracy"),
              "loop_seconds": loop.seconds, "loop_images_per_second": images / loop.seconds,
              "loop_fixed_seconds": loop.seconds - loop_result["loop_seconds"],
              "loop_steady_images_per_second": loop_result["images_per_second"],
              "loop_peak_rss_bytes": loop.peak_rss_bytes}
    for prefix, (full, single) in sides.items():  # the fixed cost is the time for one image
        steady = full.seconds - single.seconds
        record |= {f"{prefix}seconds": full.seconds, f"{prefix}images_per_second": images / full.seconds,
                   f"{prefix}fixed_seconds": single.seconds,
                   f"{prefix}steady_images_per_second": (images - 1) / steady if steady > 0 else None,
                   f"{prefix}peak_rss_bytes": full.peak_rss_bytes}
    info("catdog serve, until it answers")
    return record | {"speedup": loop.seconds / record["catdog_seconds"],
                     "serve_first_answer_seconds": first_answer(run, image_files(one)[0], work / "serve.log", env)}


def first_answer(run: Path, image: Path, log: Path, env) -> float | None:
    """Seconds from starting `catdog serve RUN` to its first answer to `POST /predict` with
    `image` (asked again every 50 ms until it answers); None if it never does."""
    import socket
    import subprocess
    import urllib.error
    import urllib.request
    import uuid

    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{image.name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + image.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with open(log, "w") as messages:
        started = time.perf_counter()
        server = subprocess.Popen(catdog_command("serve", str(run), "--port", str(port)), env=env,
                                  stdout=messages, stderr=subprocess.STDOUT)
        try:
            while server.poll() is None and time.perf_counter() - started < SERVE_TIMEOUT:
                try:
                    with urllib.request.urlopen(request, timeout=SERVE_TIMEOUT) as answer:
                        if answer.status == 200 and b"label" in answer.read():
                            return time.perf_counter() - started
                except (urllib.error.URLError, ConnectionError):
                    time.sleep(0.05)
            return None
        finally:
            server.terminate()
            server.wait()


def run_exercise(data: Path, epochs: int | None, out: Path, log: Path, env) -> dict:
    """`catdog run` at its defaults (or with `epochs`): the whole command timed, its peak
    memory, and each model's figures from its summary.json."""
    command = catdog_command("run", "--data", str(data), "--out", str(out))
    command += ["--epochs", str(epochs)] if epochs is not None else []
    shutil.rmtree(out, ignore_errors=True)
    info("catdog run" + (f", {epochs} epochs" if epochs else ", at its defaults"))
    measured = run_measured(command, log=log, env=env)
    record = {"command": shown(command), "command_seconds": measured.seconds,
              "peak_rss_bytes": measured.peak_rss_bytes, "log": str(log)}
    if measured.returncode:
        return record | {"error": f"exit status {measured.returncode}; see {log}"}
    summary = json.loads((out / "summary.json").read_text())
    return record | {"models": {m["preset"]: m for m in summary["models"]}}


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
    return merged | {"repeats": len(ok)}


def summarise(repeats: Sequence[dict]) -> dict:
    """Medians over the repeats, per reference model (and the four together), per catdog job, and
    for prediction."""
    reference_models = sorted({k for r in repeats for k in r.get("reference", {}).get("models", {})})
    jobs = list(dict.fromkeys(k for r in repeats for k in r.get("catdog", {})))
    reference = {m: median_record([r["reference"]["models"][m] for r in repeats
                                   if m in r["reference"].get("models", {})])
                 for m in reference_models}
    together = ("fit_seconds", "process_seconds")
    complete = set(REFERENCE_MODELS) <= set(reference) and all(reference[m].get(key) is not None
                                                                 for m in REFERENCE_MODELS for key in together)
    return {
        "reference": reference,
        "reference_total": ({key: sum(reference[m][key] for m in REFERENCE_MODELS) for key in together}
                            if complete else {}),
        "catdog": {j: median_record([r["catdog"][j] for r in repeats if j in r["catdog"]]) for j in jobs},
        "predict": median_record([r["predict"] for r in repeats if "predict" in r]),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def figure(path: str, found: dict) -> float | None:
    """The figure a target names (see `Target.figure`) in `found`, or None where it was not measured."""
    if " / " in path:
        numerator, denominator = (figure(part, found) for part in path.split(" / "))
        return ratio(numerator, denominator)
    if " - " in path:
        first, second = (figure(part, found) for part in path.split(" - "))
        return first - second if first is not None and second is not None else None
    value: Any = found
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def judge(summary: dict, exercise: dict | None) -> list[dict]:
    """Each target in `TARGETS`, with its figure from the summary's medians and the `catdog run`
    step, as results.json records it."""
    found = summary | {"run": exercise if exercise and "error" not in exercise else {}}
    judged = []
    for target in TARGETS:
        measured, at_most = figure(target.figure, found), target.direction == "<="
        passed = None if measured is None else measured <= target.needed if at_most else measured >= target.needed
        judged.append({"name": target.name, "measured": measured, "needed": target.needed, "at_most": at_most,
                       "unit": target.unit, "passed": passed})
    return judged


# Writing ------------------------------------------------------------------------------

EPOCH_COLUMNS = [("epochs", "epochs", ""), ("s/epoch", "epoch_mean", "s"), ("1st epoch", "epoch_first", "s"),
                 ("later epochs", "epoch_later", "s"), ("fastest later", "epoch_fastest", "s")]
ACCURACY_COLUMNS = [("best val", "best_val_accuracy", "%"), ("last val", "last_val_accuracy", "%")]
REFERENCE_COLUMNS = [*EPOCH_COLUMNS, ("fit total", "fit_seconds", "s"), ("process", "process_seconds", "s"),
                     ("peak RSS", "peak_rss_bytes", "B"), *ACCURACY_COLUMNS,
                     ("test (catdog split)", "test_accuracy", "%"),
                     ("reference's own test (leaky)", "reference_test_accuracy", "%")]
CATDOG_COLUMNS = [*EPOCH_COLUMNS, ("epochs total", "history_seconds", "s"), ("whole command", "command_seconds", "s"),
                  ("peak RSS", "peak_rss_bytes", "B"), *ACCURACY_COLUMNS, ("test", "test_accuracy", "%")]
PREDICT_COLUMNS = [("whole process", "seconds", "s"), ("images/s", "images_per_second", "/s"),
                   ("fixed cost", "fixed_seconds", "s"), ("steady images/s", "steady_images_per_second", "/s"),
                   ("peak RSS", "peak_rss_bytes", "B")]
PREDICT_SIDES = {"`catdog predict RUN FOLDER --json` (the export)": "catdog_",
                 "`catdog predict RUN FOLDER --json --runtime keras`": "keras_",
                 "loop of `model.predict`, one image at a time": "loop_"}


# How `fmt` shows a figure in each unit: `%` for fractions, `s`, `x` for ratios, `/s`, `B` for bytes (in MB).
FORMATS = {"%": lambda v: f"{100 * v:.1f} %", "s": lambda v: f"{v:.1f} s" if v < 600 else f"{v / 60:.1f} min",
           "x": lambda v: f"{v:.3g}×", "/s": lambda v: f"{v:.0f}/s", "B": lambda v: f"{v / 1e6:,.0f} MB",
           "": lambda v: f"{v:g}"}


def fmt(value: float | None, unit: str = "") -> str:
    """A figure for the tables, in `unit` (see `FORMATS`); – where it was not measured."""
    return "–" if value is None else FORMATS[unit](value)


def record_table(label: str, records: dict[str, dict], columns: Sequence[tuple[str, str, str]]) -> Table:
    """One row per record, one column per (header, key, unit); a failed record says why."""
    rows = [[name, f"failed: {r['error']}", *[""] * (len(columns) - 1)] if "error" in r
            else [name, *(fmt(r.get(key), unit) for _, key, unit in columns)] for name, r in records.items()]
    return Table([label, *(header for header, _, _ in columns)], rows)


def load_text(load: Sequence[float] | None) -> str:
    return ", ".join(f"{x:.2f}" for x in load) if load else "–"


def about_rows(results: dict) -> list[list[str]]:
    """The run's circumstances: date, command, machine, software, load, data, epochs."""
    machine, settings, load = results["machine"], results["settings"], results["load_average"]
    bf16 = "yes" if machine["bfloat16"] else "no"
    subset = f", subset: {settings['subset']}" if settings["subset"] else ""
    return [
        ["date", results["date"]],
        ["command", f"`{results['command']}`"],
        ["machine", f"{machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
                    f"{machine['memory_bytes'] / 1e9:.0f} GB, bfloat16 instructions: {bf16}"],
        ["software", f"Python {machine['python']}, TensorFlow {machine['tensorflow']}, Keras {machine['keras']}, "
                     f"{machine['os']}"],
        ["load average (1, 5, 15 min)",
         f"{load_text(load['start'])} at the start, {load_text(load['end'])} at the end"],
        ["data", f"`{settings['data']}`{subset}"],
        ["epochs", f"reference {settings['reference_epochs']}; "
                   f"catdog {settings['catdog_epochs'] or 'each preset at its defaults'}"],
        ["repeats", f"{settings['repeat']} (figures are medians)" if settings["repeat"] > 1 else "1"],
        ["took", fmt(results["seconds"], "s")],
    ] + [["re-measured", f"{', '.join(r['rows'])} on {r['date']}: `{r['command']}` (load average at the end "
                         f"{load_text(r['load_average'])}); the other rows are from the run above"]
         for r in results.get("remeasured", [])]


def prediction_blocks(predict: dict) -> list:
    if not predict or "error" in predict:
        return [Paragraph(f"Failed: {predict['error']}" if predict else "Not measured.")]
    records = {label: {key.removeprefix(prefix): value for key, value in predict.items() if key.startswith(prefix)}
               for label, prefix in PREDICT_SIDES.items()}
    accuracy = (f" It scores {fmt(predict['export_test_accuracy'], '%')} on the test split, the Keras model "
                f"{fmt(predict['keras_test_accuracy'], '%')}." if predict.get("export_test_accuracy") is not None
                else "")
    return [
        Paragraph(f"The `{PREDICT_ROW}` run above ({predict.get('image_size'):.0f} px) on {predict['images']:.0f} "
                  f"JPEGs, each side a fresh process. `{predict.get('export')}` took "
                  f"{fmt(predict.get('export_seconds'), 's')} first.{accuracy} `catdog predict` then runs that export "
                  "with its own runtime, its default for a run with one."),
        record_table("method", records, PREDICT_COLUMNS),
        Paragraph(f"`catdog serve RUN` answered its first `POST /predict` (one image) "
                  f"{fmt(predict.get('serve_first_answer_seconds'), 's')} after it was started."),
    ]


def exercise_blocks(exercise: dict | None, summary: dict) -> list:
    """`catdog run`: its time against the reference's four models, its memory, and each model."""
    if not exercise:
        return [Paragraph("Not measured.")]
    if "error" in exercise:
        return [Paragraph(f"Failed: {exercise['error']} (peak RSS until then {fmt(exercise['peak_rss_bytes'], 'B')}).")]
    reference_fit = summary.get("reference_total", {}).get("fit_seconds")
    rows = []
    for preset, model in EXERCISE_PAIRS:
        r = exercise["models"].get(preset)
        if r is None:
            continue
        epochs = f"{r['epochs']} of {r['planned_epochs']}" if r.get("stopped") else str(r.get("epochs", ""))
        reference_test = figure(f"reference.{model}.test_accuracy", summary)
        rows.append([preset, epochs, r.get("stopped") or "", fmt(r["training_seconds"], "s"),
                     fmt(r["test_accuracy"], "%"), f"model {model}", fmt(reference_test, "%")])
    return [
        Paragraph(f"`{exercise['command']}`: {fmt(exercise['command_seconds'], 's')} for the whole command, against "
                  f"{fmt(reference_fit, 's')} of `fit` for the reference's four models "
                  f"({fmt(ratio(exercise['command_seconds'], reference_fit), 'x')}); peak RSS "
                  f"{fmt(exercise['peak_rss_bytes'], 'B')}."),
        Table(["model", "epochs", "why it stopped", "training", "test", "reference", "reference test"], rows),
    ]


def render(results: dict) -> str:
    """results.md: the circumstances, the targets, then every figure."""
    summary, settings = results["summary"], results["settings"]
    blocks: list = [Heading("catdog benchmark: catdog against the reference recipe"
                            + (" (quick mode)" if settings["quick"] else ""), level=1)]
    if settings["quick"]:
        blocks.append(Paragraph(
            f"> **Quick mode**: {settings['catdog_epochs']} epochs on a subset, to check that the benchmark works. "
            "Accuracy targets are not expected to pass, and the times are not the benchmark's."))
    if results.get("stopped_during"):
        blocks.append(Paragraph(f"> **Stopped** during {results['stopped_during']}: that step, and any other not "
                                "reported below, was not measured in this run."))
    verdicts = {True: "pass", False: "**FAIL**", None: "not measured"}
    targets = [[t["name"], fmt(t["measured"], t["unit"]),
                ("≤ " if t["at_most"] else "≥ ") + fmt(t["needed"], t["unit"]), verdicts[t["passed"]]]
               for t in results["targets"]]
    compared = []
    for preset, model, what, ours_key, theirs_key in COMPARISONS:
        ours = figure(f"catdog.{preset}.{ours_key}", summary)
        theirs = figure(f"reference.{model}.{theirs_key}", summary)
        compared.append([preset, f"model {model}", what, *(fmt(v, "s") for v in (ours, theirs)),
                         fmt(ratio(ours, theirs), "x")])
    blocks += [
        Table(["", ""], about_rows(results)),
        Heading("Targets"),
        Table(["target", "measured", "needed", "result"], targets),
        Heading("catdog against the reference"),
        Table(["catdog", "reference", "compared", "catdog", "reference", "ratio"], compared),
        Heading("The reference recipe (001), per model"),
        record_table("model", {f"model {m}": record for m, record in summary["reference"].items()},
                     REFERENCE_COLUMNS),
        Heading("catdog, per preset"),
        record_table("preset", summary["catdog"], CATDOG_COLUMNS),
        Heading("Prediction"),
        *prediction_blocks(summary["predict"]),
        Heading("The whole exercise: `catdog run`"),
        *exercise_blocks(results.get("exercise"), summary),
        Heading("How this was measured"),
        Paragraph(METHOD),
    ]
    if MISSES.is_file() and not settings["quick"]:
        blocks.append(Paragraph(MISSES.read_text().strip()))
    return to_markdown(blocks, BENCH_DIR)


METHOD = """\
- Every model (reference) and every command (catdog) runs in a child process of its own; its wall time is
  taken from start to exit and its peak resident memory (RSS) is the kernel's figure for that child
  (`os.wait4`), so one model's memory never hides another's. MB are 10^6 bytes.
- Reference: `benchmarks/reference_recipe.py`, the tutorial of `../shared/seeds/001_*.txt` written fresh with
  only the Keras 3 fixes it needs (listed at the top of that file). *s/epoch* is the mean wall time of an epoch
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
  the same files for every model. The reference's own test figure is shown for the record only: its
  split is drawn from a dataset that reshuffles on every pass and overlaps the validation images. The
  reference validates on its own split, as written, which holds catdog's test files; it never selects or
  stops on it, so its test score stays fair.
- Prediction: `catdog predict` on a folder of JPEGs against `benchmarks/predict_loop.py`, which loads the
  same model and calls `model.predict` once per image. *Fixed cost* is what does not depend on the
  number of images (start-up, imports, model loading): for `catdog predict` the time it takes for one
  image, for the loop its whole time less the loop's; *steady* rates leave it out.
- The data files are read once before timing starts, so neither side pays for a cold disk cache."""


def machine() -> dict:
    """Cores, CPU model, memory and library versions of this machine (without importing TensorFlow)."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    meminfo = Path("/proc/meminfo").read_text().splitlines() if Path("/proc/meminfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    mem_kib = next((int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:")), 0)
    return {
        "cpu": cpu or platform.processor() or "unknown",
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
    """Summarise the repeats, judge the targets, and write results.md and its .json (atomically)."""
    results["summary"] = summarise(results["repeats"])
    results["targets"] = judge(results["summary"], results["exercise"])
    failures = [f for r in results["repeats"] for f in r["failures"]]
    if "error" in (results["exercise"] or {}):
        failures.append(f"catdog run: {results['exercise']['error']}")
    results["failures"] = list(dict.fromkeys(failures))
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
        if choices is not None and any(item not in choices for item in items):
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {','.join(choices)}")
        return items

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See benchmarks/README.md.")
    add = parser.add_argument
    add("--quick", action="store_true", help=f"{QUICK_EPOCHS} epochs on a subset; writes results-quick.md")
    add("--repeat", type=positive_int, default=1,
        help="repeat the training and prediction steps N times and report medians (default: 1)")
    add("--data", type=Path, default=DEFAULT_DATA,
        help="data folder in the tutorial's layout (default: ../shared/data/cats_and_dogs_filtered)")
    add("--weights", type=Path, default=DEFAULT_WEIGHTS,
        help="MobileNetV2 ImageNet weights without top (default: ../shared/weights/mobilenet_v2_1.0_no_top.h5)")
    add("--epochs", type=positive_int,
        help=f"epochs, both sides (default: the reference's {REFERENCE_EPOCHS} and each preset's own; "
        f"--quick: {QUICK_EPOCHS})")
    add("--presets", type=comma_list(PRESETS), default=list(PRESETS), help="catdog presets to train (default: all)")
    add("--reference-models", type=comma_list(REFERENCE_MODELS), default=list(REFERENCE_MODELS),
        help="the reference's models to train (default: 1,2,3,4)")
    add("--variant", type=parse_job, action="append", default=[], metavar="NAME=PRESET [OPTIONS]",
        help="an extra catdog row: a preset with other options (repeatable)")
    add("--predict-images", type=positive_int,
        help=f"images in the prediction folder (default: {PREDICT_IMAGES}; --quick: {QUICK_PREDICT_IMAGES})")
    add("--run-epochs", type=positive_int,
        help=f"epochs per model for the `catdog run` step (default: each preset's own; --quick: {QUICK_EPOCHS})")
    add("--render", action="store_true",
        help="measure nothing: write the results file again from its .json (after a change to the report)")
    add("--remeasure", type=comma_list(None), metavar="ROWS",
        help="train these catdog rows again (after a change to them) and put them into the existing results "
        "file, keeping every other figure; the results say which rows were re-measured, when")
    add("--out", type=Path,
        help="results file (default: benchmarks/results.md; --quick: benchmarks/results-quick.md); JSON beside it")
    args = parser.parse_args(argv)
    if not (args.data / "train").is_dir() or not (args.data / "validation").is_dir():
        parser.exit(2, f"bench: error: {args.data} has no train/ and validation/ folders; pass --data DIR\n")
    if not args.weights.is_file():
        parser.exit(2, f"bench: error: MobileNetV2 weights {args.weights} are missing; pass --weights PATH\n")
    args.out = args.out or BENCH_DIR / ("results-quick.md" if args.quick else "results.md")
    args.predict_images = args.predict_images or (QUICK_PREDICT_IMAGES if args.quick else PREDICT_IMAGES)
    args.run_epochs = args.run_epochs or (QUICK_EPOCHS if args.quick else None)
    args.catdog_epochs = args.epochs or (QUICK_EPOCHS if args.quick else None)
    args.reference_epochs = args.epochs or (QUICK_EPOCHS if args.quick else REFERENCE_EPOCHS)
    args.jobs = [Job(preset, preset) for preset in args.presets] + args.variant
    return args


def prediction_images(data: Path, count: int) -> list[Path]:
    """`count` images from the validation folders, the classes taking turns."""
    per_class = [image_files(d) for d in sorted((data / "validation").iterdir()) if d.is_dir()]
    return [image for group in zip(*per_class, strict=False) for image in group][:count]


def child_env(weights: Path) -> dict[str, str]:
    """The environment of every measured child process: quiet TensorFlow, the shared weights."""
    return os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2", "CATDOG_WEIGHTS": str(weights)}


@dataclass
class Plan:
    """How a run trains: the data both sides train on, the weights, catdog's epochs (None: each
    preset's own) and the children's environment. The same for a full run and for --remeasure."""

    data: Path
    weights: Path
    epochs: int | None
    env: dict[str, str]

    @classmethod
    def prepare(cls, data: Path, weights: Path, epochs: int | None, quick: bool, work: Path) -> Plan:
        """Read `data` once (see `warm_page_cache`); in quick mode train on a subset linked into `work`."""
        warm_page_cache(data)
        subset = link_subset(data, work / "data", QUICK_PER_CLASS) if quick else data
        return cls(subset, weights, epochs, child_env(weights))

    def train(self, job: Job, here: Path, repeat: dict) -> None:
        """Train catdog row `job` into `here` and put its record into `repeat`, with its failure if it
        failed (and without the failure of an earlier measurement of the row)."""
        record = train_catdog(job, self.data, self.weights, self.epochs, here / job.name, here / f"{job.name}.log",
                              self.env)
        repeat["catdog"][job.name] = record
        repeat["failures"] = [f for f in repeat["failures"] if not f.startswith(f"{job.name}: ")]
        if "error" in record:
            repeat["failures"].append(f"{job.name}: {record['error']}")


def run_repeat(args: argparse.Namespace, plan: Plan, here: Path, repeat: dict, save: Callable[[], None]) -> None:
    """One repeat into `repeat`, saving after every step: each reference model with the catdog
    presets paired with it, prediction after the transfer run, then the unpaired presets."""
    here.mkdir(parents=True)
    repeat.update({"catdog": {}, "reference": {"models": {}}, "failures": []})
    # catdog's leak-free split of the data, which both sides are scored on.
    split = catdog_command("data", "split", "--data", str(plan.data), "--out", str(here / "splits.csv"))
    if run_measured(split, log=here / "split.log", env=plan.env).returncode != 0:
        raise SystemExit(f"bench: `{shown(split)}` failed; see {here / 'split.log'}")
    for model, presets in REFERENCE_PAIRS.items():
        if model in args.reference_models:
            reference = run_reference(plan.data, plan.weights, model, args.reference_epochs, here / "splits.csv",
                                      here / f"reference-{model}.json", here / f"reference-{model}.log", plan.env)
            if "error" in reference:
                repeat["failures"].append(f"reference recipe model {model}: {reference['error']}")
            else:
                repeat["reference"]["models"][model] = reference
            save()
        for job in args.jobs:
            if job.preset in presets:
                plan.train(job, here, repeat)
                save()
        if model == "4" and PREDICT_ROW in repeat["catdog"]:
            run = repeat["catdog"][PREDICT_ROW]  # the model `catdog predict` and `catdog serve` are timed on
            if "error" not in run:
                repeat["predict"] = bench_predict(Path(run["run"]), args.predict_folder, args.predict_one, here,
                                                  plan.env)
                if "error" in repeat["predict"]:
                    repeat["failures"].append(f"prediction: {repeat['predict']['error']}")
            save()
    paired = {preset for presets in REFERENCE_PAIRS.values() for preset in presets}
    for job in args.jobs:
        if job.preset not in paired:
            plan.train(job, here, repeat)
            save()


def read_results(json_path: Path) -> dict:
    """A results .json as bench.py writes it. One written before the tutorial's side was called
    the reference (`seed`, `seed_epochs`, `seed_test_accuracy`) is read with today's keys."""
    results = json.loads(json_path.read_text())

    def renamed(record: dict, old: str, new: str) -> dict:
        return {new if key == old else key: value for key, value in record.items()}

    results["settings"] = renamed(results["settings"], "seed_epochs", "reference_epochs")
    results["repeats"] = [renamed(repeat, "seed", "reference") for repeat in results["repeats"]]
    for repeat in results["repeats"]:
        models = repeat.get("reference", {}).get("models", {})
        for model, record in models.items():
            models[model] = renamed(record, "seed_test_accuracy", "reference_test_accuracy")
    return results


def remeasure(markdown_path: Path, names: Sequence[str], command: str) -> int:
    """Train the catdog rows `names` again, as the run recorded in `markdown_path`'s .json
    trained them, and put them into every repeat there; every other figure stays as it was
    measured. The prediction model is not re-measured alone: its figures belong to its run."""
    json_path = markdown_path.with_suffix(".json")
    if not json_path.is_file():
        info(f"error: {os.path.relpath(json_path)} does not exist; run the benchmark first")
        return 2
    results = read_results(json_path)
    settings = results["settings"]
    jobs = {job["name"]: Job(**job) for job in settings["jobs"]}
    refused = [name for name in names if name not in jobs or name == PREDICT_ROW]
    if refused:
        choices = ", ".join(sorted(set(jobs) - {PREDICT_ROW}))
        info(f"error: cannot re-measure {', '.join(refused)}: choose from {choices}")
        return 2
    work = WORK_DIR / "remeasure"
    shutil.rmtree(work, ignore_errors=True)
    plan = Plan.prepare(Path(settings["data"]), Path(settings["weights"]), settings["catdog_epochs"],
                        settings["quick"], work)
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    for n, repeat in enumerate(results["repeats"], 1):
        (work / f"r{n}").mkdir(parents=True, exist_ok=True)
        for name in names:
            plan.train(jobs[name], work / f"r{n}", repeat)
    results.setdefault("remeasured", []).append(
        {"date": started, "command": command, "rows": list(names), "load_average": list(os.getloadavg())})
    write_results(results, markdown_path)
    info(f"re-measured {', '.join(names)} into {os.path.relpath(markdown_path)} and its .json")
    return 1 if any("error" in r["catdog"][name] for r in results["repeats"] for name in names) else 0


def rerender(markdown_path: Path) -> None:
    """Write `markdown_path` again from its .json, every epoch figure recomputed from the
    recorded epoch times: a change to the report needs no new measurements."""
    results = read_results(markdown_path.with_suffix(".json"))
    for repeat in results["repeats"]:
        for record in [*repeat.get("catdog", {}).values(), *repeat.get("reference", {}).get("models", {}).values()]:
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
    command = shown([sys.executable, str(BENCH_DIR / "bench.py"), *argv])
    if args.remeasure:
        return remeasure(args.out, args.remeasure, command)
    started = time.perf_counter()
    work = WORK_DIR / ("quick" if args.quick else "full")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    images = prediction_images(args.data, args.predict_images)
    args.predict_folder = link_flat(images, work / "predict")
    args.predict_one = link_flat(images[:1], work / "predict-one")
    plan = Plan.prepare(args.data, args.weights, args.catdog_epochs, args.quick, work)
    subset = ", ".join(f"{n} {split} images per class" for split, n in QUICK_PER_CLASS.items())
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": command,
        "machine": machine(),
        "load_average": {"start": list(os.getloadavg()), "end": None},
        "settings": {"quick": args.quick, "data": str(args.data), "subset": subset if args.quick else None,
                     "weights": str(args.weights), "reference_epochs": args.reference_epochs,
                     "catdog_epochs": args.catdog_epochs, "repeat": args.repeat,
                     "jobs": [asdict(job) for job in args.jobs]},
        "repeats": [],
        "exercise": None,
    }

    def save() -> None:
        results["load_average"]["end"] = list(os.getloadavg())
        results["seconds"] = time.perf_counter() - started
        write_results(results, args.out)

    try:
        # First the whole exercise, then the repeats, which end with the longest row (`cnn`).
        results["exercise"] = run_exercise(plan.data, args.run_epochs, work / "run", work / "run.log", plan.env)
        save()
        for n in range(1, args.repeat + 1):
            info(f"repeat {n} of {args.repeat}")
            results["repeats"].append({})
            run_repeat(args, plan, work / f"r{n}", results["repeats"][-1], save)
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
