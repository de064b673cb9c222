"""Figures: training curves, the confusion matrix, misclassified images, reliability
diagrams, runs compared, and for multi-label runs each tag's confusion counts, precision-recall
curves, and examples of its false positives and false negatives.

Every function draws on its own `matplotlib.figure.Figure` (no global pyplot state, so it
is safe anywhere, with no display) and saves it atomically with `files.save_figure`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from catdog import files
from catdog.outputs import UNLIKE_TRAINING_IMAGES

History = Sequence[Mapping[str, float]]

# Heatmaps over photos (see catdog.explain): how much of the overlay is heatmap colour, and which colours.
OVERLAY_OPACITY = 0.45
HEATMAP_COLORS = "jet"


@dataclass(frozen=True)
class Mistake:
    """A wrongly classified image: pixels (S, S, 3, 0..255), true and predicted class (or tags),
    the probability of the prediction (None for tags), the Grad-CAM heatmap (S, S, 0..1) of the
    prediction if there is one, and the class or tag it explains."""

    image: np.ndarray
    true: str
    predicted: str
    probability: float | None
    heatmap: np.ndarray | None = None
    explained: int | None = None


def training_curve(history: History, metric: str, path: str | Path, minimum: float | None = None,
                   fine_tuning_from: int | None = None) -> Path:
    """Training and validation `metric` ("accuracy" or "loss") by epoch, as the reference tutorial plots them.

    `minimum` draws the assignment's minimum-accuracy line; `fine_tuning_from` marks the first
    epoch of fine-tuning.
    """
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row[metric] for row in history], marker=".", label="training")
    ax.plot(epochs, [row[f"val_{metric}"] for row in history], marker=".", label="validation")
    if metric == "accuracy":
        ax.set_ylim(0, 1.1)
    else:
        _clip_first_epoch(ax, history, metric)
    if minimum is not None:
        ax.axhline(minimum, color="black", label=f"Minimum accuracy = {minimum:.0%}")
    if fine_tuning_from is not None:
        ax.axvline(fine_tuning_from - 0.5, color="gray", linestyle="--", label="fine-tuning starts")
    ax.set(xlabel="epoch", ylabel=metric)
    _integer_epochs(ax)
    ax.legend()
    return files.save_figure(fig, path)


# A first epoch whose loss is more than this many times the highest of the later epochs is drawn
# off the top of the chart (and its value written there), so that the later epochs stay readable.
SPIKE_RATIO = 2.5


def _clip_first_epoch(ax, history: History, metric: str) -> None:
    """Clip the y axis above the later epochs when the first epoch's loss dwarfs them."""
    if len(history) < 3:
        return
    first = max(history[0][metric], history[0][f"val_{metric}"])
    later = max(max(row[metric], row[f"val_{metric}"]) for row in history[1:])
    if not (later > 0 and first > SPIKE_RATIO * later):
        return
    top = later * 1.15
    ax.set_ylim(0, top)
    ax.annotate(f"epoch {history[0]['epoch']}: {first:.3g}, off the chart", xy=(history[0]["epoch"], top),
                xytext=(10, -16), textcoords="offset points", fontsize=8, color="#57606a",
                bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
                arrowprops={"arrowstyle": "->", "color": "#57606a"})


# Up to this many classes the confusion matrix shows each cell's count; beyond, colours only.
COUNTED_CLASSES = 20


def confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path) -> Path:
    """True (rows) against predicted (columns) classes. Up to `COUNTED_CLASSES` classes, counts
    with each cell labelled; beyond, each row as shares of its class (so a small class shows as
    clearly as a large one) on a figure that grows with the classes up to a poster's size, every
    class named in small type, and no number in the cells."""
    matrix = np.asarray(matrix)
    n = len(class_names)
    if n <= COUNTED_CLASSES:
        fig = Figure(figsize=(1.2 * n + 2.5, 1.2 * n + 1.5))
        ax = fig.subplots()
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(n), class_names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
        ax.set_yticks(range(n), class_names)
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > threshold else "black")
        ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
        return files.save_figure(fig, path)
    side = min(30.0, 4 + 0.16 * n)  # inches: 0.16 in per class fits 7-point names
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.subplots()
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    shown = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    font = max(3.0, min(8.0, 0.6 * 72 * side / n))  # points: 60 % of the height of one class
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=font)
    ax.set_yticks(range(n), class_names, fontsize=font)
    ax.set_xticks(np.arange(-0.5, n, 5), minor=True)
    ax.set_yticks(np.arange(-0.5, n, 5), minor=True)
    ax.grid(which="minor", color="#e5e9ee", linewidth=0.3)
    ax.tick_params(which="minor", length=0)
    fig.colorbar(shown, ax=ax, fraction=0.03, pad=0.02, label="share of the true class")
    ax.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix ({n} classes, rows as shares)")
    return files.save_figure(fig, path)


def overlay(photo: np.ndarray, heatmap: np.ndarray, opacity: float = OVERLAY_OPACITY) -> np.ndarray:
    """`photo` (S, S, 3, 0..255) with `heatmap` (S, S, 0..1) laid over it in colour (red: most),
    as uint8 RGB."""
    from matplotlib import colormaps

    colour = colormaps[HEATMAP_COLORS](np.clip(heatmap, 0, 1))[..., :3] * 255
    return np.clip((1 - opacity) * np.asarray(photo, dtype="float32") + opacity * colour, 0, 255).astype("uint8")


def misclassified(mistakes: Sequence[Mistake], path: str | Path, columns: int = 4) -> Path:
    """A grid of wrongly classified images titled with the true class and the prediction,
    each with its heatmap over it where it has one (see catdog.explain). Fewer mistakes than
    `columns` take fewer columns, so that they are drawn larger."""
    columns = max(1, min(columns, len(mistakes)))
    rows = max(1, math.ceil(len(mistakes) / columns))
    fig = Figure(figsize=(2.6 * columns, 2.9 * rows))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, m in zip(axes, mistakes, strict=False):
        ax.imshow(np.clip(m.image, 0, 255).astype("uint8") if m.heatmap is None else overlay(m.image, m.heatmap))
        shown = f"{m.predicted} ({m.probability:.0%})" if m.probability is not None else m.predicted
        ax.set_title(f"true: {m.true}\npredicted: {shown}", fontsize=11)
    if not mistakes:
        axes[0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    return files.save_figure(fig, path)


def reliability(before, after, temperature: float, path: str | Path) -> Path:
    """Reliability diagrams (`catdog.trust.calibration.Reliability`) of the probabilities
    before and after temperature scaling: per bin of confidence, the accuracy (bars) against the
    diagonal of perfect calibration, and under each, how many images fell in each bin (where
    the predictions are). The confidence axis starts at the lowest bin any image fell in."""
    fig = Figure(figsize=(10, 5.6))
    axes = fig.subplots(2, 2, sharex=True, sharey="row", gridspec_kw={"height_ratios": (3, 1.2)})
    scaled = (f"temperature {temperature:.2f}" if isinstance(temperature, int | float) else
              f"temperatures {min(temperature):.2f} to {max(temperature):.2f}")
    titles = (f"uncalibrated: calibration error {before.ece:.1%}", f"{scaled}: calibration error {after.ece:.1%}")
    filled_edges = [b.edges[:-1][b.counts > 0] for b in (before, after)]
    start = min((edges.min() for edges in filled_edges if len(edges)), default=0.0)
    for column, (bins, title) in enumerate(zip((before, after), titles, strict=True)):
        ax, counts_ax = axes[0, column], axes[1, column]
        width = np.diff(bins.edges)
        filled = bins.counts > 0
        ax.bar(bins.edges[:-1][filled], bins.accuracy[filled], width=width[filled], align="edge",
               edgecolor="black", color="#4c72b0", label="accuracy")
        ax.plot(bins.confidence[filled], bins.confidence[filled], "o", color="#dd8452", markersize=4,
                label="mean confidence")
        ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        ax.set(xlim=(start, 1), ylim=(0, 1.05), title=title)
        counts_ax.bar(bins.edges[:-1][filled], bins.counts[filled], width=width[filled], align="edge",
                      edgecolor="black", color="#8c8c8c")
        for left, w, count in zip(bins.edges[:-1][filled], width[filled], bins.counts[filled], strict=True):
            counts_ax.text(left + w / 2, count, str(count), ha="center", va="bottom", fontsize=8)
        counts_ax.set_yscale("log")
        counts_ax.set_ylim(0.7, max(2, bins.counts.max()) * 3)
        counts_ax.set_xlabel("confidence (probability of the predicted class)")
    axes[0, 0].set_ylabel("accuracy")
    axes[1, 0].set_ylabel("images")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=9, frameon=False)
    return files.save_figure(fig, path)


def explanation(explained, path: str | Path, kind: files.Kind = files.OWN_FILE) -> Path:
    """One image explained (`catdog.explain.explainer.Explanation`): the photo, and beside it the
    photo under the heatmap of the class it explains, titled with the label."""
    title = f"{explained.label} ({explained.probability:.1%})"
    if explained.in_distribution is False:
        title += f", {UNLIKE_TRAINING_IMAGES} (score {explained.ood_score:.2f})"
    fig = Figure(figsize=(7.2, 4.0))
    photo_ax, heat_ax = fig.subplots(1, 2)
    photo_ax.imshow(np.clip(explained.photo, 0, 255).astype("uint8"))
    photo_ax.set_title(Path(explained.path).name, fontsize=9)
    heat_ax.imshow(overlay(explained.photo, explained.heatmap))
    heat_ax.set_title(f"what made it {explained.explained}", fontsize=9)
    for ax in (photo_ax, heat_ax):
        ax.axis("off")
    fig.suptitle(title)
    return files.save_figure(fig, path, kind)


def compare_validation_accuracy(histories: Mapping[str, History], path: str | Path,
                                minimums: Mapping[str, float]) -> Path:
    """Validation accuracy by epoch of several runs (`{label: history}`) in one plot, with the
    assignment's minimum-accuracy lines (`{label: accuracy}`)."""
    fig = Figure(figsize=(10, 5.5))
    ax = fig.subplots()
    for label, history in histories.items():
        ax.plot([row["epoch"] for row in history], [row["val_accuracy"] for row in history], marker=".", label=label)
    styles = itertools.cycle((":", "-.", "--", "-"))
    for (label, minimum), style in zip(sorted(minimums.items(), key=lambda m: m[1]), styles, strict=False):
        ax.axhline(minimum, color="gray", linestyle=style, linewidth=1, label=f"{label} minimum {minimum:.0%}")
    ax.set_ylim(0, 1.05)
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy by epoch")
    _integer_epochs(ax)
    # Beside the axes, not over the lines.
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    return files.save_figure(fig, path)


def _integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


# Multi-label runs ---------------------------------------------------------------------------

# At most this many tags get a panel of their own in the per-tag figures (the most frequent).
TAGS_DRAWN = 12


def tag_confusion(per_tag: Mapping[str, Mapping], path: str | Path) -> Path:
    """Each tag's confusion counts on the test split (`catdog.metrics.multilabel_metrics`'s
    `per_tag`): true and false positives and negatives, as bars, with precision and recall."""
    names = list(per_tag)
    fig = Figure(figsize=(8, 0.45 * len(names) + 1.6))
    ax = fig.subplots()
    left = np.zeros(len(names))
    for key, colour, label in (("tp", "#2e7d32", "true positives"), ("fn", "#f9a825", "false negatives"),
                               ("fp", "#c62828", "false positives")):
        counts = np.array([per_tag[name]["confusion"][key] for name in names])
        ax.barh(range(len(names)), counts, left=left, color=colour, label=label)
        left += counts
    for i, name in enumerate(names):
        row = per_tag[name]
        ax.text(left[i], i, f"  P {row['precision']:.0%}  R {row['recall']:.0%}", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, max(left.max(), 1) * 1.35)
    ax.set(xlabel="test images", title="Per tag: the images that have it, and those given it")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(names) < 4 else -0.12), ncol=3)
    return files.save_figure(fig, path)


def pr_curves(true: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str],
              thresholds: Sequence[float], path: str | Path) -> Path:
    """Each tag's precision-recall curve on the test split, its average precision in the legend and
    its threshold marked."""
    from catdog.metrics import average_precision, precision_recall_curve

    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    order = np.argsort(-np.asarray(true).sum(axis=0), kind="stable")[:TAGS_DRAWN]
    for i in order:
        if not np.asarray(true)[:, i].any():
            continue
        precision, recall, cut = precision_recall_curve(true[:, i], probabilities[:, i])
        line, = ax.step(recall, precision, where="post",
                        label=f"{class_names[i]} (AP {average_precision(true[:, i], probabilities[:, i]):.2f})")
        at = np.argmin(np.abs(cut - thresholds[i])) if len(cut) else None
        if at is not None:
            ax.plot(recall[at], precision[at], "o", color=line.get_color())
    ax.set(xlim=(0, 1.02), ylim=(0, 1.05), xlabel="recall", ylabel="precision",
           title="Precision and recall by threshold (dots: each tag's threshold)")
    ax.legend(fontsize=8, loc="lower left")
    return files.save_figure(fig, path)


@dataclass(frozen=True)
class TagExamples:
    """Test images a tag was given without having it (false positives) and that have it but were
    not given it (false negatives), pixels (S, S, 3, 0..255) each."""

    tag: str
    false_positives: list[np.ndarray]
    false_negatives: list[np.ndarray]


def tag_examples(examples: Sequence[TagExamples], path: str | Path, per_kind: int = 3) -> Path:
    """A row per tag: up to `per_kind` of its false positives, then of its false negatives."""
    examples = list(examples)[:TAGS_DRAWN]
    rows, columns = max(1, len(examples)), 2 * per_kind
    fig = Figure(figsize=(1.9 * columns, 2.1 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for row, example in enumerate(examples):
        for kind, images, offset in (("given, not there", example.false_positives, 0),
                                     ("there, not given", example.false_negatives, per_kind)):
            for k, image in enumerate(images[:per_kind]):
                ax = axes[row, offset + k]
                ax.imshow(np.clip(image, 0, 255).astype("uint8"))
                ax.set_title(f"{example.tag}: {kind}", fontsize=8)
            if not images:
                axes[row, offset].text(0.5, 0.5, f"{example.tag}: none {kind}", ha="center", va="center",
                                       fontsize=8)
    if not examples:
        axes[0, 0].text(0.5, 0.5, "no tag was wrong", ha="center", va="center")
    return files.save_figure(fig, path)
