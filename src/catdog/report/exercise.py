"""The report of `catdog run` (the whole exercise), as blocks: the data, the audit, each model,
their comparison, the chosen model's test score and how far its predictions can be trusted.

It is drawn from the exercise's summary (`summary.json`, see catdog.exercise) and the run
folders it names, so that a report can be written again from them alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catdog.data import IMBALANCE_RATIO
from catdog.errors import ParameterError
from catdog.models import get_preset
from catdog.report.audit import audit_blocks
from catdog.report.render import Block, Figure, FigureRow, Heading, Paragraph, Table
from catdog.report.trust import trust_blocks
from catdog.runs import folder

COMPARISON_PLOT = "validation_accuracy.png"
SAMPLES_PLOT = "samples.png"
AUGMENTATION_PLOT = "augmentation.png"


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



def _preset(name: str):
    """The preset a model of the summary was trained from; None if catdog no longer has it."""
    try:
        return get_preset(name)
    except ParameterError:
        return None


def _minimum_accuracy(name: str) -> float | None:
    return preset.minimum_accuracy if (preset := _preset(name)) else None


def _description(name: str) -> str:
    return preset.description if (preset := _preset(name)) else f"preset {name}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def report_blocks(summary: dict[str, Any], exercise_dir: Path) -> list[Block]:
    """The report, in the order of the reference tutorial, with the audit of the data after its summary."""
    data = summary["data"]
    results = [ModelResult(**row) for row in summary["models"]]
    blocks: list[Block] = [
        Heading(f"Image classification: {_class_list(data['classes'])}", 1),
        Paragraph(
            f"Data: `{data['root']}` ({data['layout']} layout), seed {data['seed']}. "
            "Every number below was measured in this run."
        ),
        *_data_blocks(data, exercise_dir),
        *audit_blocks(summary.get("audit")),
    ]
    for number, result in enumerate(results, 1):
        blocks += _model_blocks(number, result)
    blocks += _comparison_blocks(summary, results, exercise_dir)
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


def _data_blocks(data: dict[str, Any], exercise_dir: Path) -> list[Block]:
    blocks: list[Block] = [
        Heading("The data"),
        Paragraph(
            "Files are split once, by file, stratified by class and seeded, and the three splits are "
            "disjoint (the reference's test split was re-drawn on every pass and overlapped validation). "
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
        Figure(exercise_dir / SAMPLES_PLOT, "Random training images of each class."),
        Figure(exercise_dir / AUGMENTATION_PLOT, "Data augmentation: one image, randomly flipped and rotated."),
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
    if tags := data.get("multilabel"):
        sentences.append(_tags_sentence(tags))
    if data.get("imbalance", 1) > IMBALANCE_RATIO:
        sentences.append(f"The classes are imbalanced: the largest has {data['imbalance']:.1f}x the training images "
                         "of the smallest, so balanced accuracy says more than accuracy.")
    for split, names in data.get("missing", {}).items():
        if names:
            listed = ", ".join(f"`{n}`" for n in names[:20]) + (f", and {len(names) - 20} more" * (len(names) > 20))
            sentences.append(f"{len(names)} classes are too small to spare a {split} image: {listed}.")
    return [Paragraph(" ".join(sentences))] if sentences else []


def _tags_sentence(tags: dict[str, Any]) -> str:
    """What a multi-label data set is like, and its baseline."""
    usual = ", ".join(f"`{tag}`" for tag in tags["baseline_tags"]) or "no tag"
    sentence = (f"Each image has any number of tags: {tags['label_cardinality']:.2f} on average, "
                f"{sum(tags['without_tags'].values())} images none.")
    if baseline := tags["baseline"]:
        sentence += (f" The baseline, always giving the most frequent tags of the training split ({usual}), gets every "
                     f"tag of a test image right for **{_pct(baseline['subset_accuracy'])}** of them, with a micro F1 "
                     f"of {_pct(baseline['micro_f1'])}: every model must beat it.")
    return sentence


def _tag_metric_blocks(result: ModelResult, run: Path) -> list[Block]:
    """A multi-label model's figures over its tags, a row per tag, its precision-recall curves and
    examples of each tag's mistakes."""
    metrics = folder.read_json(run / folder.METRICS_FILE) or {}
    rows = [[f"`{tag}`", str(row["n"]), _pct(row["precision"]), _pct(row["recall"]), _pct(row["f1"]),
             _pct(row["average_precision"]), f"{row['threshold']:.2f}"] for tag, row in metrics["per_tag"].items()]
    return [
        Paragraph(f"Over its tags: mean average precision **{_pct(metrics['mean_average_precision'])}**, micro F1 "
                  f"{_pct(metrics['micro_f1'])}, macro F1 {_pct(metrics['macro_f1'])}; every tag of an image right "
                  f"for {_pct(metrics['subset_accuracy'])} of the test images (the accuracy above), and "
                  f"{_pct(metrics['hamming_loss'])} of image-tag pairs wrong. A tag is given from its threshold up, "
                  "chosen on the validation split for the best F1."),
        Table(["tag", "test images with it", "precision", "recall", "F1", "average precision", "threshold"], rows),
        FigureRow([
            Figure(run / folder.PR_CURVES_PLOT, f"`{result.preset}`: precision and recall of each tag on the test "
                                                "split, by threshold."),
            Figure(run / folder.TAG_EXAMPLES_PLOT, f"`{result.preset}`: test images given a tag they do not have, "
                                                   "and not given one they have."),
        ]),
    ]


def _class_metric_blocks(result: ModelResult, run: Path) -> list[Block]:
    """Balanced accuracy and macro F1 (and top-5 accuracy for many classes) of the chosen model,
    with the pairs of classes it confuses most; a multi-label model's figures over its tags."""
    if (run / folder.PR_CURVES_PLOT).is_file():
        return _tag_metric_blocks(result, run)
    if result.test_balanced_accuracy is None:
        return []
    figures = [f"balanced accuracy **{_pct(result.test_balanced_accuracy)}**", f"macro F1 {_pct(result.test_macro_f1)}"]
    if result.test_top_5_accuracy is not None:
        figures.append(f"top-5 accuracy {_pct(result.test_top_5_accuracy)}")
    blocks: list[Block] = [Paragraph(f"Over its classes: {', '.join(figures)}.")]
    confused = (folder.read_json(run / folder.METRICS_FILE) or {}).get("most_confused") or []
    if confused:
        blocks.append(Table(["true class", "predicted as", "test images"],
                            [[f"`{c['true']}`", f"`{c['predicted']}`", str(c["count"])] for c in confused]))
    return blocks


def _model_blocks(number: int, r: ModelResult) -> list[Block]:
    run = Path(r.run)
    history = folder.read_history(run / folder.HISTORY_FILE)
    late = [row["val_accuracy"] for row in history[len(history) // 2:]]
    minimum = _minimum_accuracy(r.preset)
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
        Paragraph(f"{_sentence_case(_description(r.preset))}; {r.parameters:,} parameters, "
                  f"{r.image_size} px images, {r.training_seconds:.0f} s of training."),
        Paragraph(" ".join(sentences)),
        FigureRow([
            Figure(run / folder.ACCURACY_PLOT, f"`{r.preset}`: accuracy by epoch."),
            Figure(run / folder.LOSS_PLOT, f"`{r.preset}`: loss by epoch."),
        ]),
    ]


def _epochs(r: ModelResult) -> str:
    """Epochs run, of those planned when training stopped early (old summaries: run only)."""
    return f"{r.epochs} of {r.planned_epochs}" if r.stopped else str(r.epochs or "")


def _comparison_blocks(summary: dict[str, Any], results: list[ModelResult], exercise_dir: Path) -> list[Block]:
    best = next(r for r in results if r.preset == summary["best"])
    run = Path(best.run)
    rows = [
        [f"`{r.preset}`", f"{r.parameters:,}", _epochs(r), _pct(r.best_val_accuracy), _pct(r.last_val_accuracy),
         _pct(r.test_accuracy), f"{r.training_seconds:.0f} s"]
        for r in results
    ]
    stopped = [r.preset for r in results if r.stopped]
    early = (f"Training stops once validation accuracy has stopped improving, keeping the best epoch "
             f"(stopped early: {', '.join(f'`{name}`' for name in stopped)}); the reference trains every model for all "
             "its epochs." if stopped else "Every model trained for all its epochs.")
    return [
        Heading("Comparison"),
        Table(["model", "parameters", "epochs", "best validation", "last validation", "test", "training time"], rows),
        Paragraph(early),
        Figure(exercise_dir / COMPARISON_PLOT, "Validation accuracy by epoch, with the assignment's minimum lines."),
        Heading("Score on test data"),
        Paragraph(
            f"Chosen by validation accuracy, the best model is `{best.preset}`: **{_pct(best.test_accuracy)}** "
            f"on {best.test_n} test images that took no part in training or model selection."
        ),
        *_class_metric_blocks(best, run),
        FigureRow([
            Figure(run / folder.CONFUSION_MATRIX_PLOT, f"`{best.preset}`: confusion matrix on the test split (for "
                                                       "tags, per tag)."),
            Figure(run / folder.MISCLASSIFIED_PLOT, f"`{best.preset}`: misclassified test images, under the heatmap of "
                                                  "what drove the wrong prediction (Grad-CAM; red: most)."),
        ]),
        *trust_blocks(best.preset, run),
    ]
