#!/usr/bin/env python3
"""Can a prediction be trusted? Calibration, "none of these" and test-time augmentation, measured.

    python benchmarks/trust.py                  # trains `transfer` (defaults) on the reference data first
    python benchmarks/trust.py --run RUN        # measures a run trained already

1. The out-of-distribution check set: photos of other things, fetched by `ood_photos.py`
   into `benchmarks/work/ood/` (once; never committed).
2. `catdog train --model transfer --data DATA --weights WEIGHTS`, the issue's defaults.
3. Calibration on the test split: the run's `metrics.json` ("calibration"), and the loss
   before and after.
4. Flag rates at the run's rate (5 %): `catdog predict RUN FOLDER --json` over the check set
   and over the reference data's test split, with Keras and again with the ONNX export (`catdog
   export RUN --format onnx`, which predict then runs with onnxruntime).
5. Test-time augmentation on the test split: `catdog evaluate --tta` on a copy of the run.
6. The choices, made on the validation split, never the test split: each detector is
   thresholded on the validation split and scored on half the check set (the "selection"
   half: every other file by name, per group); the other half is only reported. The
   test-time views are compared on the validation split.

7. `--also finetune,scratch` (the default): other presets trained the same way, for their
   calibration and flag rates (`catdog predict` over the check set, Keras).

Writes `trust.md` and `trust.json` beside this file; work files go to `benchmarks/work/trust/`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from catdog.files import write_json, write_text
from catdog.report import Heading, Paragraph, Table, to_markdown
from catdog.runs import Run
from catdog.runs.folder import CALIBRATION_FILE, CONFIG_FILE, METRICS_FILE, read_json

from bench import catdog_command, child_env, fmt, machine, shown
from benchkit import DEFAULT_DATA, DEFAULT_WEIGHTS, link_flat, run_measured

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / "work" / "trust"
OOD_DIR = BENCH_DIR / "work" / "ood"
GROUPS = ("photos", "tiny", "cutouts")
# Candidate detectors: (method, k of the k-th nearest neighbour; None for Mahalanobis).
DETECTORS = [("knn", 1), ("knn", 5), ("knn", 10), ("knn", 50), ("mahalanobis", None)]
# Candidate test-time views, compared on the validation split.
VIEW_SETS = {"image": ("image",), "image + mirror": ("image", "mirror"),
             "image + mirror + 2 zoomed": ("image", "mirror", "zoom", "zoom mirror")}
ZOOM = 0.875  # the centre crop of a zoomed view, as a share of the side


def info(message: str) -> None:
    print(f"[trust] {message}", file=sys.stderr, flush=True)


def halves(group: str) -> dict[str, list[Path]]:
    files = sorted((OOD_DIR / group).glob("*.jpg"))
    return {"selection": files[0::2], "held out": files[1::2]}


def flagged(predictions_file: Path) -> dict[str, bool]:
    """Path -> whether `catdog predict --json` called it unlike the training images."""
    rows = [json.loads(line) for line in predictions_file.read_text().splitlines() if line.strip()]
    return {Path(row["path"]).resolve().name: row["in_distribution"] is False for row in rows}


def share(flags: dict[str, bool], files: list[Path]) -> float | None:
    known = [flags[f.name] for f in files if f.name in flags]
    return sum(known) / len(known) if known else None


def predict_rates(run: Path, test_files: list[Path], runtime: str, env) -> dict[str, Any]:
    """Flag rates from `catdog predict --json` over the check set and the test split."""
    out = WORK_DIR / f"predict-{runtime}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    folders = {"test": link_flat(test_files, out / "test"), **{g: OOD_DIR / g for g in GROUPS}}
    rates: dict[str, Any] = {}
    for name, folder in folders.items():
        command = catdog_command("predict", str(run), str(folder), "--json", "--runtime", runtime)
        measured = run_measured(command, log=out / f"{name}.log", stdout=out / f"{name}.jsonl", env=env)
        if measured.returncode:
            return {"error": f"{shown(command)}: exit status {measured.returncode}"}
        flags = flagged(out / f"{name}.jsonl")
        if name == "test":
            rates["test"] = {"n": len(flags), "flagged": sum(flags.values()) / len(flags)}
            continue
        parts = halves(name)
        rates[name] = {"n": len(flags), "flagged": sum(flags.values()) / len(flags),
                       **{half: share(flags, files) for half, files in parts.items()}}
    every = [rates[g] for g in GROUPS]
    rates["all"] = {"n": sum(r["n"] for r in every),
                    "flagged": sum(r["flagged"] * r["n"] for r in every) / sum(r["n"] for r in every)}
    return rates


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """The probability that an image from outside scores above one from inside (ties: half)."""
    scores = np.concatenate([inside, outside])
    order = scores.argsort(kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[len(inside):].sum() - len(outside) * (len(outside) + 1) / 2) / (len(inside) * len(outside)))


def choices(run: Path) -> dict[str, Any]:
    """The detector and the test-time views, compared on the validation split (in this process)."""
    import tensorflow as tf

    from catdog.data import images, load
    from catdog.models.inference import numpy_function, served
    from catdog.trust import calibration, ood

    opened = Run.open(run)
    size, temperature = opened.image_size, opened.temperature
    model = numpy_function(served(opened.keras_model()))  # probabilities without the temperature
    data = load(opened.config.data, image_size=size, batch_size=32, manifest=opened.manifest())

    def zoom(pixels):
        side = round(size * ZOOM)
        start = (size - side) // 2
        return tf.image.resize(pixels[:, start:start + side, start:start + side], (size, size)).numpy()

    views = {"image": lambda x: x, "mirror": lambda x: x[:, :, ::-1], "zoom": zoom,
             "zoom mirror": lambda x: zoom(x)[:, :, ::-1]}

    def collect(dataset, with_views: bool = False):
        parts = []
        for x, y in dataset.as_numpy_iterator():
            out = model(x)
            extra = {name: model(view(x))["probabilities"] for name, view in views.items()} if with_views else {}
            parts.append((out["features"], y, extra))
        features = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        by_view = {name: np.concatenate([p[2][name] for p in parts]) for name in views} if with_views else {}
        return features, labels, by_view

    info("features of the training and validation splits")
    train_x, train_y, _ = collect(data.train)
    val_x, val_y, val_views = collect(data.validation, with_views=True)
    selection = [f for g in GROUPS for f in halves(g)["selection"]]
    info(f"features of the {len(selection)} check-set images of the selection half")
    other_x = np.concatenate([model(images.load_images(selection[i:i + 32], size))["features"]
                              for i in range(0, len(selection), 32)])

    detectors = []
    for method, k in DETECTORS:
        share_k = {} if k is None else {"share": k / len(train_x)}
        fitted = ood.METHODS[method].fit(train_x, train_y, seed=opened.settings.seed, **share_k)
        inside, outside = fitted.distances(val_x), fitted.distances(other_x)
        threshold = ood.threshold_for(inside, opened.settings.ood_rate)
        detectors.append({"method": method, "k": k, "flagged": float(np.mean(outside > threshold)),
                          "auroc": auroc(inside, outside)})
    chosen = opened.settings.ood_method
    default = {"method": chosen, "k": max(1, round(len(train_x) * ood.NEIGHBOUR_SHARE)) if chosen == "knn" else None}

    tta = []
    for name, members in VIEW_SETS.items():
        averaged = np.mean([calibration.scale(val_views[v], temperature) for v in members], axis=0)
        tta.append({"views": name, "accuracy": float(np.mean(averaged.argmax(axis=1) == val_y)),
                    "loss": calibration.negative_log_likelihood(averaged, val_y),
                    "ece": calibration.expected_calibration_error(averaged, val_y)})
    return {"validation_n": int(len(val_y)), "train_n": int(len(train_y)), "selection_n": len(selection),
            "detectors": detectors, "default": default, "tta": tta}


def test_loss_uncalibrated(run: Path) -> float:
    """The test split's cross-entropy without the temperature, for the table (reported, never chosen on)."""
    from catdog.data import load
    from catdog.models.inference import numpy_function, served
    from catdog.trust import calibration

    opened = Run.open(run)
    model = numpy_function(served(opened.keras_model()))
    data = load(opened.config.data, image_size=opened.image_size, batch_size=32, manifest=opened.manifest())
    parts = [(model(x)["probabilities"], y) for x, y in data.test.as_numpy_iterator()]
    return calibration.negative_log_likelihood(np.concatenate([p for p, _ in parts]),
                                               np.concatenate([y for _, y in parts]))


def other_preset(preset: str, args: argparse.Namespace, env) -> dict[str, Any]:
    """Another preset trained at its defaults: its calibration and flag rates."""
    run = WORK_DIR / preset
    shutil.rmtree(run, ignore_errors=True)
    from catdog.models import get_preset

    weights = ("--weights", str(args.weights)) if get_preset(preset).pretrained else ()
    command = catdog_command("train", "--model", preset, "--data", str(args.data), *weights, "--out", str(run))
    info(shown(command))
    measured = run_measured(command, log=WORK_DIR / f"train-{preset}.log", env=env)
    if measured.returncode:
        return {"error": f"{shown(command)}: exit status {measured.returncode}"}
    metrics = read_json(run / METRICS_FILE)
    command = catdog_command("predict", str(run), str(OOD_DIR), "--json", "--runtime", "keras")
    out = WORK_DIR / f"predict-{preset}.jsonl"
    if run_measured(command, log=WORK_DIR / f"predict-{preset}.log", stdout=out, env=env).returncode:
        return {"error": f"{shown(command)} failed"}
    flags = flagged(out)
    return {"command": shown(command), "seconds": measured.seconds, "accuracy": metrics["accuracy"],
            **metrics["calibration"], "test_flagged": metrics["ood"]["flagged"],
            "check_set_flagged": sum(flags.values()) / len(flags)}


def measure(args: argparse.Namespace, results: dict[str, Any], save) -> None:
    env = child_env(args.weights)
    if not (OOD_DIR / "manifest.csv").is_file():
        info("fetching the out-of-distribution check set")
        command = [sys.executable, str(BENCH_DIR / "ood_photos.py"), str(OOD_DIR)]
        if run_measured(command, log=WORK_DIR / "ood_photos.log").returncode:
            raise SystemExit(f"fetching the check set failed; see {WORK_DIR / 'ood_photos.log'}")
    results["check_set"] = {g: len(list((OOD_DIR / g).glob("*.jpg"))) for g in GROUPS}

    run = WORK_DIR / "run"
    shutil.rmtree(run, ignore_errors=True)
    if args.run:
        shutil.copytree(args.run, run)  # the export below goes into the run: into a copy, not the original
        results["train"] = {"run": str(args.run)}
    else:
        command = catdog_command("train", "--model", "transfer", "--data", str(args.data), "--weights",
                                 str(args.weights), "--out", str(run))
        info(shown(command))
        measured = run_measured(command, log=WORK_DIR / "train.log", env=env)
        if measured.returncode:
            raise SystemExit(f"{shown(command)} failed; see {WORK_DIR / 'train.log'}")
        results["train"] = {"command": shown(command), "seconds": measured.seconds}
    metrics, fitted = read_json(run / METRICS_FILE), read_json(run / CALIBRATION_FILE)
    results["settings"] = {key: read_json(run / CONFIG_FILE)[key] for key in ("preset", "image_size", "ood_method",
                                                                               "ood_rate", "seed")}
    results["calibration"] = {
        "test": {**metrics["calibration"], "n": metrics["n"], "accuracy": metrics["accuracy"], "loss": metrics["loss"],
                 "loss_uncalibrated": test_loss_uncalibrated(run)},
        "validation": {"temperature": fitted["temperature"], **fitted["validation"]},
    }
    save()

    from catdog.data.splits import TEST

    test_files = [Path(p) for p in Run.open(run).manifest().files(TEST)[0]]
    info("flag rates with Keras")
    results["flags"] = {"keras": predict_rates(run, test_files, "keras", env)}
    command = catdog_command("export", str(run), "--format", "onnx")
    if run_measured(command, log=WORK_DIR / "export.log", env=env).returncode:
        results["flags"]["onnx"] = {"error": f"{shown(command)} failed"}
    else:
        info("flag rates with onnxruntime")
        results["flags"]["onnx"] = predict_rates(run, test_files, "onnx", env)
    save()

    info("test-time augmentation on the test split")
    copy = WORK_DIR / "run-tta"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run, copy)
    command = catdog_command("evaluate", str(copy), "--tta", "--json")
    measured = run_measured(command, log=WORK_DIR / "tta.log", stdout=WORK_DIR / "tta.json", env=env)
    if measured.returncode:
        results["tta_test"] = {"error": f"{shown(command)} failed"}
    else:
        with_tta = json.loads((WORK_DIR / "tta.json").read_text())
        results["tta_test"] = {name: {"accuracy": m["accuracy"], "loss": m["loss"], "ece": m["calibration"]["ece"]}
                               for name, m in (("without", metrics), ("with", with_tta))}
    save()
    results["choices"] = choices(run)
    save()
    results["also"] = {}
    for preset in args.also:
        results["also"][preset] = other_preset(preset, args, env)
        save()


def render(results: dict[str, Any]) -> str:
    """The Markdown page."""
    blocks: list = [
        Heading("Can a prediction be trusted? Calibration, \"none of these\" and test-time augmentation", level=1),
        Paragraph(f"Measured {results['date']} by `{results['command']}` ({results['seconds'] / 60:.1f} min) on "
                  f"{results['machine']['cpu']} ({results['machine']['cores']} cores)."),
    ]
    train, settings = results.get("train", {}), results.get("settings", {})
    if "command" in train:
        blocks.append(Paragraph(f"The run: `{train['command']}` ({train['seconds']:.0f} s, the whole command, "
                                f"with the temperature and the detector fitted after training); "
                                f"{settings.get('image_size')} px, detector `{settings.get('ood_method')}` at a "
                                f"rate of {fmt(settings.get('ood_rate'), '%')}."))
    if "calibration" in results:
        test, validation = results["calibration"]["test"], results["calibration"]["validation"]
        blocks += [
            Heading("Calibration"),
            Paragraph(f"Temperature {validation['temperature']:.3f}, fitted on the validation split "
                      f"({validation['n']} images). Expected calibration error with 15 equal-width bins, and the mean "
                      "cross-entropy (loss):"),
            Table(["split", "images", "accuracy", "ECE uncalibrated", "ECE calibrated", "loss uncalibrated",
                   "loss calibrated"], [
                ["validation", str(validation["n"]), "–", fmt(validation["ece"], "%"),
                 fmt(validation["ece_calibrated"], "%"), f"{validation['loss']:.4f}",
                 f"{validation['loss_calibrated']:.4f}"],
                ["test", str(test["n"]), fmt(test["accuracy"], "%"), fmt(test["ece_uncalibrated"], "%"),
                 fmt(test["ece"], "%"), f"{test['loss_uncalibrated']:.4f}", f"{test['loss']:.4f}"],
            ]),
        ]
    if "flags" in results:
        flags = results["flags"]
        rows = []
        for name, label in (("test", "reference data's test split"), *((g, f"check set: {g}") for g in GROUPS),
                            ("all", "check set: all")):
            cells = [label, str(flags["keras"].get(name, {}).get("n", "–"))]
            for runtime in ("keras", "onnx"):
                cells.append(fmt(flags.get(runtime, {}).get(name, {}).get("flagged"), "%"))
            rows.append(cells)
        for half in ("selection", "held out"):
            n = sum(len(halves(g)[half]) for g in GROUPS)
            cells = [f"check set, {half} half", str(n)]
            for runtime in ("keras", "onnx"):
                r = flags.get(runtime, {})
                values = [(r[g][half], len(halves(g)[half])) for g in GROUPS if r.get(g, {}).get(half) is not None]
                cells.append(fmt(sum(v * k for v, k in values) / n, "%") if len(values) == len(GROUPS) else "–")
            rows.append(cells)
        blocks += [
            Heading("\"None of these\": the share flagged as unlike the training images"),
            Paragraph("`catdog predict RUN FOLDER --json`, rows with `\"in_distribution\": false`, run by Keras and "
                      "by onnxruntime on the ONNX export (features as its second output). The check set: "
                      "photographs of other things from PyPI wheels and Debian packages (`ood_photos.py`): "
                      f"{', '.join(f'{n} {g}' for g, n in results['check_set'].items())}."),
            Table(["images", "n", "flagged (Keras)", "flagged (ONNX)"], rows),
        ]
    if "choices" in results:
        choice = results["choices"]
        default = (choice["default"]["method"], choice["default"]["k"])
        rows = [[d["method"] + ("" if d["k"] is None else f", k = {d['k']}"), fmt(d["flagged"], "%"),
                 f"{d['auroc']:.4f}", "**catdog's default**" if (d["method"], d["k"]) == default else ""]
                for d in choice["detectors"]]
        blocks += [
            Heading("The detectors compared, on the validation split"),
            Paragraph(f"Each detector fitted on the {choice['train_n']} training images' features, its threshold "
                      f"set on the {choice['validation_n']} validation images for at most "
                      f"{fmt(settings.get('ood_rate'), '%')} of false alarms (flagging that share of them, as `catdog "
                      f"train` sets it), then scored on the check set's selection half ({choice['selection_n']} "
                      "images): the share flagged at that threshold, and the area under the ROC curve (validation "
                      "images against the selection half). The validation split's false alarms are the same for every "
                      "row by construction; the test split is not used."),
            Table(["detector", "selection half flagged", "AUROC", ""], rows),
        ]
        rows = [[t["views"], fmt(t["accuracy"], "%"), f"{t['loss']:.4f}", fmt(t["ece"], "%")] for t in choice["tta"]]
        blocks += [
            Heading("Test-time augmentation"),
            Paragraph("The views, compared on the validation split (calibrated probabilities, averaged over the "
                      "views; the zoomed views are the central 87.5 % of the image, scaled back up). More views are "
                      "worth their cost only if they lower the validation loss:"),
            Table(["views", "accuracy", "loss", "ECE"], rows),
        ]
    if "tta_test" in results and "error" not in results["tta_test"]:
        tta = results["tta_test"]
        blocks += [
            Paragraph("On the test split, `catdog evaluate RUN` against `catdog evaluate RUN --tta` (image and "
                      "mirror):"),
            Table(["", "accuracy", "loss", "ECE"], [[name, fmt(m["accuracy"], "%"), f"{m['loss']:.4f}",
                                                     fmt(m["ece"], "%")] for name, m in tta.items()]),
        ]
    if results.get("also"):
        rows = [[f"`{preset}`", *(["failed: " + r["error"]] + [""] * 5 if "error" in r else [
            fmt(r["accuracy"], "%"), f"{r['temperature']:.3f}", fmt(r["ece_uncalibrated"], "%"), fmt(r["ece"], "%"),
            fmt(r["test_flagged"], "%"), fmt(r["check_set_flagged"], "%")])] for preset, r in results["also"].items()]
        blocks += [
            Heading("Other presets"),
            Paragraph("Each trained by `catdog train --model PRESET --data DATA [--weights WEIGHTS]` (its defaults); "
                      "the test split's calibration from its `metrics.json`, the check set's flags from `catdog "
                      "predict`."),
            Table(["preset", "test accuracy", "temperature", "ECE uncalibrated", "ECE calibrated",
                   "test flagged", "check set flagged"], rows),
        ]
    return to_markdown(blocks, BENCH_DIR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a run to measure (copied) instead of training `transfer`")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"default: {DEFAULT_DATA}")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help=f"default: {DEFAULT_WEIGHTS}")
    parser.add_argument("--also", type=lambda text: [p for p in text.split(",") if p],
                        default=["finetune", "scratch"],
                        help="other presets to train and measure, comma-separated (default: finetune,scratch; "
                        "'' for none)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "trust.md",
                        help="results file (default: benchmarks/trust.md); JSON beside it")
    args = parser.parse_args(argv)
    for path in (args.run, args.data, args.weights):
        if path is not None and not path.exists():
            parser.error(f"{path} does not exist")
    started = time.perf_counter()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(), "seconds": 0.0,
        "command": shlex.join(["python", "benchmarks/trust.py", *(sys.argv[1:] if argv is None else argv)]),
    }

    def save() -> None:
        results["seconds"] = time.perf_counter() - started
        write_json(args.out.with_suffix(".json"), results)
        write_text(args.out, render(results))

    measure(args, results, save)
    save()
    print(render(results), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
