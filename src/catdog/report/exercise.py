"""The report of `catdog run` (the whole exercise), as blocks: the data, the audit, each model,
their comparison, the chosen model's test score and how far its predictions can be trusted.

It is drawn from the exercise's summary (`summary.json`, see catdog.exercise) and the run
folders it names, so that a report can be written again from them alone.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catdog.data import IMBALANCE_RATIO
from catdog.data.splits import TEST
from catdog.errors import CatdogError, ParameterError
from catdog.models import get_preset
from catdog.report.audit import audit_blocks
from catdog.report.render import Block, Figure, FigureRow, Gallery, Heading, Paragraph, Table, Thumbnail
from catdog.report.trust import trust_blocks
from catdog.runs import Run, folder
from catdog.terminal import duration, percent

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


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def report_blocks(summary: dict[str, Any], exercise_dir: Path) -> list[Block]:
    """The report: its result first (the chosen model, its test score against the baseline, each
    model against the assignment's minimum), then the exercise in the reference tutorial's order,
    with the audit of the data after its summary, and the next steps at the end."""
    data = summary["data"]
    results = [ModelResult(**row) for row in summary["models"]]
    best = next(r for r in results if r.preset == summary["best"])
    blocks: list[Block] = [
        Heading(f"Image classification: {_class_list(data['classes'])}", 1),
        *_headline_blocks(best, results, data),
        Paragraph(
            f"Data: `{data['root']}` ({data['layout']} layout), seed {data['seed']}. Every number below was "
            "measured in this run. Below: the data, its audit, each model, their comparison, the chosen model's "
            "test score and mistakes, how far its predictions can be trusted, and what to do next."
        ),
        *_data_blocks(data, exercise_dir),
        *audit_blocks(summary.get("audit"), Path(data["root"])),
    ]
    for number, result in enumerate(results, 1):
        blocks += _model_blocks(number, result)
    blocks += _comparison_blocks(summary, results, exercise_dir)
    blocks += _next_steps(best, exercise_dir)
    return blocks


def _headline_blocks(best: ModelResult, results: list[ModelResult], data: dict[str, Any]) -> list[Block]:
    """The result in one sentence, and each model against the assignment's minimum line."""
    baseline = ""
    if data.get("baseline_accuracy") is not None:
        baseline = (f" Always answering `{data['baseline_class']}`, the most frequent class, would score "
                    f"{percent(data['baseline_accuracy'])} (the baseline).")
    rows = []
    for r in results:
        minimum = _minimum_accuracy(r.preset)
        verdict = "" if minimum is None else "pass" if r.test_accuracy >= minimum else "miss"
        rows.append([f"`{r.preset}`" + " (chosen)" * (r is best), percent(r.test_accuracy),
                     "–" if minimum is None else percent(minimum), verdict or "–"])
    judged = [row for row in rows if row[-1] != "–"]
    missed = [r.preset for r, row in zip(results, rows, strict=True) if row[-1] == "miss"]
    verdicts = ""
    if judged:
        verdicts = (" The assignment sets a minimum accuracy for each of its models; here each is judged on the "
                    "test split. " + (f"Below their line: {', '.join(f'`{m}`' for m in missed)}." if missed
                                      else "Every model reaches its line."))
    return [
        Paragraph(f"**`{best.preset}`** is the model chosen by validation accuracy: it scores "
                  f"**{percent(best.test_accuracy)}** on the {best.test_n:,} test images, which took no part in "
                  f"training or in choosing it.{baseline}{verdicts}"),
        Table(["model", "test", "minimum", "result"], rows),
    ]


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
        sentences.append(f"The baseline, always guessing the most frequent training class "
                         f"(`{data['baseline_class']}`), scores **{percent(data['baseline_accuracy'])}** on the test "
                         "split: every model must beat it.")
    if data.get("baseline_balanced_accuracy") is not None:
        sentences.append(f"Its balanced accuracy (the mean recall of the classes) is "
                         f"{percent(data['baseline_balanced_accuracy'])}.")
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
        sentence += (f" The baseline, always giving the most frequent tags of the training split ({usual}), gets "
                     f"every tag of a test image right for **{percent(baseline['subset_accuracy'])}** of them, with a "
                     f"micro F1 of {percent(baseline['micro_f1'])}: every model must beat it.")
    return sentence


def _tag_metric_blocks(result: ModelResult, run: Path) -> list[Block]:
    """A multi-label model's figures over its tags, a row per tag, its precision-recall curves and
    examples of each tag's mistakes."""
    metrics = folder.read_json(run / folder.METRICS_FILE) or {}
    rows = [[f"`{tag}`", str(row["n"]), percent(row["precision"]), percent(row["recall"]), percent(row["f1"]),
             percent(row["average_precision"]), f"{row['threshold']:.2f}"] for tag, row in metrics["per_tag"].items()]
    return [
        Paragraph(f"Over its tags: mean average precision **{percent(metrics['mean_average_precision'])}**, "
                  f"micro F1 {percent(metrics['micro_f1'])}, macro F1 {percent(metrics['macro_f1'])}; every tag of an "
                  f"image right for {percent(metrics['subset_accuracy'])} of the test images (the accuracy above), and "
                  f"{percent(metrics['hamming_loss'])} of image-tag pairs wrong. A tag is given from its threshold up, "
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
    figures = [f"balanced accuracy **{percent(result.test_balanced_accuracy)}**",
               f"macro F1 {percent(result.test_macro_f1)}"]
    if result.test_top_5_accuracy is not None:
        figures.append(f"top-5 accuracy {percent(result.test_top_5_accuracy)}")
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
    spread = (f"stayed at **{percent(min(late))}**" if min(late) == max(late)
              else f"stabilised **between {percent(min(late))} and {percent(max(late))}**")
    sentences = [
        f"The validation accuracy of `{r.preset}` {spread} over the second half of training, "
        f"at best {percent(r.best_val_accuracy)} (epoch {r.best_epoch}).",
    ]
    gap = r.last_accuracy - r.last_val_accuracy
    if gap > 0.1:
        sentences.append(
            f"Training accuracy ended at {percent(r.last_accuracy)}, {100 * gap:.0f} points above validation: "
            "the model overfits."
        )
    if stopped_early(r):
        sentences.append(f"Training stopped early, after epoch {r.epochs} of {r.planned_epochs}: {r.stopped}.")
    line = ""
    if minimum is not None:
        verdict = "reaching" if r.test_accuracy >= minimum else "below"
        line = f", {verdict} the assignment's minimum of {percent(minimum)}"
    sentences.append(f"The best epoch's model scores **{percent(r.test_accuracy)}** on the {r.test_n} test "
                     f"images{line}.")
    return [
        Heading(f"Model {number}: `{r.preset}`"),
        Paragraph(f"{_sentence_case(_description(r.preset))}; {r.parameters:,} parameters, "
                  f"{r.image_size} px images, {duration(r.training_seconds)} of training."),
        Paragraph(" ".join(sentences)),
        FigureRow([
            Figure(run / folder.ACCURACY_PLOT, f"`{r.preset}`: accuracy by epoch."),
            Figure(run / folder.LOSS_PLOT, f"`{r.preset}`: loss by epoch."),
        ]),
    ]


def stopped_early(r: ModelResult) -> bool:
    """Whether training ended before its planned epochs (a run can record why it would have
    stopped on its very last epoch: that is no early stop)."""
    return bool(r.stopped) and r.epochs < r.planned_epochs


def _epochs(r: ModelResult) -> str:
    """Epochs run, of those planned (old summaries: run only)."""
    return f"{r.epochs} of {r.planned_epochs}" if r.planned_epochs else str(r.epochs or "")


def _comparison_blocks(summary: dict[str, Any], results: list[ModelResult], exercise_dir: Path) -> list[Block]:
    best = next(r for r in results if r.preset == summary["best"])
    run = Path(best.run)
    rows = [
        [f"`{r.preset}`", f"{r.parameters:,}", _epochs(r), percent(r.best_val_accuracy),
         percent(r.last_val_accuracy), percent(r.test_accuracy), duration(r.training_seconds)]
        for r in results
    ]
    early = [r for r in results if stopped_early(r)]
    if early:
        listed = ", ".join(f"`{r.preset}` ({_epochs(r)})" for r in early)
        others = "the others ran all their epochs" if len(early) < len(results) else "none ran all its epochs"
        stops = (f"Training stops once validation accuracy has not improved for a few epochs, keeping the best epoch "
                 f"(the reference trains every model for all its epochs). Stopped early: {listed}; {others}.")
    else:
        stops = "Every model trained for all its epochs."
    return [
        Heading("Comparison"),
        Table(["model", "parameters", "epochs", "best validation", "last validation", "test", "training time"], rows),
        Paragraph(stops),
        Figure(exercise_dir / COMPARISON_PLOT, "Validation accuracy by epoch, with the assignment's minimum lines."),
        Heading("Score on test data"),
        Paragraph(
            f"Chosen by validation accuracy, the best model is `{best.preset}`: **{percent(best.test_accuracy)}** "
            f"on {best.test_n} test images that took no part in training or model selection."
        ),
        *_class_metric_blocks(best, run),
        Figure(run / folder.CONFUSION_MATRIX_PLOT, f"`{best.preset}`: confusion matrix on the test split (rows: the "
                                                  "true class, columns: the predicted one; for tags, one per tag)."),
        *_mistake_blocks(best, run),
        *trust_blocks(best.preset, run),
    ]


# The misclassified test images shown in the report's gallery (metrics.json lists them all).
MISTAKES_SHOWN = 12


def _mistake_blocks(best: ModelResult, run: Path) -> list[Block]:
    """The chosen model's misclassified test images, most confident first, as captioned
    thumbnails; then the Grad-CAM picture of what drove its mistakes."""
    mistakes = (folder.read_json(run / folder.METRICS_FILE) or {}).get("misclassified")
    if mistakes is None:  # an old run, or the files no longer matched the pipeline's
        return [Figure(run / folder.MISCLASSIFIED_PLOT, f"`{best.preset}`: misclassified test images.")]
    if not mistakes:
        return [Paragraph(f"`{best.preset}` classified every test image correctly.")]
    shown = mistakes[:MISTAKES_SHOWN]
    more = f"; the {len(shown)} it was surest of" if len(mistakes) > len(shown) else ""
    return [
        Heading("Its mistakes", 3),
        Paragraph(f"`{best.preset}` got {len(mistakes)} of the {best.test_n} test images wrong{more} ("
                  + ("a tag missing or one too many" if isinstance(mistakes[0]["true"], list) else
                     "its probability for the wrong class in brackets") + "; `metrics.json` lists them all):"),
        Gallery([Thumbnail(m["path"], short_name(m["path"]), _mistake_caption(m)) for m in shown]),
        Figure(run / folder.MISCLASSIFIED_PLOT,
               f"Where `{best.preset}` looked when it was wrong (Grad-CAM): red marks the parts of each image that "
               "pushed it most towards the wrong class, blue those that did not matter. A heatmap on the "
               "background, not the animal, means it learnt a shortcut."),
    ]


def _mistake_caption(mistake: dict[str, Any]) -> str:
    """What the model got wrong about one image: its class, or for tags the ones it gave and had."""
    if isinstance(mistake["true"], list):
        return f"tagged {_tag_list(mistake['true'])}, given {_tag_list(mistake['predicted'])}"
    return f"a `{mistake['true']}` image taken for `{mistake['predicted']}` ({percent(mistake['probability'])})"


def _tag_list(names: list[str]) -> str:
    return ", ".join(f"`{name}`" for name in names) or "no tag"


def _next_steps(best: ModelResult, exercise_dir: Path) -> list[Block]:
    """What to try next, with this exercise's real paths."""
    exercise = exercise_dir.as_posix()
    photo = _example_photo(Path(best.run))
    return [
        Heading("Next steps"),
        Paragraph("Every command that takes a run also takes this exercise's folder, and then uses its chosen model, "
                  f"`{best.preset}` (after `make run`, `catdog` is `.venv/bin/catdog`)."),
        Paragraph(f"**Try it on your own photos**, in a web page: `catdog serve {exercise}`, then open "
                  "http://127.0.0.1:8000 and drop photos on it."),
        Paragraph(f"**See why it labels a photo as it does**: `catdog explain {exercise} {photo}` draws the heatmap "
                  "into `explanations/`."),
        Paragraph(f"**Label photos**, or every photo in folders: `catdog predict {exercise} {photo}`."),
        Paragraph(f"**Predict faster, without TensorFlow**: `catdog export {exercise} --format onnx` (with the "
                  "`export` extra: `pip install -e '.[export]'`); `predict` and `serve` then run the export."),
        Paragraph("**Train one model on your own photos**, a folder per class: "
                  "`catdog train --model transfer --data PHOTOS/`."),
    ]


def _example_photo(run: Path) -> str:
    """A real test image of the run: the one it got most confidently wrong, else its first."""
    mistakes = (folder.read_json(run / folder.METRICS_FILE) or {}).get("misclassified") or []
    if mistakes:
        return mistakes[0]["path"]
    with contextlib.suppress(CatdogError):
        paths = Run.open(run).manifest().files(TEST)[0]
        if paths:
            return paths[0]
    return "PHOTO.jpg"


def short_name(path: str) -> str:
    """A file's name with its folder (`cats/cat.2001.jpg`): enough to find it, short enough to read."""
    parts = Path(path).parts
    return "/".join(parts[-2:])
