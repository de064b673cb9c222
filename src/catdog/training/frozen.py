"""Frozen features: the frozen bottom of a pretrained model, run once per image.

A frozen pretrained backbone computes the same outputs for an image on every epoch, and
it is nearly all of the work: the reference's recipe recomputes them for every image, every
epoch. Here the frozen bottom of the model runs once per image, and the trainable top
trains on its stored outputs:

- `transfer`: the pooled backbone features (1280 numbers per image for MobileNetV2)
  train the head.
- `finetune`: the activations at the fine-tuning cut are stored. Stage 1 trains the head
  on the pooled features computed from them; stage 2 trains the backbone's top layers
  (from its `fine_tune_from` layer, batch normalisation kept in inference mode) with the
  head on them. The cut is the deepest tensor below that layer that alone feeds
  everything above it (`separating_tensor`): for MobileNetV2's layer 100, which sits
  inside a residual block, the output of block 10 (`block_10_project_BN`, layer 97).

Random augmentation cannot be precomputed, so it becomes a choice among `views` stored
views of each training image, drawn afresh each epoch: 1 = the image only, 2 = also its
mirror image (the reference's horizontal flip), more = also draws of the preset's random
augmentation. Each view costs one pass of the frozen bottom over the training images.
The head's layers are shared with the whole model, so what is saved is the ordinary
end-to-end model (raw pixels in, probabilities out).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from catdog.data.pipeline import default_memory_budget
from catdog.data.splits import TRAIN, VALIDATION
from catdog.models.builders import AUGMENTATION, BASE, HEAD, POOL, PREPROCESS
from catdog.models.inference import inference_function, pooled_bottom
from catdog.runs import Stage
from catdog.terminal import duration, progress
from catdog.training.recipe import unfreeze_index

logger = logging.getLogger(__name__)


def separating_tensor(base: keras.Model, first_trained: str):
    """The deepest tensor below layer `first_trained` that alone feeds every operation from
    there up: the place to cut `base` when that layer and those above it are trained.

    Works on the graph's operations, not only its layers: some networks (MobileNetV3) apply
    plain ops (`x + 3`) between layers, and the cut may fall on one of them.
    """
    operations = base.operations
    index = next(i for i, op in enumerate(operations) if op.name == first_trained)
    made_by = {id(op.output): i for i, op in enumerate(operations)}

    def sources(op) -> list[int]:
        return [made_by[id(t)] for t in keras.tree.flatten(op.input) if id(t) in made_by]

    for cut in range(index - 1, -1, -1):
        if all(source >= cut for op in operations[cut + 1:] for source in sources(op)):
            return operations[cut].output
    raise ValueError(f"{base.name} cannot be cut below layer {first_trained}")


class FrozenFeatures:
    """The frozen bottom of a pretrained model, run once per image, and each stage's top.

    The bottom ends where every stage's trainable layers begin: after pooling when the base
    stays frozen (`transfer`), at `separating_layer` of the fine-tuning layer otherwise.
    """

    def __init__(self, model: keras.Model, stages: Sequence[Stage], data, views: int, batch_size: int, seed: int,
                 drop_remainder: bool = False, cache_folder: Path | None = None,
                 memory_budget: int | None = None):
        self.model, self.data, self.views, self.batch_size, self.seed = model, data, views, batch_size, seed
        self.drop_remainder = drop_remainder  # of training batches (several replicas: see catdog.training.distribute)
        # Features over the memory budget go to files in the cache folder (memory-mapped arrays).
        self.cache_folder = cache_folder
        self.memory_budget = default_memory_budget() if memory_budget is None else memory_budget
        preprocess, base, self.pool, self.head = (model.get_layer(n) for n in (PREPROCESS, BASE, POOL, HEAD))
        unfreeze = [unfreeze_index(base, s.unfreeze_from) for s in stages if s.unfreeze_from is not None]
        pixels = keras.Input(model.input_shape[1:])
        if not unfreeze:
            self.bottom = pooled_bottom(model)
            self.upper = None
        else:
            cut = separating_tensor(base, base.layers[min(unfreeze)].name)
            self.bottom = keras.Model(pixels, keras.Model(base.input, cut)(preprocess(pixels), training=False))
            features = keras.Input(cut.shape[1:])
            # The base above the cut: trainable in fine-tuning stages, frozen otherwise.
            self.upper = keras.Model(features, keras.Model(cut, base.output)(features, training=False))
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.seconds = 0.0  # spent computing features, which the epochs' own times leave out

    def top(self, stage: Stage) -> keras.Model:
        """The part of the model that `stage` trains, from the stored features to probabilities."""
        if stage.unfreeze_from is None:
            return self.head
        features = keras.Input(self.upper.input_shape[1:])
        return keras.Model(features, self.head(self.pool(self.upper(features))))

    def datasets(self, stage: Stage) -> tuple[Any, Any]:
        """`stage`'s training and validation data: stored features and labels."""
        features = self._pooled if stage.unfreeze_from is None else self.features
        train_x, train_y = features(TRAIN)
        val_x, val_y = features(VALIDATION)
        return self._dataset(train_x, train_y, shuffle=True), self._dataset(val_x, val_y, shuffle=False)

    def features(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The bottom's outputs for `split`, shape (N, views, ...), and the labels."""
        if split not in self._cache:
            import tensorflow as tf

            views = self.views if split == TRAIN else 1
            augment = self.model.get_layer(AUGMENTATION)
            bottom = inference_function(self.bottom)
            started = time.perf_counter()
            shape = (len(self.data.manifest.files(split)[0]), views, *self.bottom.output_shape[1:])
            store = self._store(split, shape)
            labels, filled = [], 0
            what = f"{split} images through the frozen network"
            with progress(what, total=shape[0]) as bar:
                for images, y in getattr(self.data, split):
                    batch = [bottom(images)]
                    if views > 1:
                        batch.append(bottom(tf.reverse(images, axis=[2])))
                    batch += [bottom(augment(images, training=True)) for _ in range(views - 2)]
                    store[filled:filled + len(y)] = np.stack([b.numpy() for b in batch], axis=1)
                    filled += len(y)
                    labels.append(y.numpy())
                    bar.update(len(y))
            self._cache[split] = store[:filled], np.concatenate(labels)  # fewer if a file could not be read
            seconds = time.perf_counter() - started
            self.seconds += seconds
            where = f"in {store.filename}" if isinstance(store, np.memmap) else "in memory"
            size = f"{store[:filled].nbytes / 1e6:,.0f} MB"
            copies = f" ({views} views of each: the image, its mirror image{', augmented' * (views > 2)})" * (views > 1)
            logger.info(f"{filled:,} {split} images through the frozen network once, for every epoch{copies}: "
                        f"{duration(seconds)}, kept {where} ({size})")
        return self._cache[split]

    def head_inputs(self, split: str) -> tuple[np.ndarray, np.ndarray] | None:
        """What the head reads for `split`'s images as they are (their first view), and the
        labels; None if a stage trains layers below the head, which makes them stale."""
        if self.upper is not None:
            return None
        x, y = self.features(split)
        return x[:, 0], y

    def _store(self, split: str, shape: tuple[int, ...]) -> np.ndarray:
        """An array for `split`'s features: in memory within the budget, else a file in the cache folder."""
        if self.cache_folder is None or math.prod(shape) * 4 <= self.memory_budget:
            return np.empty(shape, "float32")
        self.cache_folder.mkdir(parents=True, exist_ok=True)
        return np.lib.format.open_memmap(self.cache_folder / f"features-{split}.npy", "w+", "float32", shape)

    def _pooled(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Pooled base features for `split` (N, views, channels), from the stored activations."""
        x, y = self.features(split)
        if self.upper is None:
            return x, y
        key = f"{split}/pooled"
        if key not in self._cache:
            features = keras.Input(x.shape[2:])
            upper = inference_function(keras.Model(features, self.pool(self.upper(features))))
            flat = x.reshape((-1,) + x.shape[2:])
            started = time.perf_counter()
            pooled = np.concatenate([upper(flat[i:i + 256]).numpy() for i in range(0, len(flat), 256)])
            self.seconds += time.perf_counter() - started
            self._cache[key] = pooled.reshape(x.shape[:2] + pooled.shape[1:]), y
        return self._cache[key]

    @staticmethod
    def _rows(x: np.memmap, y: np.ndarray):
        """(features, label) pairs read row by row from a file, as `from_tensor_slices` gives them from memory."""
        import tensorflow as tf

        def row(i):
            features = tf.numpy_function(lambda i: np.asarray(x[i]), [i], tf.float32, stateful=False)
            features.set_shape(x.shape[1:])
            return features, tf.gather(y, i)

        return tf.data.Dataset.range(len(y)).map(row, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def _dataset(self, x: np.ndarray, y: np.ndarray, shuffle: bool):
        """Batches of one view per example, drawn afresh each epoch when `shuffle`."""
        import tensorflow as tf

        views = x.shape[1]
        dataset = tf.data.Dataset.from_tensor_slices((x, y)) if not isinstance(x, np.memmap) else self._rows(x, y)
        if shuffle:
            dataset = tf.data.Dataset.zip(
                dataset.shuffle(len(y), seed=self.seed, reshuffle_each_iteration=True),
                tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True),
            ).map(lambda xy, r: (xy[0][r % views], xy[1]))
        else:
            dataset = dataset.map(lambda x, y: (x[0], y))
        return dataset.batch(self.batch_size, drop_remainder=shuffle and self.drop_remainder).prefetch(tf.data.AUTOTUNE)
