"""The `tf.data` input pipeline: files in, batches of (images, labels) out.

Images come out as float32 (B, S, S, 3) tensors of 0..255 and labels as int32 class
indices, as from `keras.utils.image_dataset_from_directory` (for a multi-label data set,
float32 rows of 0s and 1s, a column per tag), decoded by
`catdog.data.images.decode`, the decoder of every other path. Decoded images are kept
after the first epoch (as uint8, a quarter of the float32 size): in memory when the split
fits the memory budget (`default_memory_budget`), else in files of a cache folder when
one is given (training gives the run's), else they are decoded again every epoch. The
training split is reshuffled every epoch by a seeded op, and the next batches are
prepared while the model works on the current one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from catdog import defaults, environment
from catdog.data.images import decode

if TYPE_CHECKING:
    import tensorflow as tf

# Decoded images (as uint8) and frozen features are kept in memory when a split takes at most this
# much, and in files of the run's cache/ folder beyond it; `$CATDOG_CACHE_MEMORY_MB` changes it.
CACHE_MEMORY_BYTES = 2 * 1024**3


def default_memory_budget() -> int:
    """The memory budget per split for decoded images and frozen features (see `CACHE_MEMORY_BYTES`)."""
    return environment.cache_memory_bytes(CACHE_MEMORY_BYTES)


@dataclass(frozen=True)
class CachePlace:
    """Where a split's decoded images are kept after the first epoch: in memory (`path` ""), in
    files under a folder (`path`), or nowhere (None: decoded again every epoch)."""

    path: str | None
    bytes: int

    def describe(self) -> str:
        size = f"{self.bytes / 1e6:,.0f} MB"
        if self.path is None:
            return f"decoded every epoch ({size}: over the memory budget, and no cache folder)"
        return f"in memory ({size})" if self.path == "" else f"on disk in {Path(self.path).parent} ({size})"


def cache_place(n_images: int, image_size: int, name: str, cache: bool | str | os.PathLike = True,
                memory_budget: int | None = None) -> CachePlace:
    """Where `make_dataset` keeps `n_images` decoded images: in memory if they fit `memory_budget`
    as uint8, else in the folder `cache` if it is one, else nowhere. `cache` False: nowhere."""
    size = n_images * image_size * image_size * 3
    memory_budget = default_memory_budget() if memory_budget is None else memory_budget
    if cache is False:
        return CachePlace(None, size)
    if size <= memory_budget:
        return CachePlace("", size)
    if cache is True:
        return CachePlace(None, size)
    return CachePlace(os.fspath(Path(cache) / f"{name}-{image_size}px"), size)


def make_dataset(
    paths: Sequence[str],
    labels: Sequence[int],
    image_size: int = defaults.IMAGE_SIZE,
    batch_size: int = defaults.BATCH_SIZE,
    *,
    shuffle: bool,
    seed: int = defaults.SEED,
    cache: bool | str | os.PathLike = True,
    memory_budget: int | None = None,
    name: str = "images",
    class_names: Sequence[str] | None = None,
) -> tf.data.Dataset:
    """A dataset of (images, labels) batches from image files and their labels (class indices,
    or for a multi-label data set rows of 0s and 1s, one column per tag).

    A file that cannot be decoded (one changed since it was scanned) is dropped with
    a logged warning rather than ending the epoch (the scan cache makes sure a file is
    checked again once it changed, so this is for files changed after the scan). With `shuffle`, the order changes
    every epoch, the same way for the same `seed`. Decoded images are kept after the first
    epoch as `cache_place` says (a folder given as `cache` takes what does not fit the
    memory budget; its files are named after `name`); the place is `dataset.cache_place`.
    `class_names`, if given, is kept as `dataset.class_names`.
    """
    import tensorflow as tf

    source = tf.data.Dataset.from_tensor_slices(
        (tf.constant(list(paths), dtype=tf.string), _labels(labels))
    )
    return _batches(source, len(paths), lambda path: decode(os.fsdecode(path), image_size), image_size, batch_size,
                    shuffle=shuffle, seed=seed, cache=cache, memory_budget=memory_budget, name=name,
                    class_names=class_names)


def _labels(labels) -> np.ndarray:
    """Class indices as int32, or a multi-label data set's rows of 0s and 1s (one per tag) as float32."""
    labels = np.asarray(labels)
    return labels.astype("float32") if labels.ndim == 2 else labels.astype("int32")


def make_record_dataset(
    shards: Sequence[str],
    count: int,
    image_size: int = defaults.IMAGE_SIZE,
    batch_size: int = defaults.BATCH_SIZE,
    *,
    shuffle: bool,
    seed: int = defaults.SEED,
    cache: bool | str | os.PathLike = True,
    memory_budget: int | None = None,
    name: str = "images",
    class_names: Sequence[str] | None = None,
) -> tf.data.Dataset:
    """`make_dataset` for a packed data set: the `count` images of TFRecord `shards` (at any path
    TensorFlow's file systems read), in order, each an encoded image and its class index (see
    catdog.data.pack). The images decode as files do, to the same pixels.

    Nothing is skipped: a record that fails its checksum, a shard that cannot be read, an image
    that does not decode or a count other than `count` is an error (a TensorFlow `OpError`,
    which `catdog.data.pack.named_read_errors` names), never fewer images."""
    import tensorflow as tf

    features = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

    def parse(record):
        example = tf.io.parse_single_example(record, features)
        return example["image"], tf.cast(example["label"], tf.int32)

    # The count is checked as the records stream; the filter then hides it again, as the files'
    # pipeline has none: given a dataset whose length it knows, Keras keeps one iterator across
    # epochs, and every epoch after the first gets no batch.
    source = (tf.data.TFRecordDataset(list(shards)).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
              .apply(tf.data.experimental.assert_cardinality(count)).filter(lambda image, label: True))
    return _batches(source, count, lambda contents: decode(bytes(contents), image_size), image_size, batch_size,
                    shuffle=shuffle, seed=seed, cache=cache, memory_budget=memory_budget, name=name,
                    class_names=class_names, skip_unreadable=False)


def _batches(source, n: int, read, image_size: int, batch_size: int, *, shuffle: bool, seed: int,
             cache, memory_budget: int | None, name: str, class_names: Sequence[str] | None,
             skip_unreadable: bool = True) -> tf.data.Dataset:
    """Batches of (images, labels) from `source`, a dataset of (something `read` decodes, label);
    with `skip_unreadable`, an item `read` fails on is dropped with a logged warning."""
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    place = cache_place(n, image_size, name, cache, memory_budget)
    cache = place.path is not None
    if place.path:
        Path(place.path).parent.mkdir(parents=True, exist_ok=True)

    def load(item, label):
        # Pillow releases the GIL while it decodes and resizes, so parallel calls use every core.
        image = tf.numpy_function(read, [item], tf.uint8, stateful=False)
        image.set_shape((image_size, image_size, 3))
        return image, label

    def reshuffle(dataset):
        return dataset.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)

    dataset = source
    if shuffle and not cache:
        dataset = reshuffle(dataset)  # file names are cheap to shuffle; images are not
    dataset = dataset.map(load, num_parallel_calls=autotune)
    if skip_unreadable:
        dataset = dataset.ignore_errors(log_warning=True)
    if cache:
        dataset = dataset.cache(place.path)
        if shuffle:
            dataset = reshuffle(dataset)
    dataset = (
        dataset.batch(batch_size)
        .map(lambda images, labels: (tf.cast(images, tf.float32), labels), num_parallel_calls=autotune)
        .prefetch(autotune)
    )
    if class_names is not None:
        dataset.class_names = list(class_names)
    dataset.cache_place = place
    return dataset
