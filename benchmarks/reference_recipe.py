#!/usr/bin/env python3
"""The reference recipe, the tutorial of `../shared/seeds/001_*.txt` as it is written, timed for the benchmark.

Written fresh from the tutorial's document (it does not import catdog): the data pipeline
(`image_dataset_from_directory(shuffle=True, batch_size=32, image_size=(160, 160))`, the
test split taken as `validation.take(n // 5)`, `prefetch(AUTOTUNE)` and nothing else), the
four Sequential models, Adam, `SparseCategoricalCrossentropy(from_logits=True)`, 20 epochs.

Keras 3 fixes, the only changes to the recipe itself:

1. `tf.keras.Model(inputs=[i], outputs=[x])` returns a list under Keras 3, and the next
   layer fails with `TypeError: unsupported operand type(s) for %: 'tuple' and 'int'`;
   the preprocessor and the base-model wrapper are built as `tf.keras.Model(inputs=i, outputs=x)`.
2. `input_shape=` on a layer is deprecated in Keras 3 (a UserWarning; on models 2 and 3 it is
   on the third layer and was ignored anyway): each Sequential starts with
   `tf.keras.Input(shape=(160, 160, 3))` instead. The layers are unchanged.
3. `MobileNetV2(weights='imagenet')` downloads its weights and this machine has no network:
   the ImageNet weights are loaded from a local file (`--weights PATH`).

Measurement only, not recipe changes: `fit(..., verbose=2)` prints one line per epoch instead
of a progress bar; a callback times each epoch; one model trains per process (bench.py times
each process and reads its peak memory, so one model's memory never hides another's). After
training, the model is also scored on catdog's leak-free test split (`--manifest splits.csv`),
because the tutorial's own test split leaks: it is taken from a dataset that reshuffles on every
pass, so its images change each time and many of them are validation images. The tutorial's own
figure is kept as `reference_test_accuracy`, for the record.

    python benchmarks/reference_recipe.py --model 4 --manifest runs/transfer/splits.csv --out reference-4.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchkit import DEFAULT_DATA, DEFAULT_WEIGHTS, link_flat

BATCH_SIZE = 32
IMG_SIZE = (160, 160)
EPOCHS = 20
MODELS = (1, 2, 3, 4)


# The recipe ---------------------------------------------------------------------------


def load_datasets(data_dir: Path):
    """The tutorial's train, validation and (leaky) test datasets, prefetched."""
    import tensorflow as tf
    from tensorflow.keras import utils

    train_dataset = utils.image_dataset_from_directory(
        data_dir / "train", shuffle=True, batch_size=BATCH_SIZE, image_size=IMG_SIZE
    )
    validation_dataset = utils.image_dataset_from_directory(
        data_dir / "validation", shuffle=True, batch_size=BATCH_SIZE, image_size=IMG_SIZE
    )
    val_batches = tf.data.experimental.cardinality(validation_dataset)
    test_dataset = validation_dataset.take(val_batches // 5)
    validation_dataset = validation_dataset.skip(val_batches // 5)

    AUTOTUNE = tf.data.AUTOTUNE
    train_dataset = train_dataset.prefetch(buffer_size=AUTOTUNE)
    validation_dataset = validation_dataset.prefetch(buffer_size=AUTOTUNE)
    test_dataset = test_dataset.prefetch(buffer_size=AUTOTUNE)
    return train_dataset, validation_dataset, test_dataset


def make_preprocessor():
    import tensorflow as tf

    i = tf.keras.Input(shape=(160, 160, 3))
    x = tf.keras.applications.mobilenet_v2.preprocess_input(i)
    return tf.keras.Model(inputs=i, outputs=x)  # fix 1


def make_base_model_layer(weights: Path):
    import tensorflow as tf

    IMG_SHAPE = IMG_SIZE + (3,)
    base_model = tf.keras.applications.MobileNetV2(input_shape=IMG_SHAPE, include_top=False,
                                                   weights=str(weights))  # fix 3
    base_model.trainable = False

    i = tf.keras.Input(shape=IMG_SHAPE)
    x = base_model(i, training=False)
    return tf.keras.Model(inputs=i, outputs=x)  # fix 1


def build_model(number: int, weights: Path | None):
    """Model 1, 2, 3 or 4 of the tutorial."""
    import tensorflow as tf
    from tensorflow.keras import layers, models

    def conv_blocks():
        """The three Conv2D/MaxPooling2D blocks that models 1 to 3 share."""
        return [layer for _ in range(3)
                for layer in (layers.Conv2D(32, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)))]

    inputs = [tf.keras.Input(shape=(160, 160, 3))]  # fix 2
    if number == 1:
        stack = [*conv_blocks(), layers.Flatten(), layers.Dropout(0.5), layers.Dense(2)]
    elif number == 2:
        stack = [layers.RandomFlip("horizontal"), layers.RandomRotation(0.2), *conv_blocks(),
                 layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dropout(0.2), layers.Dense(2)]
    elif number == 3:
        stack = [make_preprocessor(), layers.RandomFlip("horizontal_and_vertical"), layers.RandomRotation(0.2),
                 *conv_blocks(), layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dropout(0.2),
                 layers.Dense(2)]
    else:
        stack = [make_preprocessor(), layers.RandomFlip("horizontal_and_vertical"), layers.RandomRotation(0.2),
                 make_base_model_layer(weights), layers.GlobalMaxPooling2D(), layers.Dropout(0.5), layers.Dense(2)]
    return models.Sequential(inputs + stack)


# Measurement --------------------------------------------------------------------------


def epoch_timer():
    """A Keras callback that records the wall time of every epoch (validation included)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def train_one(number: int, data_dir: Path, weights: Path | None, epochs: int, test_dir: Path | None) -> dict:
    """Train one of the tutorial's models as its document does and return its figures."""
    import resource

    import tensorflow as tf
    from tensorflow.keras import utils

    train_dataset, validation_dataset, reference_test_dataset = load_datasets(data_dir)
    model = build_model(number, weights)
    model.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    timer = epoch_timer()
    start = time.perf_counter()
    history = model.fit(train_dataset, epochs=epochs, validation_data=validation_dataset, callbacks=[timer], verbose=2)
    fit_seconds = time.perf_counter() - start

    result = {
        "model": number, "epochs": epochs, "params": model.count_params(),
        "epoch_seconds": timer.seconds, "fit_seconds": fit_seconds,
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
        "best_val_accuracy": max(history.history["val_accuracy"]),
        "last_val_accuracy": history.history["val_accuracy"][-1],
        "reference_test_accuracy": None, "test_accuracy": None, "test_n": None,
    }
    if tf.data.experimental.cardinality(reference_test_dataset) > 0:
        result["reference_test_accuracy"] = model.evaluate(reference_test_dataset, verbose=0)[1]
    if test_dir is not None:
        # catdog's test split, decoded and resized exactly as the tutorial's datasets are.
        test_dataset = utils.image_dataset_from_directory(test_dir, shuffle=False, batch_size=BATCH_SIZE,
                                                          image_size=IMG_SIZE)
        result["test_accuracy"] = model.evaluate(test_dataset, verbose=0)[1]
        result["test_n"] = len(test_dataset.file_paths)
    result["self_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return result


def link_manifest_test_split(manifest: Path, data_dir: Path, dest: Path) -> Path:
    """A folder of class folders linking the manifest's test files (paths relative to `data_dir`)."""
    with open(manifest, newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["split"] == "test"]
    if not rows:
        raise SystemExit(f"reference_recipe: error: {manifest} lists no test files")
    by_class: dict[str, list[Path]] = {}
    for row in rows:
        path = data_dir / row["path"]
        if not path.is_file():
            raise SystemExit(f"reference_recipe: error: {path} from {manifest} is missing; "
                             "pass the --data it was made from")
        by_class.setdefault(row["class"], []).append(path)
    for name, paths in by_class.items():
        link_flat(paths, dest / name)
    return dest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--model", type=int, choices=MODELS, required=True, help="the tutorial's model to train: 1, 2, 3 or 4")
    add("--data", type=Path, default=DEFAULT_DATA, help="data folder in the tutorial's layout (default: %(default)s)")
    add("--weights", type=Path, default=DEFAULT_WEIGHTS,
        help="MobileNetV2 ImageNet weights without top, for model 4 (default: %(default)s)")
    add("--epochs", type=int, default=EPOCHS, help="epochs (default: %(default)s, the tutorial's)")
    add("--manifest", type=Path, help="catdog's splits.csv: score the model on its test files")
    add("--out", type=Path, default=Path("reference_results.json"), help="results file (default: %(default)s)")
    args = parser.parse_args(argv)
    if not (args.data / "train").is_dir() or not (args.data / "validation").is_dir():
        parser.error(f"{args.data} has no train/ and validation/ folders (the tutorial's layout)")
    if args.model == 4 and not args.weights.is_file():
        parser.error(f"MobileNetV2 weights {args.weights} are missing; pass --weights PATH")
    if args.manifest is not None and not args.manifest.is_file():
        parser.error(f"manifest {args.manifest} does not exist")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"reference_recipe: model {args.model}, {args.epochs} epochs", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="reference-recipe-") as tmp:
        test_dir = link_manifest_test_split(args.manifest, args.data, Path(tmp)) if args.manifest else None
        result = train_one(args.model, args.data, args.weights, args.epochs, test_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"reference_recipe: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
