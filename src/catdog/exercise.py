"""The reference tutorial's whole exercise in one call: `catdog run`.

    >>> summary = run_exercise("cats_and_dogs_filtered", exercise_settings(epochs=5))

In the tutorial's order: a data summary with the baseline, the sample grid, the augmentation
preview, an audit of the data (`catdog.audit`: leaks, suspected label errors, outliers),
each model trained and scored on the test split, then a comparison of the models, all
gathered into `report.html` and `report.md` in one folder (catdog.report.exercise)::

    exercise/
        report.html  report.md  summary.json  audit.json  audit.html
        samples.png  augmentation.png  validation_accuracy.png
        scratch/  augmented/  ...    one run folder per model (see catdog.runs)

Running it again with the same `out` picks up where it stopped: finished models are kept,
an interrupted one is completed (catdog.workflow).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from catdog import files, workflow
from catdog.data import Data, DataArgument, describe, load, log_problems, scan_and_split
from catdog.data.scan import Scan
from catdog.data.splits import Manifest, crossing
from catdog.errors import ParameterError
from catdog.models import IMAGENET, PRESETS, REFERENCE_PRESETS
from catdog.report import previews, write_report
from catdog.report.exercise import (
    AUGMENTATION_PLOT,
    COMPARISON_PLOT,
    FEW_CLASSES,
    SAMPLES_PLOT,
    ModelResult,
    report_blocks,
)
from catdog.report.plots import compare_validation_accuracy
from catdog.runs import RUNS_DIR, Run, TrainSettings, epoch_rank
from catdog.runs.folder import EXERCISE_SUMMARY
from catdog.terminal import percent

logger = logging.getLogger(__name__)


def new_exercise_dir(out: str | os.PathLike | None = None) -> Path:
    """`out` if given, else `runs/exercise-<timestamp>/`."""
    return Path(out) if out is not None else RUNS_DIR / f"exercise-{time.strftime('%Y%m%d-%H%M%S')}"


def exercise_settings(models: Sequence[str] = REFERENCE_PRESETS, **overrides) -> list[TrainSettings]:
    """The settings of each of `models` (preset names), with the same `overrides` (see
    `TrainSettings.resolve`; `backbone` and `weights` apply to the pretrained presets only)."""
    settings = []
    for name in models:
        if name not in PRESETS:
            raise ParameterError("models", f"{{name}}: unknown model {name!r}; choose one of: {', '.join(PRESETS)}")
        pretrained = PRESETS[name].pretrained
        chosen = {key: value for key, value in overrides.items() if pretrained or key not in ("backbone", "weights")}
        settings.append(TrainSettings.resolve(name, **chosen))
    return settings


def run_exercise(data: DataArgument, settings: Sequence[TrainSettings], *, out: str | os.PathLike | None = None,
                 strategy: str = "auto") -> dict[str, Any]:
    """Run the whole exercise into `out` and return its summary (also written to `summary.json`).

    `data`: a folder, or a `catdog.data.Source`. `settings`: one model's each, in the order
    they are trained and reported; they share one seed and batch size, so that every model
    sees the same split of the files, and the models of one image size share one set of
    decoded images. `strategy`: where each trains (see catdog.training.distribute).
    """
    if not settings:
        raise ParameterError("models", "{name} must name at least one model to train")
    started = time.perf_counter()
    seed, batch_size = _shared(settings)
    folder = new_exercise_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    logger.info(f"catdog run: {len(settings)} model{'s' * (len(settings) > 1)} "
                f"({', '.join(s.preset for s in settings)}), everything written to {folder}")
    found, manifest = scan_and_split(data, seed=seed)
    dataset_summary = describe(found, manifest, seed=seed)
    for line in data_lines(dataset_summary):
        logger.info(line)
    log_problems(found, manifest)
    loaded: dict[int, Data] = {}

    def data_at(size: int) -> Data:
        if size not in loaded:
            loaded[size] = load(found.root, image_size=size, batch_size=batch_size, seed=seed, manifest=manifest)
        return loaded[size]

    files.save_figure(previews.sample_grid(manifest, seed=seed), folder / SAMPLES_PLOT)
    files.save_figure(previews.augmentation_preview(manifest, seed=seed), folder / AUGMENTATION_PLOT)
    logger.info(f"pictures: {SAMPLES_PLOT} (images of each class) and {AUGMENTATION_PLOT} (one image as "
                "augmentation changes it in training)")
    audit = audit_for_report(data, (found, manifest), folder, settings)
    trained = []
    for number, model in enumerate(settings, 1):
        logger.info(f"model {number} of {len(settings)}: {model.preset} ({_model_in_words(model)})")
        trained.append(_train_or_finish(model, data_at(model.image_size), folder / model.preset, strategy))
    results = [_result(run) for run in trained]

    minimums = {s.preset: s.spec.minimum_accuracy for s in settings if s.spec.minimum_accuracy is not None}
    compare_validation_accuracy({run.preset: run.history for run in trained}, folder / COMPARISON_PLOT, minimums)
    summary = {
        "data": dataset_summary,
        "settings": _settings_summary(settings),
        "audit": audit,
        "models": [asdict(r) for r in results],
        "best": max(results, key=_rank).preset,
        "report": str(folder / "report.html"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    files.write_json(folder / EXERCISE_SUMMARY, summary)
    write_report(report_blocks(summary, folder), folder, title=f"catdog: {Path(dataset_summary['root']).name}")
    return summary


def data_lines(summary: dict[str, Any]) -> list[str]:
    """The data set's summary (`catdog.data.describe`) in a few lines, for the terminal."""
    classes, splits = summary["classes"], summary["splits"]
    total = sum(sum(counts.values()) for counts in splits.values())
    named = f" ({', '.join(classes)})" if len(classes) <= FEW_CLASSES else ""

    def counts(split: str) -> str:
        total = f"{split} {sum(splits[split].values()):,}"
        if len(classes) > FEW_CLASSES:
            return total
        return f"{total} ({', '.join(f'{c} {splits[split][c]:,}' for c in classes)})"

    lines = [f"data: {total:,} images of {len(classes)} classes{named} in {summary['root']} "
             f"({summary['layout']} layout)",
             f"  {', '.join(counts(split) for split in splits)}; split once, with seed {summary['seed']}"]
    if summary.get("baseline_accuracy") is not None:
        lines.append(f"  baseline: always answering {summary['baseline_class']} scores "
                     f"{percent(summary['baseline_accuracy'])} on the test split; every model must beat it")
    groups, leaks = len(summary["duplicates"]), len(summary["leaks"])
    lines.append(f"  skipped: {len(summary['skipped']) or 'none'}; duplicates: {groups} group{'s' * (groups != 1)} "
                 f"of files holding the same photo ({f'{leaks} across splits' if leaks else 'none across splits'})")
    return lines


def _model_in_words(settings: TrainSettings) -> str:
    """What a model of the exercise is, and how it trains, in a few words."""
    description = PRESETS[settings.preset].description
    return (f"{description}; {settings.image_size} px images, up to {settings.epochs} epochs"
            + (f", stopping {settings.patience} epochs after the best" if settings.patience else ""))


def _shared(settings: Sequence[TrainSettings]) -> tuple[int, int]:
    """The seed and batch size every model of the exercise uses."""
    names = [s.preset for s in settings]
    if len(set(names)) < len(names):
        raise ParameterError("models", f"{{name}} names a model twice ({', '.join(names)}); each has its own folder")
    for name in ("seed", "batch_size"):
        if len({getattr(s, name) for s in settings}) > 1:
            raise ParameterError(name, "every model of the exercise needs the same {name}")
    return settings[0].seed, settings[0].batch_size


def _settings_summary(settings: Sequence[TrainSettings]) -> dict[str, Any]:
    """What the models' settings share (None where they differ), for the summary."""
    shared = {}
    for key in ("image_size", "batch_size", "seed", "epochs", "class_weight", "patience"):
        values = {getattr(model, key) for model in settings}
        shared[key] = values.pop() if len(values) == 1 else None
    return shared


def _train_or_finish(settings: TrainSettings, loaded: Data, path: Path, strategy: str) -> Run:
    """Train `settings` into `path`, keep the run there if it is finished, or complete it."""
    if (path / "config.json").is_file():
        run = Run.open(path)
        if workflow.is_finished(run):
            logger.info(f"{settings.preset}: already trained in {path}; kept as it is")
            return run
        logger.info(f"{settings.preset}: completing the interrupted run in {path}")
        return workflow.resume_run(run, loaded, strategy=strategy)
    return workflow.train_run(settings, loaded, out=path, strategy=strategy)


def _rank(result: ModelResult) -> tuple[float, float]:
    """Models compare as epochs do (see `runs.epoch_rank`), by their best epochs."""
    return epoch_rank({"val_accuracy": result.best_val_accuracy, "val_loss": result.best_val_loss})


def _result(run: Run) -> ModelResult:
    history = run.history
    best = max(history, key=epoch_rank)
    metrics = run.metrics or {}
    return ModelResult(
        preset=run.preset,
        run=str(run.path),
        parameters=run.keras_model().count_params(),
        best_val_accuracy=best["val_accuracy"],
        best_val_loss=best["val_loss"],
        best_epoch=int(best["epoch"]),
        last_val_accuracy=history[-1]["val_accuracy"],
        last_accuracy=history[-1]["accuracy"],
        test_accuracy=metrics["accuracy"],
        test_n=metrics["n"],
        image_size=run.image_size,
        training_seconds=run.outcome.get("seconds") or sum(row["seconds"] for row in history),
        test_balanced_accuracy=metrics.get("balanced_accuracy"),
        test_macro_f1=metrics.get("macro_f1"),
        test_top_5_accuracy=metrics.get("top_5_accuracy"),
        epochs=len(history),
        planned_epochs=run.settings.epochs,
        stopped=run.outcome.get("stopped"),
    )


# The audit -----------------------------------------------------------------------------------


def audit_for_report(data: DataArgument, scanned: tuple[Scan, Manifest], folder: Path,
                     settings: Sequence[TrainSettings]) -> dict[str, Any]:
    """Audit the data set into `folder` (`audit.json`, `audit.html`), with the backbone and
    weights of the first pretrained model of `settings` (else the defaults); its JSON, or what
    the scan found and why no more was checked (`not_checked`)."""
    from catdog.audit.result import HTML_FILE, JSON_FILE
    from catdog.report.audit_page import write_html

    pretrained = next((s for s in settings if s.network is not None), None)
    backbone = pretrained.backbone if pretrained else None
    weights = pretrained.weights if pretrained else None
    if reason := _cannot_audit(backbone, weights):
        logger.info(f"audit: duplicate photos only; label errors and outliers not looked for: {reason}")
        found, manifest = scanned
        leaks = {group.paths: splits for group, splits in crossing(manifest, found.duplicates)}
        split_of = {row.path: row.split for row in manifest.rows}
        duplicates = [{"kind": g.kind, "paths": list(g.paths), "splits": [split_of[p] for p in g.paths],
                       "leak": g.paths in leaks} for g in found.duplicates]
        return {"duplicates": duplicates, "label_issues": [], "outliers": [], "not_checked": reason}
    from catdog.audit import audit

    logger.info("audit: looking for duplicate photos, suspected label errors and outliers")
    seed, batch_size = _shared(settings)
    result = audit(data, seed=seed, backbone=backbone, weights=weights, batch_size=batch_size, scanned=scanned)
    result.write_json(folder / JSON_FILE)
    write_html(result, folder / HTML_FILE)
    return result.to_json()


def _cannot_audit(backbone: str | None, weights: str | None) -> str | None:
    """Why label errors and outliers cannot be looked for here (no download is made for them), or None."""
    from catdog import environment
    from catdog.audit.features import FEATURE_PRESET
    from catdog.models import default_image_size, get_preset, resolve_backbone, resolve_weights

    try:
        import cleanlab  # noqa: F401
    except ImportError:
        return "they need the audit extra (pip install 'catdog[audit]')"
    spec = get_preset(FEATURE_PRESET)
    network = resolve_backbone(spec, backbone)
    resolved = resolve_weights(spec, network, weights)
    if resolved is None:
        return "they need the backbone's pretrained weights, and the weights are none"
    file_name = network.weights_file(default_image_size(spec, network))
    cached = environment.keras_weights_dir()
    if resolved == IMAGENET and not (cached / file_name).is_file():
        return (f"they need the backbone's pretrained weights: {file_name} is not in {cached} "
                f"(set ${environment.ENV_WEIGHTS} or --weights)")
    return None
