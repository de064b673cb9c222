"""The seed documents' whole exercise in one call: `catdog run`.

In the seed's order: a data summary with the baseline, the sample grid, the augmentation
preview, an audit of the data (`catdog.audit`: leaks, suspected label errors, outliers),
each model trained and scored on the test split, then a comparison of the models, all
gathered into `report.html` and `report.md` in one folder::

    exercise/
        report.html  report.md  summary.json  audit.json  audit.html
        samples.png  augmentation.png  validation_accuracy.png
        scratch/  augmented/  ...    one run folder per model (see catdog.runs)

Running it again with the same `out` picks up where it stopped: finished models are kept,
an interrupted one is resumed from its last finished epoch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from catdog import config, files, runs
from catdog.errors import ParameterError
from catdog.report import Block, Figure, FigureRow, Heading, Paragraph, Table, write_report
from catdog.trust import report as trust_report

DEFAULT_MODELS = ("scratch", "augmented", "preprocessed", "transfer", "finetune")
SUMMARY = "summary.json"
SAMPLES_PLOT = "samples.png"
AUGMENTATION_PLOT = "augmentation.png"
COMPARISON_PLOT = "validation_accuracy.png"

logger = logging.getLogger(__name__)


@dataclass
class ModelResult:
    """One trained model's line in the comparison."""

    preset: str
    run: str
    parameters: int
    best_val_accuracy: float
    best_val_loss: float
    best_epoch: int
    last_val_accuracy: float
    last_accuracy: float
    test_accuracy: float
    test_n: int
    image_size: int
    training_seconds: float
    test_balanced_accuracy: float | None = None  # None in summaries written before they were measured
    test_macro_f1: float | None = None
    test_top_5_accuracy: float | None = None  # with more than 5 classes
    epochs: int = 0
    planned_epochs: int = 0
    # Why training ended before `planned_epochs` (validation stopped improving), if it did.
    stopped: str | None = None


def new_exercise_dir(out: str | Path | None = None) -> Path:
    """`out` if given, else `runs/exercise-<timestamp>/`."""
    return Path(out) if out is not None else config.RUNS_DIR / f"exercise-{time.strftime('%Y%m%d-%H%M%S')}"


def run_exercise(
    data: str | Path | None = None,
    *,
    models: Sequence[str] = DEFAULT_MODELS,
    epochs: int | None = None,
    image_size: int | None = None,
    batch_size: int = config.BATCH_SIZE,
    seed: int = config.SEED,
    backbone: str | None = None,
    weights: str | None = None,
    strategy: str = "auto",
    out: str | Path | None = None,
    class_weight: str = config.CLASS_WEIGHT,
    patience: int | None = None,
) -> dict[str, Any]:
    """Run the whole exercise into `out` and return its summary (also written to `summary.json`).

    `data`: a folder, or a `catdog.data.Source` (labels from a CSV file, small classes left out);
    `class_weight`: see `catdog.training.recipe.class_weights`.

    `backbone` and `weights` apply to the pretrained presets only (see
    `catdog.models.resolve_weights`);
    `epochs` and `image_size` default to each preset's own (20 epochs and 160 px for the
    seed's models), `patience` too (see `catdog.models.Preset`). Every model sees the same
    split of the files, whatever its image size, and the models of one image size share
    one set of decoded images (see `catdog.data.pipeline`).
    """
    from catdog import data as catdog_data
    from catdog import models as catdog_models

    if unknown := [name for name in models if name not in catdog_models.PRESETS]:
        raise ParameterError("models", f"{{name}}: unknown model {unknown[0]!r}; choose one of: "
                                       f"{', '.join(catdog_models.PRESETS)}")
    presets = [catdog_models.get_preset(name) for name in models]
    if not presets:
        raise ParameterError("models", "{name} must name at least one model to train")
    for preset in presets:  # fail on a missing backbone or weights now, not after an hour of training
        if preset.pretrained:
            catdog_models.resolve_weights(preset, catdog_models.resolve_backbone(preset, backbone), weights)

    folder = new_exercise_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    found, manifest = catdog_data.scan_and_split(data, seed=seed)
    catdog_data.log_problems(found, manifest)
    dataset_summary = catdog_data.describe(found, manifest, seed=seed)
    loaded: dict[int, catdog_data.Data] = {}

    def data_at(size: int) -> catdog_data.Data:
        if size not in loaded:
            loaded[size] = catdog_data.load(found.root, image_size=size, batch_size=batch_size, seed=seed,
                                            manifest=manifest)
        return loaded[size]

    _write_previews(manifest, folder, seed=seed)
    from catdog.audit.report import audit_for_report

    audit = audit_for_report(data, (found, manifest), folder, seed=seed, backbone=backbone, weights=weights,
                             batch_size=batch_size)
    results = []
    for preset in presets:
        size = image_size or catdog_models.default_image_size(preset, catdog_models.resolve_backbone(preset, backbone))
        run = _train_or_resume(
            preset.name, data_at(size), folder / preset.name, epochs=epochs, image_size=size,
            batch_size=batch_size, seed=seed, backbone=backbone if preset.pretrained else None,
            weights=weights if preset.pretrained else None, class_weight=class_weight, strategy=strategy,
            patience=patience,
        )
        results.append(_result(preset.name, run))

    from catdog import plots

    plots.compare_validation_accuracy(
        {r.preset: runs.read_history(Path(r.run) / runs.HISTORY_FILE) for r in results}, folder / COMPARISON_PLOT
    )
    summary = {
        "data": dataset_summary,
        "settings": {"image_size": image_size, "batch_size": batch_size, "seed": seed, "epochs": epochs,
                     "class_weight": class_weight, "patience": patience},
        "audit": audit,
        "models": [asdict(r) for r in results],
        "best": max(results, key=_rank).preset,
        "report": str(folder / "report.html"),
    }
    files.write_json(folder / SUMMARY, summary)
    write_report(report_blocks(summary, folder), folder, title=f"catdog: {Path(dataset_summary['root']).name}")
    return summary


def _write_previews(manifest, folder: Path, *, seed: int) -> None:
    from catdog import preview

    files.save_figure(preview.sample_grid(manifest, seed=seed), folder / SAMPLES_PLOT)
    files.save_figure(preview.augmentation_preview(manifest, seed=seed), folder / AUGMENTATION_PLOT)


def _train_or_resume(preset: str, loaded, run: Path, **settings) -> Path:
    """Train `preset` into `run`, keep it if already finished there, or resume it if interrupted."""
    from catdog import training

    if (run / runs.METRICS_FILE).is_file():
        logger.info(f"{preset}: already trained in {run}, kept")
        return run
    if (run / runs.CONFIG_FILE).is_file():
        logger.info(f"{preset}: resuming the interrupted run in {run}")
        return training.resume(run, data=loaded, strategy=settings["strategy"])
    return training.train(preset, loaded, out=run, **settings)


def _rank(result: ModelResult) -> tuple[float, float]:
    """Models compare as epochs do (see `runs.epoch_rank`), by their best epochs."""
    return runs.epoch_rank({"val_accuracy": result.best_val_accuracy, "val_loss": result.best_val_loss})


def _result(preset: str, run: Path) -> ModelResult:
    opened = runs.open_run(run)
    history = runs.read_history(run / runs.HISTORY_FILE)
    best = runs.best_epoch(history)
    metrics = opened.metrics or {}
    outcome = runs.read_json(run / runs.TRAINING_FILE) or {}
    return ModelResult(
        preset=preset,
        run=str(run),
        parameters=opened.load_model().count_params(),
        best_val_accuracy=best["val_accuracy"],
        best_val_loss=best["val_loss"],
        best_epoch=int(best["epoch"]),
        last_val_accuracy=history[-1]["val_accuracy"],
        last_accuracy=history[-1]["accuracy"],
        test_accuracy=metrics["accuracy"],
        test_n=metrics["n"],
        image_size=opened.image_size,
        training_seconds=sum(row["seconds"] for row in history),
        test_balanced_accuracy=metrics.get("balanced_accuracy"),
        test_macro_f1=metrics.get("macro_f1"),
        test_top_5_accuracy=metrics.get("top_5_accuracy"),
        epochs=len(history),
        planned_epochs=opened.config.epochs,
        stopped=outcome.get("stopped"),
    )


# The report --------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def report_blocks(summary: dict[str, Any], folder: Path) -> list[Block]:
    """The report, in the order of the seed documents, with the audit of the data after its summary."""
    from catdog.audit.report import audit_blocks

    data = summary["data"]
    results = [ModelResult(**row) for row in summary["models"]]
    blocks: list[Block] = [
        Heading(f"Image classification: {_class_list(data['classes'])}", 1),
        Paragraph(
            f"Data: `{data['root']}` ({data['layout']} layout), seed {data['seed']}. "
            "Every number below was measured in this run."
        ),
        *_data_blocks(data, folder),
        *audit_blocks(summary.get("audit")),
    ]
    for number, result in enumerate(results, 1):
        blocks += _model_blocks(number, result)
    blocks += _comparison_blocks(summary, results, folder)
    return blocks


# Up to this many classes they are named in the title and have a column each in the counts.
FEW_CLASSES = 6


def _class_list(classes: list[str]) -> str:
    return ", ".join(classes) if len(classes) <= FEW_CLASSES else f"{len(classes)} classes"


def _counts_table(splits: dict[str, dict[str, int]], classes: list[str]) -> Table:
    """Images per split and class: a column per class, or for many classes a row per class."""
    if len(classes) <= FEW_CLASSES:
        return Table(["split", *classes, "total"], [[split, *(str(counts[c]) for c in classes),
                                                     str(sum(counts.values()))] for split, counts in splits.items()])
    return Table(["class", *splits, "total"], [[f"`{c}`", *(str(splits[s][c]) for s in splits),
                                               str(sum(splits[s][c] for s in splits))] for c in classes])


def _data_blocks(data: dict[str, Any], folder: Path) -> list[Block]:
    blocks: list[Block] = [
        Heading("The data"),
        Paragraph(
            "Files are split once, by file, stratified by class and seeded, and the three splits are "
            "disjoint (the seed's test split was re-drawn on every pass and overlapped validation). "
            "The exact files are listed in each model's `splits.csv`."
        ),
        _counts_table(data["splits"], data["classes"]),
        *_baseline_blocks(data),
    ]
    if data["skipped"]:
        blocks.append(Paragraph(f"{len(data['skipped'])} files were skipped:"))
        blocks.append(Table(["file", "reason"], [[s["path"], s["reason"]] for s in data["skipped"]]))
    else:
        blocks.append(Paragraph("Every file was a readable image; none was skipped."))
    blocks += [
        Figure(folder / SAMPLES_PLOT, "Random training images of each class."),
        Figure(folder / AUGMENTATION_PLOT, "Data augmentation: one image, randomly flipped and rotated."),
    ]
    return blocks


def _baseline_blocks(data: dict[str, Any]) -> list[Block]:
    """The baseline, and what the counts warn of: imbalance, classes a held-out split lacks."""
    sentences = []
    if data.get("baseline_accuracy") is not None:
        sentences.append(f"The baseline, always guessing the most frequent training class (`{data['baseline_class']}`),"
                         f" scores **{_pct(data['baseline_accuracy'])}** on the test split: every model must beat it.")
    if data.get("baseline_balanced_accuracy") is not None:
        sentences.append(f"Its balanced accuracy (the mean recall of the classes) is "
                         f"{_pct(data['baseline_balanced_accuracy'])}.")
    if data.get("imbalance", 1) > config.IMBALANCE_RATIO:
        sentences.append(f"The classes are imbalanced: the largest has {data['imbalance']:.1f}x the training images "
                         "of the smallest, so balanced accuracy says more than accuracy.")
    for split, names in data.get("missing", {}).items():
        if names:
            listed = ", ".join(f"`{n}`" for n in names[:20]) + (f", and {len(names) - 20} more" * (len(names) > 20))
            sentences.append(f"{len(names)} classes are too small to spare a {split} image: {listed}.")
    return [Paragraph(" ".join(sentences))] if sentences else []


def _class_metric_blocks(result: ModelResult, run: Path) -> list[Block]:
    """Balanced accuracy and macro F1 (and top-5 accuracy for many classes) of the chosen model,
    with the pairs of classes it confuses most."""
    if result.test_balanced_accuracy is None:
        return []
    figures = [f"balanced accuracy **{_pct(result.test_balanced_accuracy)}**", f"macro F1 {_pct(result.test_macro_f1)}"]
    if result.test_top_5_accuracy is not None:
        figures.append(f"top-5 accuracy {_pct(result.test_top_5_accuracy)}")
    blocks: list[Block] = [Paragraph(f"Over its classes: {', '.join(figures)}.")]
    confused = (runs.read_json(run / runs.METRICS_FILE) or {}).get("most_confused") or []
    if confused:
        blocks.append(Table(["true class", "predicted as", "test images"],
                            [[f"`{c['true']}`", f"`{c['predicted']}`", str(c["count"])] for c in confused]))
    return blocks


def _model_blocks(number: int, r: ModelResult) -> list[Block]:
    from catdog import models

    run = Path(r.run)
    history = runs.read_history(run / runs.HISTORY_FILE)
    late = [row["val_accuracy"] for row in history[len(history) // 2:]]
    minimum = config.SEED_MINIMUM_ACCURACY.get(r.preset)
    spread = (f"stayed at **{_pct(min(late))}**" if min(late) == max(late)
              else f"stabilised **between {_pct(min(late))} and {_pct(max(late))}**")
    sentences = [
        f"The validation accuracy of `{r.preset}` {spread} over the second half of training, "
        f"at best {_pct(r.best_val_accuracy)} (epoch {r.best_epoch}).",
    ]
    if minimum is not None:
        verdict = "above" if min(late) >= minimum else "not always above"
        sentences.append(f"That is {verdict} the assignment's minimum of {_pct(minimum)}.")
    gap = r.last_accuracy - r.last_val_accuracy
    if gap > 0.1:
        sentences.append(
            f"Training accuracy ended at {_pct(r.last_accuracy)}, {100 * gap:.0f} points above validation: "
            "the model overfits."
        )
    if r.stopped:
        sentences.append(f"Training stopped after epoch {r.epochs} of {r.planned_epochs}: {r.stopped}.")
    sentences.append(
        f"The best epoch's model scores **{_pct(r.test_accuracy)}** on the {r.test_n} test images."
    )
    return [
        Heading(f"Model {number}: `{r.preset}`"),
        Paragraph(f"{_sentence_case(models.get_preset(r.preset).description)}; {r.parameters:,} parameters, "
                  f"{r.image_size} px images, {r.training_seconds:.0f} s of training."),
        Paragraph(" ".join(sentences)),
        FigureRow([
            Figure(run / runs.ACCURACY_PLOT, f"`{r.preset}`: accuracy by epoch."),
            Figure(run / runs.LOSS_PLOT, f"`{r.preset}`: loss by epoch."),
        ]),
    ]


def _epochs(r: ModelResult) -> str:
    """Epochs run, of those planned when training stopped early (old summaries: run only)."""
    return f"{r.epochs} of {r.planned_epochs}" if r.stopped else str(r.epochs or "")


def _comparison_blocks(summary: dict[str, Any], results: list[ModelResult], folder: Path) -> list[Block]:
    best = next(r for r in results if r.preset == summary["best"])
    run = Path(best.run)
    rows = [
        [f"`{r.preset}`", f"{r.parameters:,}", _epochs(r), _pct(r.best_val_accuracy), _pct(r.last_val_accuracy),
         _pct(r.test_accuracy), f"{r.training_seconds:.0f} s"]
        for r in results
    ]
    stopped = [r.preset for r in results if r.stopped]
    early = (f"Training stops once validation accuracy has stopped improving, keeping the best epoch "
             f"(stopped early: {', '.join(f'`{name}`' for name in stopped)}); the seed trains every model for all "
             "its epochs." if stopped else "Every model trained for all its epochs.")
    return [
        Heading("Comparison"),
        Table(["model", "parameters", "epochs", "best validation", "last validation", "test", "training time"], rows),
        Paragraph(early),
        Figure(folder / COMPARISON_PLOT, "Validation accuracy by epoch, with the assignment's minimum lines."),
        Heading("Score on test data"),
        Paragraph(
            f"Chosen by validation accuracy, the best model is `{best.preset}`: **{_pct(best.test_accuracy)}** "
            f"on {best.test_n} test images that took no part in training or model selection."
        ),
        *_class_metric_blocks(best, run),
        FigureRow([
            Figure(run / runs.CONFUSION_MATRIX_PLOT, f"`{best.preset}`: confusion matrix on the test split."),
            Figure(run / runs.MISCLASSIFIED_PLOT, f"`{best.preset}`: misclassified test images, under the heatmap of "
                                                  "what drove the wrong prediction (Grad-CAM; red: most)."),
        ]),
        *trust_report.blocks(best.preset, run),
    ]
