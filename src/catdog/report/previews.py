"""Looking at the data: the reference tutorial's grid of sample images and its augmentation preview.

Both return a matplotlib `Figure` (drawn without a screen); save it with
`catdog.files.save_figure`. Images are shown as the model sees them: decoded and
resized by `catdog.data.images`.
"""

from __future__ import annotations

import random

import numpy as np
from matplotlib.figure import Figure

from catdog import defaults
from catdog.data.images import load_images
from catdog.data.splits import TRAIN, Manifest

TILE_INCHES = 2.4
# With more classes than fit one row each, the grid shows one image of each of at most
# MANY_CLASSES_SHOWN classes, MANY_CLASSES_COLUMNS to a row.
ROWS_OF_CLASSES = 12
MANY_CLASSES_SHOWN = 48
MANY_CLASSES_COLUMNS = 8


def sample_grid(
    manifest: Manifest,
    *,
    per_class: int = 3,
    split: str = TRAIN,
    seed: int = defaults.SEED,
    image_size: int = defaults.IMAGE_SIZE,
) -> Figure:
    """One row per class of `per_class` random images from `split`, each titled with its class;
    with more than `ROWS_OF_CLASSES` classes, one image of each of up to `MANY_CLASSES_SHOWN`
    random classes. In a multi-label data set a row holds images with its tag, titled with all of
    theirs."""
    rng = random.Random(seed)
    paths, labels = manifest.files(split)
    if len(manifest.class_names) > ROWS_OF_CLASSES:
        return _one_per_class(manifest, paths, labels, rng, split, image_size)
    fig, axes = _figure(rows=len(manifest.class_names), columns=per_class)
    for row, class_index in zip(axes, range(len(manifest.class_names)), strict=True):
        candidates = [(path, label) for path, label in zip(paths, labels, strict=True) if _has(label, class_index)]
        chosen = rng.sample(candidates, min(per_class, len(candidates)))
        for ax, image, (_, label) in zip(row, load_images([path for path, _ in chosen], image_size), chosen,
                                         strict=False):
            _show(ax, image, _title(manifest, label))
    fig.suptitle(f"{per_class} random images per class ({split} split)", fontsize="large")
    return fig


def _one_per_class(manifest: Manifest, paths, labels, rng: random.Random, split: str, image_size: int) -> Figure:
    names = manifest.class_names
    shown = sorted(rng.sample(range(len(names)), min(MANY_CLASSES_SHOWN, len(names))))
    by_class = {i: [path for path, label in zip(paths, labels, strict=True) if _has(label, i)] for i in shown}
    shown = [i for i in shown if by_class[i]]
    fig, axes = _figure(rows=-(-len(shown) // MANY_CLASSES_COLUMNS), columns=MANY_CLASSES_COLUMNS)
    images = load_images([rng.choice(by_class[i]) for i in shown], image_size)
    for ax, i, image in zip(axes.flat, shown, images, strict=False):
        _show(ax, image, names[i])
    fig.suptitle(f"one random image of {len(shown)} of the {len(names)} classes ({split} split)", fontsize="large")
    return fig


def augmentation_preview(
    manifest: Manifest,
    *,
    versions: int = 7,
    columns: int = 4,
    seed: int = defaults.SEED,
    image_size: int = defaults.IMAGE_SIZE,
) -> Figure:
    """A random training image, then `versions` randomly flipped and rotated copies of it.

    Uses the augmentation layers of the reference's models 3 and 4:
    `RandomFlip("horizontal_and_vertical")` and `RandomRotation(0.2)`.
    """
    import keras

    paths, labels = manifest.files(TRAIN)
    index = random.Random(seed).randrange(len(paths))
    image = load_images([paths[index]], image_size)
    augment = keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
            keras.layers.RandomRotation(0.2, seed=seed),
        ]
    )
    copies = [keras.ops.convert_to_numpy(augment(image, training=True))[0] for _ in range(versions)]

    rows = -(-(versions + 1) // columns)
    fig, axes = _figure(rows=rows, columns=columns)
    tiles = axes.flat
    _show(next(tiles), image[0], f"original ({_title(manifest, labels[index])})")
    for ax, copy in zip(tiles, copies, strict=False):
        _show(ax, copy, "random flip and rotation")
    fig.suptitle("Data augmentation: RandomFlip and RandomRotation(0.2)", fontsize="large")
    return fig


def _has(label, class_index: int) -> bool:
    """Whether an image of `label` (a class index, or a row of tags) is of class (has tag) `class_index`."""
    return bool(label[class_index]) if np.ndim(label) else label == class_index


def _title(manifest: Manifest, label) -> str:
    """An image's class, or its tags ("no tag" for none)."""
    if not np.ndim(label):
        return manifest.class_names[label]
    return " ".join(name for name, on in zip(manifest.class_names, label, strict=True) if on) or "no tag"


def _figure(rows: int, columns: int):
    """A figure and its (rows, columns) array of axes, all blank until `_show` fills them."""
    fig = Figure(figsize=(TILE_INCHES * columns, TILE_INCHES * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def _show(ax, image, title: str) -> None:
    ax.imshow(image.astype("uint8"))
    ax.set_title(title, fontsize="medium")
