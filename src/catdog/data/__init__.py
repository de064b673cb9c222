"""Data: from a folder of image files to `tf.data` pipelines, through a checked, recorded split.

    >>> data = catdog.data.load("cats_and_dogs_filtered")
    >>> data.class_names
    ['cats', 'dogs']
    >>> model.fit(data.train, validation_data=data.validation)

The steps, one module each, in the order the data goes through them:

- `fetch.py`: the reference tutorial's data set, downloaded and verified;
- `images.py`: what a usable image is, and how every path decodes it;
- `labels.py`: labels from a CSV file, for a folder whose layout does not give them;
- `scan.py`: finding and checking every image of a data folder;
- `scan_cache.py`: what a scan checked, remembered per data folder while files do not change;
- `duplicates.py`: the same photo twice, found by fingerprints;
- `splits.py`: the train/validation/test split and its manifest (`splits.csv`);
- `pipeline.py`: the `tf.data` pipeline of one split;
- `pack.py`: a checked, split data set as TFRecord shards, at a path or a URL.

`load` runs them all (passing the manifest of an earlier run reuses its split exactly);
`summary` describes a data set without touching TensorFlow. A data set is given as its
folder, or as a `Source` when its labels are in a CSV file or small classes are left out.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from catdog import defaults, environment
from catdog.data.labels import MULTILABEL, LabelsFile
from catdog.data.pack import Pack, is_remote, open_pack
from catdog.data.scan import Scan
from catdog.data.scan import scan as _scan  # not `scan`: that name is the module
from catdog.data.splits import SPLITS, TEST, TRAIN, Manifest, crossing, split
from catdog.errors import CatdogError, ParameterError

if TYPE_CHECKING:
    import tensorflow as tf

# A warning when the largest class has more than this many times the training images of the smallest.
IMBALANCE_RATIO = 3.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """A data set as the user has it: its folder (None: the default, see `resolve_data_dir`),
    the CSV file of its labels if its layout does not give them, and the fewest usable images
    a class needs to be kept (smaller classes are left out with a warning)."""

    root: str | os.PathLike | None = None
    labels: LabelsFile | None = None
    min_images: int | None = None


DataArgument = str | os.PathLike | Source | None


def as_source(data: DataArgument) -> Source:
    return data if isinstance(data, Source) else Source(data)


def resolve_data_dir(data: DataArgument = None) -> Path:
    """The data folder: `data`, else `$CATDOG_DATA`, else the reference data set in the cache (fetched if missing)."""
    data = as_source(data).root
    if data is not None:
        return Path(data).expanduser()
    if (folder := environment.data_folder()) is not None:
        return folder
    from catdog.data.fetch import DATASET_NAME, fetch

    cached = environment.cache_dir() / DATASET_NAME
    if not cached.is_dir():
        fetch()
    return cached


def scan_and_split(data: DataArgument = None, *, seed: int = defaults.SEED,
                   verify: bool = False) -> tuple[Scan, Manifest]:
    """Check every image of the data set, then split the usable ones (a pack: as packed, checked
    as `catdog.data.pack.open_pack` checks it, with `verify` its shards' checksums too)."""
    source = as_source(data)
    if (packed := _open_pack(source, verify=verify)) is not None:
        return packed.as_scan(), packed.manifest
    found = _scan(resolve_data_dir(source), labels=source.labels, min_images=source.min_images)
    return found, split(found, seed)


@dataclass
class Data:
    """A data set ready to train on: one `tf.data` dataset of (images, labels) batches per split.
    `root` is the data folder, or the pack's location (a folder or a URL)."""

    root: Path | str
    manifest: Manifest
    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    skipped: list[tuple[str, str]]
    warnings: list[str]
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # how the pipelines were made

    @property
    def class_names(self) -> list[str]:
        return self.manifest.class_names

    @property
    def task(self) -> str:
        """multiclass (one class per image) or multilabel (any number of tags)."""
        return self.manifest.task

    def with_cache_folder(self, folder: str | os.PathLike) -> Data:
        """The same data, keeping in `folder` the decoded images of any split that is over the
        memory budget; this same `Data` (and the images it holds in memory) if none is."""
        if all(getattr(self, name).cache_place.path == "" for name in SPLITS):
            return self
        return load(self.root, manifest=self.manifest, **{**self.options, "cache": folder})


def load(
    data: DataArgument = None,
    *,
    image_size: int = defaults.IMAGE_SIZE,
    batch_size: int = defaults.BATCH_SIZE,
    seed: int = defaults.SEED,
    manifest: Manifest | None = None,
    cache: bool | str | os.PathLike = True,
    memory_budget: int | None = None,
) -> Data:
    """Scan and split the data folder (or reuse `manifest`'s split) and build the three pipelines.

    `seed` fixes both the split and the training split's shuffling. With `manifest`
    (e.g. `Manifest.read` of a run's `splits.csv`), its files are used as listed,
    relative to this data folder, and no scan is made. Decoded images are kept in memory
    within `memory_budget` per split, beyond it in the folder `cache` if given (see
    catdog.data.pipeline); the log says where.
    """
    from catdog.data.pipeline import make_dataset

    options = {"image_size": image_size, "batch_size": batch_size, "seed": seed, "memory_budget": memory_budget}
    if (packed := _open_pack(as_source(data))) is not None:
        return _load_pack(packed, cache=cache, **options)
    root = resolve_data_dir(data)
    if manifest is None:
        found, manifest = scan_and_split(data, seed=seed)
        skipped, warnings = found.skipped, found.warnings + split_warnings(found, manifest)
        log_problems(found, manifest)
    else:
        manifest = dataclasses.replace(manifest, root=root)
        _check_files_exist(manifest)
        skipped, warnings = [], []

    datasets = {
        name: make_dataset(
            *manifest.files(name),
            image_size,
            batch_size,
            shuffle=name == TRAIN,
            seed=seed,
            cache=cache,
            memory_budget=memory_budget,
            name=name,
            class_names=manifest.class_names,
        )
        for name in SPLITS
    }
    if cache is not False and (elsewhere := [name for name, d in datasets.items() if d.cache_place.path != ""]):
        # In memory is the usual place; say where the others went.
        logger.info("decoded images kept " + "; ".join(f"{name}: {datasets[name].cache_place.describe()}"
                                                      for name in elsewhere))
    return Data(root, manifest, **datasets, skipped=skipped, warnings=warnings, options=options)


def _open_pack(source: Source, verify: bool = False) -> Pack | None:
    """The pack `source` names (a folder or URL written by `catdog data pack`), else None."""
    if source.root is None:
        return None
    if (packed := open_pack(source.root, verify=verify)) is not None:
        if source.labels is not None:
            raise ParameterError("labels", f"{source.root} is a pack, whose labels were read when it was packed; "
                                 "leave out {name}")
        if source.min_images is not None:
            raise ParameterError("min_images", f"{source.root} is a pack, whose classes were chosen when it was "
                                 "packed; leave out {name}")
        return packed
    if is_remote(source.root):
        raise CatdogError(f"{source.root} is not a catdog pack; data at a URL must be packed first (catdog data pack)")
    return None


def _load_pack(packed: Pack, *, image_size: int, batch_size: int, seed: int, cache, memory_budget) -> Data:
    from catdog.data.pipeline import make_record_dataset

    datasets = {
        name: make_record_dataset(packed.shards(name), packed.count(name), image_size, batch_size,
                                  shuffle=name == TRAIN, seed=seed, cache=cache, memory_budget=memory_budget,
                                  name=name, class_names=packed.class_names)
        for name in SPLITS
    }
    options = {"image_size": image_size, "batch_size": batch_size, "seed": seed, "memory_budget": memory_budget}
    return Data(packed.location, packed.manifest, **datasets, skipped=list(packed.skipped),
                warnings=list(packed.warnings), options=options)


def summary(data: DataArgument = None, *, seed: int = defaults.SEED) -> dict[str, Any]:
    """What `catdog data info` reports: classes, counts per split and class, baseline, skipped files.

    The baseline is the accuracy of always guessing the most frequent class of the
    training split, scored on the test split, so it compares directly with a
    model's test accuracy (the reference tutorial counts label frequencies on its training data).
    A pack is checked whole: every shard's checksum too.
    """
    found, manifest = scan_and_split(data, seed=seed, verify=True)
    return describe(found, manifest, seed=seed)


def describe(found: Scan, manifest: Manifest, *, seed: int) -> dict[str, Any]:
    """The `summary` of a data set already scanned (`found`) and split with `seed` (`manifest`).

    Besides the counts: the classes each held-out split lacks (`missing`), the ratio of the
    largest class to the smallest in training (`imbalance`), the baseline also as balanced
    accuracy (always guessing one class recalls 1 class in k: 1/k), and the duplicate groups,
    with those that cross splits (`leaks`). A multi-label data set's counts are per tag, and it
    has its own figures (`multilabel`: see `describe_tags`).
    """
    counts = manifest.counts()
    majority = max(manifest.class_names, key=lambda name: counts[TRAIN][name])
    n_test = sum(1 for row in manifest.rows if row.split == TEST)
    present = sum(1 for n in counts[TEST].values() if n)
    multilabel = manifest.task == MULTILABEL
    return {
        "root": str(found.root),
        "layout": found.layout,
        "seed": seed,
        "task": manifest.task,
        "classes": manifest.class_names,
        "splits": counts,
        "missing": manifest.missing(),
        "imbalance": round(imbalance(counts[TRAIN]), 2),
        "baseline_class": None if multilabel else majority,
        "baseline_accuracy": None if multilabel or not n_test else round(counts[TEST][majority] / n_test, 4),
        "baseline_balanced_accuracy": round(1 / present, 4) if present and not multilabel else None,
        **({"multilabel": describe_tags(manifest)} if multilabel else {}),
        "duplicates": [{"kind": group.kind, "paths": list(group.paths)} for group in found.duplicates],
        "leaks": [{"kind": group.kind, "paths": list(group.paths), "splits": splits}
                  for group, splits in crossing(manifest, found.duplicates)],
        "skipped": [{"path": path, "reason": reason} for path, reason in found.skipped],
        "warnings": found.warnings + split_warnings(found, manifest),
    }


def describe_tags(manifest: Manifest) -> dict[str, Any]:
    """A multi-label data set in figures: images per split, images without tags, the mean number
    of tags an image has (label cardinality), the tags most often together, and the baseline:
    always predicting the training split's most frequent tag set, scored on the test split."""
    from collections import Counter

    from catdog.metrics import multilabel_metrics

    rows = {name: [row for row in manifest.rows if row.split == name] for name in SPLITS}
    train_sets = Counter(row.labels for row in rows[TRAIN])
    usual = max(train_sets, key=lambda labels: (train_sets[labels], labels)) if train_sets else ()
    together = Counter((a, b) for row in manifest.rows for i, a in enumerate(row.labels) for b in row.labels[i + 1:])
    test_true = manifest.encode([row.labels for row in rows[TEST]])
    baseline = multilabel_metrics(test_true, np.repeat(manifest.encode([usual]), len(test_true), axis=0),
                                  manifest.class_names) if len(test_true) else None
    return {
        "images": {name: len(split_rows) for name, split_rows in rows.items()},
        "without_tags": {name: sum(not row.labels for row in split_rows) for name, split_rows in rows.items()},
        "label_cardinality": round(float(np.mean([len(row.labels) for row in manifest.rows])), 3),
        "co_occurrence": [{"tags": list(pair), "images": n} for pair, n in together.most_common(10)],
        "baseline_tags": list(usual),
        "baseline": None if baseline is None else {key: round(baseline[key], 4) for key in (
            "subset_accuracy", "micro_f1", "macro_f1", "hamming_loss", "mean_average_precision")},
    }


def imbalance(counts: dict[str, int]) -> float:
    """The largest class's count over the smallest's (at least one image each)."""
    return max(counts.values()) / max(1, min(counts.values()))


def split_warnings(found: Scan, manifest: Manifest) -> list[str]:
    """What a user should know about a split before training on it: imbalance, classes a
    held-out split lacks, and duplicates in two splits."""
    counts = manifest.counts()
    warnings = []
    ratio = imbalance(counts[TRAIN])
    if ratio > IMBALANCE_RATIO:
        largest = max(counts[TRAIN], key=counts[TRAIN].get)
        smallest = min(counts[TRAIN], key=counts[TRAIN].get)
        warnings.append(f"the classes are imbalanced: {largest} has {ratio:.1f}x the training images of {smallest} "
                        f"({counts[TRAIN][largest]} against {counts[TRAIN][smallest]}); accuracy flatters the "
                        "largest class, so look at balanced accuracy too")
    for split_name, names in manifest.missing().items():
        if names:
            listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
            warnings.append(f"{len(names)} classes have no {split_name} images (too small to spare one for it, "
                            f"training comes first): {listed}")
    leaks = crossing(manifest, found.duplicates)
    if leaks:
        group, splits = leaks[0]
        first = ", ".join(f"{path} ({where})" for path, where in zip(group.paths, splits, strict=True))
        warnings.append(f"{len(leaks)} groups of duplicate images are in more than one split, so the held-out "
                        f"scores are inflated (the first: {first}); `catdog audit` lists them")
    return warnings


def log_problems(found: Scan, manifest: Manifest | None = None) -> None:
    """Warn about files read with a warning and about the split (see `split_warnings`), and
    say how many files were skipped and where to see why."""
    for warning in found.warnings + (split_warnings(found, manifest) if manifest else []):
        logger.warning(warning)
    if found.skipped:
        root = found.root
        logger.warning(f"skipped {len(found.skipped)} unusable files in {root} "
                       f"(`catdog data info --data {root}` lists them)")


def _check_files_exist(manifest: Manifest) -> None:
    missing = [row.path for row in manifest.rows if not (manifest.root / row.path).is_file()]
    if missing:
        raise CatdogError(
            f"{len(missing)} files of the manifest are missing from {manifest.root} (the first: {missing[0]})"
        )
