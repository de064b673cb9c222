#!/usr/bin/env python3
"""The seed recipe, as `../shared/seeds/001_*.txt` writes it, timed for the benchmark.

Written fresh from the seed document (it does not import catdog): the data pipeline
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
of a progress bar; a callback times each epoch; each model trains in its own process, so its
peak memory is its own. After training, each model is also scored on catdog's leak-free test
split (`--manifest splits.csv`), because the seed's own test split leaks: it is taken from a
dataset that reshuffles on every pass, so its images change each time and many of them are
validation images. The seed's own figure is kept as `seed_test_accuracy`, for reference.

    python benchmarks/seed_recipe.py --manifest runs/transfer/splits.csv --out seed.json
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

from benchkit import DEFAULT_DATA, DEFAULT_WEIGHTS, link_flat, link_subset, run_measured

BATCH_SIZE = 32
IMG_SIZE = (160, 160)
EPOCHS = 20
MODELS = (1, 2, 3, 4)


# The recipe ---------------------------------------------------------------------------


def load_datasets(data_dir: Path):
    """The seed's train, validation and (leaky) test datasets, prefetched."""
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
    base_model = tf.keras.applications.MobileNetV2(
        input_shape=IMG_SHAPE,
        include_top=False,
        weights=str(weights),  # fix 3
    )
    base_model.trainable = False

    i = tf.keras.Input(shape=IMG_SHAPE)
    x = base_model(i, training=False)
    return tf.keras.Model(inputs=i, outputs=x)  # fix 1


def conv_blocks():
    """The three Conv2D/MaxPooling2D blocks that models 1 to 3 share."""
    from tensorflow.keras import layers

    return [
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
    ]


def build_model(number: int, weights: Path | None):
    """Model 1, 2, 3 or 4 of the seed document."""
    import tensorflow as tf
    from tensorflow.keras import layers, models

    inputs = [tf.keras.Input(shape=(160, 160, 3))]  # fix 2
    if number == 1:
        stack = [*conv_blocks(), layers.Flatten(), layers.Dropout(0.5), layers.Dense(2)]
    elif number == 2:
        stack = [
            layers.RandomFlip("horizontal"),
            layers.RandomRotation(0.2),
            *conv_blocks(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(2),
        ]
    elif number == 3:
        stack = [
            make_preprocessor(),
            layers.RandomFlip("horizontal_and_vertical"),
            layers.RandomRotation(0.2),
            *conv_blocks(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(2),
        ]
    else:
        stack = [
            make_preprocessor(),
            layers.RandomFlip("horizontal_and_vertical"),
            layers.RandomRotation(0.2),
            make_base_model_layer(weights),
            layers.GlobalMaxPooling2D(),
            layers.Dropout(0.5),
            layers.Dense(2),
        ]
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


def test_dataset_from(test_dir: Path):
    """catdog's test split, decoded and resized exactly as the seed's datasets are."""
    from tensorflow.keras import utils

    return utils.image_dataset_from_directory(test_dir, shuffle=False, batch_size=BATCH_SIZE, image_size=IMG_SIZE)


def train_one(number: int, data_dir: Path, weights: Path | None, epochs: int, test_dir: Path | None) -> dict:
    """Train one seed model as the document does and return its figures."""
    import resource

    import tensorflow as tf

    train_dataset, validation_dataset, seed_test_dataset = load_datasets(data_dir)
    model = build_model(number, weights)
    model.compile(
        optimizer="adam",
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    timer = epoch_timer()
    start = time.perf_counter()
    history = model.fit(train_dataset, epochs=epochs, validation_data=validation_dataset, callbacks=[timer], verbose=2)
    fit_seconds = time.perf_counter() - start

    result = {
        "model": number,
        "epochs": epochs,
        "params": model.count_params(),
        "epoch_seconds": timer.seconds,
        "fit_seconds": fit_seconds,
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
        "best_val_accuracy": max(history.history["val_accuracy"]),
        "last_val_accuracy": history.history["val_accuracy"][-1],
        "seed_test_accuracy": None,
        "test_accuracy": None,
        "test_n": None,
    }
    if tf.data.experimental.cardinality(seed_test_dataset) > 0:
        result["seed_test_accuracy"] = model.evaluate(seed_test_dataset, verbose=0)[1]
    if test_dir is not None:
        test_dataset = test_dataset_from(test_dir)
        result["test_accuracy"] = model.evaluate(test_dataset, verbose=0)[1]
        result["test_n"] = len(test_dataset.file_paths)
    result["self_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return result


def link_manifest_test_split(manifest: Path, data_dir: Path, dest: Path) -> Path:
    """A folder of class folders linking the manifest's test files (paths relative to `data_dir`)."""
    with open(manifest, newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["split"] == "test"]
    if not rows:
        raise SystemExit(f"seed_recipe: error: {manifest} lists no test files")
    by_class: dict[str, list[Path]] = {}
    for row in rows:
        path = data_dir / row["path"]
        if not path.is_file():
            raise SystemExit(f"seed_recipe: error: {path} from {manifest} is missing; pass the --data it was made from")
        by_class.setdefault(row["class"], []).append(path)
    for name, paths in by_class.items():
        link_flat(paths, dest / name)
    return dest


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (this script stands alone, so it does not borrow catdog's helper)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(f.name, path)


def model_list(text: str) -> list[int]:
    numbers = [int(n) for n in text.split(",") if n.strip()]
    if not numbers or any(n not in MODELS for n in numbers):
        raise argparse.ArgumentTypeError(f"{text!r}: give seed model numbers from 1 to 4, comma-separated")
    return numbers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="seed-layout data folder (default: %(default)s)"
    )
    parser.add_argument(
        "--weights",
        type=Path,
        default=DEFAULT_WEIGHTS,
        help="MobileNetV2 ImageNet weights without top, for model 4 (default: %(default)s)",
    )
    parser.add_argument(
        "--models", type=model_list, default=list(MODELS), help="seed models to train (default: 1,2,3,4)"
    )
    parser.add_argument(
        "--epochs", type=int, default=EPOCHS, help="epochs per model (default: %(default)s, the seed's)"
    )
    parser.add_argument(
        "--subset",
        type=int,
        metavar="N",
        help="train on N images (N/2 per class) and validate on N/2, for a quick check",
    )
    parser.add_argument("--manifest", type=Path, help="catdog's splits.csv: score every model on its test files")
    parser.add_argument(
        "--out", type=Path, default=Path("seed_results.json"), help="results file (default: %(default)s)"
    )
    # One model in this process: how the parent runs each model in a child of its own.
    parser.add_argument("--child", type=int, choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--test-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (args.data / "train").is_dir() or not (args.data / "validation").is_dir():
        parser.error(f"{args.data} has no train/ and validation/ folders (the seed layout)")
    if 4 in args.models and not args.weights.is_file():
        parser.error(f"MobileNetV2 weights {args.weights} are missing; pass --weights PATH")
    if args.manifest is not None and not args.manifest.is_file():
        parser.error(f"manifest {args.manifest} does not exist")
    return args


def run_children(args: argparse.Namespace, data_dir: Path, test_dir: Path | None) -> list[dict]:
    """Train each model in a child process of its own; add its wall time and peak memory."""
    results = []
    for number in args.models:
        child_out = args.out.parent / f".{args.out.name}.model{number}.json"
        command = [
            sys.executable,
            __file__,
            "--data",
            str(data_dir),
            "--weights",
            str(args.weights),
            "--epochs",
            str(args.epochs),
            "--child",
            str(number),
            "--out",
            str(child_out),
        ]
        if test_dir is not None:
            command += ["--test-dir", str(test_dir)]
        print(f"seed_recipe: model {number}, {args.epochs} epochs", file=sys.stderr, flush=True)
        measured = run_measured(command)
        if measured.returncode != 0:
            raise SystemExit(f"seed_recipe: error: model {number} failed with exit status {measured.returncode}")
        result = json.loads(child_out.read_text())
        child_out.unlink()
        result.update(process_seconds=measured.seconds, peak_rss_bytes=measured.peak_rss_bytes)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.child is not None:
        write_json(args.out, train_one(args.child, args.data, args.weights, args.epochs, args.test_dir))
        return
    with tempfile.TemporaryDirectory(prefix="seed-recipe-") as tmp:
        data_dir = args.data
        if args.subset:
            data_dir = link_subset(
                args.data, Path(tmp) / "data", {"train": args.subset // 2, "validation": args.subset // 4}
            )
        test_dir = link_manifest_test_split(args.manifest, args.data, Path(tmp) / "test") if args.manifest else None
        models = run_children(args, data_dir, test_dir)
    write_json(
        args.out,
        {
            "recipe": "seed 001",
            "data": str(args.data),
            "subset": args.subset,
            "epochs": args.epochs,
            "manifest": str(args.manifest) if args.manifest else None,
            "models": models,
        },
    )
    print(f"seed_recipe: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
