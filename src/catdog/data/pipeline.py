"""The `tf.data` input pipeline: files in, batches of (images, labels) out.

Images come out as float32 (B, S, S, 3) tensors of 0..255 and labels as int32 class
indices, as from `keras.utils.image_dataset_from_directory`, decoded by
`catdog.data.images.decode`, the decoder of every other path. Decoded images are cached
in memory (as uint8, a quarter of the float32 size) when the split fits in
`config.MAX_CACHE_BYTES`, the training split is reshuffled every epoch by a seeded
op, and the next batches are prepared while the model works on the current one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from catdog import config
from catdog.data.images import decode

if TYPE_CHECKING:
    import tensorflow as tf


def fits_in_memory(n_images: int, image_size: int) -> bool:
    """Whether `n_images` decoded images of `image_size` fit the cache limit as uint8."""
    return n_images * image_size * image_size * 3 <= config.MAX_CACHE_BYTES


def make_dataset(
    paths: Sequence[str],
    labels: Sequence[int],
    image_size: int = config.IMAGE_SIZE,
    batch_size: int = config.BATCH_SIZE,
    *,
    shuffle: bool,
    seed: int = config.SEED,
    cache: bool = True,
    class_names: Sequence[str] | None = None,
) -> tf.data.Dataset:
    """A dataset of (images, labels) batches from image files and their class indices.

    A file that cannot be decoded (one changed since it was scanned) is dropped with
    a logged warning rather than ending the epoch. With `shuffle`, the order changes
    every epoch, the same way for the same `seed`. `cache` keeps decoded images in
    memory if they fit. `class_names`, if given, is kept as `dataset.class_names`.
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    n = len(paths)
    cache = cache and fits_in_memory(n, image_size)

    def decode_file(path: bytes) -> np.ndarray:
        return decode(os.fsdecode(path), image_size)

    def load(path, label):
        # Pillow releases the GIL while it decodes and resizes, so parallel calls use every core.
        image = tf.numpy_function(decode_file, [path], tf.uint8, stateful=False)
        image.set_shape((image_size, image_size, 3))
        return image, label

    def reshuffle(dataset):
        return dataset.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)

    dataset = tf.data.Dataset.from_tensor_slices(
        (tf.constant(list(paths), dtype=tf.string), np.asarray(labels, dtype="int32"))
    )
    if shuffle and not cache:
        dataset = reshuffle(dataset)  # file names are cheap to shuffle; images are not
    dataset = dataset.map(load, num_parallel_calls=autotune).ignore_errors(log_warning=True)
    if cache:
        dataset = dataset.cache()
        if shuffle:
            dataset = reshuffle(dataset)
    dataset = (
        dataset.batch(batch_size)
        .map(lambda images, labels: (tf.cast(images, tf.float32), labels), num_parallel_calls=autotune)
        .prefetch(autotune)
    )
    if class_names is not None:
        dataset.class_names = list(class_names)
    return dataset
