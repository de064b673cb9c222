"""Training: one preset on one data set, into a run folder (see `catdog.runs`).

    >>> run = catdog.train.train("transfer", "cats_and_dogs_filtered", epochs=3)

`train` splits and loads the data (`catdog.data`), builds the preset (`catdog.models`),
fits it in one or two stages (`plan`), and after every epoch checkpoints it and appends the
epoch to `history.csv`, so that `train(resume=run)` continues an interrupted run from its
last finished epoch. The best epoch by validation accuracy is kept as `model.keras`, which
is then scored on the test split (`catdog.evaluate`).

Frozen features
---------------
A frozen pretrained base computes the same outputs for an image on every epoch, and it is
nearly all of the work: the seed's recipe recomputes them for every image, every epoch.
Here (`FrozenFeatures`) the frozen bottom of the model runs once per image, and the
trainable top trains on its stored outputs:

- `transfer`: the pooled MobileNetV2 features (1280 numbers per image) train the head.
- `finetune`: the activations at the fine-tuning cut are stored. Stage 1 trains the head on
  the pooled features computed from them; stage 2 trains MobileNetV2's top layers (from
  layer 100, batch normalisation kept in inference mode) with the head on them.
  Layer 100 sits inside a residual block, so the cut is the output of block 10
  (`block_10_project_BN`, layer 97), the deepest tensor that alone feeds everything above
  it (`separating_layer`); layers 98 and 99 stay frozen above the cut.

Random augmentation cannot be precomputed, so it becomes a choice among `views` stored
views of each training image, drawn afresh each epoch: 1 = the image only, 2 = also its
mirror image (the seed's horizontal flip), more = also draws of the preset's random
augmentation. Each view costs one pass of the frozen bottom over the training images.
The head's layers are shared with the whole model, so what is saved as `model.keras` is the
ordinary end-to-end model (raw pixels in, probabilities out) that evaluation, prediction,
serving and export use. `frozen_features=False` trains end to end, as the seed does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import platform
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

import catdog
from catdog import config, files, runs
from catdog.data import Data, load
from catdog.errors import CatdogError
from catdog.models import AUGMENTATION, BASE, HEAD, POOL, PREPROCESS, Preset, build_model, get_preset, resolve_weights
from catdog.splits import TRAIN, Manifest

logger = logging.getLogger(__name__)



@dataclass
class Settings:
    """Everything a run was trained with; written to `config.json` with the class names and versions."""

    preset: str
    data: str
    epochs: int
    image_size: int
    batch_size: int
    seed: int
    weights: str
    learning_rate: float
    frozen_features: bool = True
    views: int = 1
    precision: str = "float32"
    jit_compile: bool = False
    stages: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # see `Stage`; [] = from `plan`

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Settings:
        return cls(**{f.name: cfg[f.name] for f in dataclasses.fields(cls) if f.name in cfg})

    def training_stages(self) -> list[Stage]:
        """The stages recorded for this run, so that a resumed run keeps its own schedule;
        derived from the preset for a run recorded without them."""
        if self.stages:
            return [Stage(**stage) for stage in self.stages]
        return plan(get_preset(self.preset), self.epochs, self.learning_rate)


@dataclass(frozen=True)
class Stage:
    """Epochs `start` to `end` (0-based, end excluded) at `learning_rate`; the pretrained base
    is trainable from layer `unfreeze_from` up (None: frozen)."""

    start: int
    end: int
    learning_rate: float
    unfreeze_from: int | None = None


def plan(preset: Preset, epochs: int, learning_rate: float | None = None) -> list[Stage]:
    """The training stages: one, or for a fine-tuning preset the head alone for the preset's
    share of the epochs (rounded; at least one, and one left) and then the top of the base
    too, at a lower rate."""
    rate = learning_rate or preset.learning_rate
    if preset.fine_tune_at is None or epochs < 2:
        return [Stage(0, epochs, rate)]
    split = min(max(round(epochs * preset.head_epochs_share), 1), epochs - 1)
    return [Stage(0, split, rate),
            Stage(split, epochs, rate * preset.fine_tune_learning_rate_factor, preset.fine_tune_at)]


def train(
    preset: str | None = None,
    data: str | os.PathLike | Data | None = None,
    *,
    epochs: int | None = None,
    image_size: int | None = None,
    batch_size: int = config.BATCH_SIZE,
    seed: int = config.SEED,
    weights: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    learning_rate: float | None = None,
    frozen_features: bool = True,
    views: int | None = None,
    precision: str = "auto",
    jit_compile: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> Path:
    """Train `preset` on `data` (a folder, or an already loaded `catdog.data.Data`) and return
    the run folder, complete with model, history, figures and test metrics.

    `epochs` and `image_size` default to the preset's (20 epochs and 160 px for the seed's
    models, 224 px for the pretrained ones, 60 epochs at 128 px for `cnn`); a loaded `Data`
    brings its own image size.
    `weights`: see `catdog.models.resolve_weights`. `resume`: a run folder to continue from
    its last finished epoch, with its own settings (all other arguments but `callbacks` are
    then ignored). `views` (default: the preset's), `frozen_features`: see the module
    docstring. `precision` is a Keras dtype policy, or "auto": mixed bfloat16 for presets
    that train as well in it on CPUs with bfloat16 instructions, else float32. `jit_compile`
    turns on XLA (several times slower for these models on CPU, measured).
    """
    if resume is not None:
        return _resume(Path(resume), data, callbacks)
    if preset is None:
        raise CatdogError("name the model to train (--model NAME) or a run to resume (--resume RUN)")
    spec = get_preset(preset)
    if precision not in config.PRECISIONS:
        raise CatdogError(f"unknown precision {precision!r}; choose one of: {', '.join(config.PRECISIONS)}")
    views = spec.views if views is None else views
    if views < 1:
        raise CatdogError(f"views must be at least 1, got {views}")
    image_size = image_size or _image_size(data) or spec.image_size
    resolved = resolve_weights(spec, weights)
    run = runs.new_run_dir(spec.name, out)
    if (run / runs.CONFIG).exists():
        raise CatdogError(f"{run} already holds a run; continue it with --resume {run} or choose another --out")

    keras.utils.set_random_seed(seed)
    data = _load_data(data, image_size, batch_size, seed)
    settings = Settings(
        preset=spec.name, data=str(Path(data.root).resolve()), epochs=epochs or spec.epochs,
        image_size=image_size, batch_size=batch_size, seed=seed, weights=resolved or "none",
        learning_rate=learning_rate or spec.learning_rate, frozen_features=frozen_features,
        views=views, precision=_resolve_precision(precision, spec), jit_compile=jit_compile,
    )
    settings.stages = [dataclasses.asdict(stage) for stage in plan(spec, settings.epochs, settings.learning_rate)]
    run.mkdir(parents=True, exist_ok=True)
    files.write_json(run / runs.CONFIG, {**dataclasses.asdict(settings), "class_names": data.class_names,
                                         "versions": versions()})
    data.manifest.write(run / runs.SPLITS)
    logger.info(f"training {spec.name} into {run}")
    with _dtype_policy(settings.precision):
        model = build_model(spec.name, len(data.class_names), image_size, resolved, seed=seed)
        _fit(run, model, settings, data, history=[], callbacks=callbacks)
    return _finish(run, settings)


def _resolve_precision(precision: str, preset: Preset) -> str:
    if precision != "auto":
        return precision
    return "mixed_bfloat16" if preset.bfloat16 and cpu_has_bfloat16() else "float32"


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX-512 BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def versions() -> dict[str, str]:
    """The versions that matter for reproducing a run."""
    import tensorflow as tf

    return {"catdog": catdog.__version__, "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__}


def _resume(run: Path, data, callbacks) -> Path:
    opened = runs.open_run(run)
    settings = Settings.from_config(opened.config)
    history = opened.history
    if len(history) >= settings.epochs:
        raise CatdogError(f"run {run} has already finished its {settings.epochs} epochs")
    if history and not (run / runs.CHECKPOINT).is_dir():
        raise CatdogError(f"run {run} has no {runs.CHECKPOINT}/ folder to resume from")
    keras.utils.set_random_seed(settings.seed)
    manifest = Manifest.read(run / runs.SPLITS, settings.data)
    data = _load_data(data or settings.data, settings.image_size, settings.batch_size, settings.seed, manifest)
    logger.info(f"resuming {run} after epoch {len(history)} of {settings.epochs}")
    with _dtype_policy(settings.precision):
        model = build_model(settings.preset, len(data.class_names), settings.image_size, settings.weights,
                            seed=settings.seed)
        _fit(run, model, settings, data, history=history, callbacks=callbacks)
    return _finish(run, settings)


def _image_size(data) -> int | None:
    """The image size of a loaded `Data`'s batches; None for a folder."""
    return data.train.element_spec[0].shape[1] if isinstance(data, Data) else None


def _load_data(data, image_size: int, batch_size: int, seed: int, manifest: Manifest | None = None) -> Data:
    if isinstance(data, Data):
        if _image_size(data) != image_size:
            raise CatdogError(f"the data were loaded at {_image_size(data)} px, but the model takes {image_size} px")
        return data
    return load(data, image_size=image_size, batch_size=batch_size, seed=seed, manifest=manifest)


@contextlib.contextmanager
def _dtype_policy(name: str):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# Fitting -----------------------------------------------------------------------------------


def _fit(run: Path, model: keras.Model, settings: Settings, data, history: list[dict], callbacks) -> None:
    """Fit `model` stage by stage from epoch `len(history)`, checkpointing every epoch.

    The checkpoint of a stage is the weights of the part of the model it trains, with the
    optimizer's state; resuming loads those of the stages already (or partly) done.
    """
    preset = get_preset(settings.preset)
    stages = settings.training_stages()
    frozen = None
    if settings.frozen_features and _has_base(model):
        frozen = FrozenFeatures(model, stages, data, settings.views, settings.batch_size, settings.seed)
    steps = math.ceil(len(data.manifest.files(TRAIN)[0]) / settings.batch_size)
    best = runs.best_epoch(history) if history else None
    try:
        for number, stage in enumerate(stages, 1):
            started = time.perf_counter()  # the first epoch's time includes computing frozen features
            checkpoint = run / runs.CHECKPOINT / f"stage-{number}.weights.h5"
            _set_trainable(model, stage)
            top = frozen.top(stage) if frozen else model
            if stage.end <= len(history):  # done before an interruption
                top.load_weights(checkpoint)
                continue
            top.compile(optimizer=_optimizer(preset, stage, steps), loss=keras.losses.SparseCategoricalCrossentropy(),
                        metrics=["accuracy"], jit_compile=settings.jit_compile)
            first = max(len(history), stage.start)
            if first > stage.start:  # interrupted inside this stage
                top.optimizer.build(top.trainable_variables)
                top.load_weights(checkpoint)
            train_data, validation_data = frozen.datasets(stage) if frozen else (data.train, data.validation)
            on_terminal = sys.stderr.isatty()
            with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():  # Keras prints progress on stdout
                # The pipeline's batch count is unknown until the first epoch ends; Keras warns about that.
                warnings.filterwarnings("ignore", "Your input ran out of data")
                top.fit(
                    train_data, validation_data=validation_data, initial_epoch=first, epochs=stage.end,
                    shuffle=False, verbose=1 if on_terminal else 0,
                    callbacks=[
                        EpochLog(run / runs.HISTORY, checkpoint, history, settings.epochs, started,
                                 print_lines=not on_terminal),
                        BestModelCheckpoint(run / runs.MODEL, model, best),
                        keras.callbacks.TensorBoard(log_dir=str(run / runs.LOGS)),
                        *callbacks,
                    ],
                )
            best = runs.best_epoch(history)
    except KeyboardInterrupt:
        logger.info(f"interrupted after epoch {len(history)}; continue with: catdog train --resume {run}")
        raise


def _has_base(model: keras.Model) -> bool:
    return any(layer.name == BASE for layer in model.layers)


def _set_trainable(model: keras.Model, stage: Stage) -> None:
    """Freeze the pretrained base, or unfreeze it from `stage.unfreeze_from` up. Batch
    normalisation stays frozen, which in Keras 3 also keeps it in inference mode."""
    if not _has_base(model):
        return
    base = model.get_layer(BASE)
    base.trainable = stage.unfreeze_from is not None
    if stage.unfreeze_from is not None:
        for i, layer in enumerate(base.layers):
            layer.trainable = i >= stage.unfreeze_from and not isinstance(layer, keras.layers.BatchNormalization)


def _optimizer(preset: Preset, stage: Stage, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    rate = stage.learning_rate
    if preset.schedule == "cosine":
        total = steps_per_epoch * (stage.end - stage.start)
        warmup = min(steps_per_epoch, total // 10)
        rate = keras.optimizers.schedules.CosineDecay(rate / 10, decay_steps=max(total - warmup, 1),
                                                      warmup_target=rate, warmup_steps=warmup)
    if preset.weight_decay:
        return keras.optimizers.AdamW(rate, weight_decay=preset.weight_decay)
    return keras.optimizers.Adam(rate)


# Frozen features ---------------------------------------------------------------------------


def separating_layer(base: keras.Model, index: int) -> str:
    """The name of the deepest layer below `index` whose output alone feeds all layers above
    it: the place to cut `base` when layers from `index` up are trained."""
    made_by = {id(layer.output): i for i, layer in enumerate(base.layers)}

    def sources(layer) -> list[int]:
        return [made_by[id(t)] for t in keras.tree.flatten(layer.input)]

    for cut in range(index - 1, -1, -1):
        if all(source >= cut for layer in base.layers[cut + 1:] for source in sources(layer)):
            return base.layers[cut].name
    raise ValueError(f"{base.name} cannot be cut below layer {index}")


class FrozenFeatures:
    """The frozen bottom of a pretrained model, run once per image, and each stage's top.

    The bottom ends where every stage's trainable layers begin: after pooling when the base
    stays frozen (`transfer`), at `separating_layer` of the fine-tuning layer otherwise.
    """

    def __init__(self, model: keras.Model, stages: Sequence[Stage], data, views: int, batch_size: int, seed: int):
        self.model, self.data, self.views, self.batch_size, self.seed = model, data, views, batch_size, seed
        preprocess, base, self.pool, self.head = (model.get_layer(n) for n in (PREPROCESS, BASE, POOL, HEAD))
        unfreeze = [s.unfreeze_from for s in stages if s.unfreeze_from is not None]
        pixels = keras.Input(model.input_shape[1:])
        if not unfreeze:
            self.bottom = keras.Model(pixels, self.pool(base(preprocess(pixels), training=False)))
            self.upper = None
        else:
            cut = base.get_layer(separating_layer(base, min(unfreeze))).output
            self.bottom = keras.Model(pixels, keras.Model(base.input, cut)(preprocess(pixels), training=False))
            features = keras.Input(cut.shape[1:])
            # The base above the cut: trainable in fine-tuning stages, frozen otherwise.
            self.upper = keras.Model(features, keras.Model(cut, base.output)(features, training=False))
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def top(self, stage: Stage) -> keras.Model:
        """The part of the model that `stage` trains, from the stored features to probabilities."""
        if stage.unfreeze_from is None:
            return self.head
        features = keras.Input(self.upper.input_shape[1:])
        return keras.Model(features, self.head(self.pool(self.upper(features))))

    def datasets(self, stage: Stage) -> tuple[Any, Any]:
        """`stage`'s training and validation data: stored features and labels."""
        features = self._pooled if stage.unfreeze_from is None else self._features
        train_x, train_y = features("train")
        val_x, val_y = features("validation")
        return self._dataset(train_x, train_y, shuffle=True), self._dataset(val_x, val_y, shuffle=False)

    def _features(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The bottom's outputs for `split`, shape (N, views, ...), and the labels."""
        if split not in self._cache:
            import tensorflow as tf

            views = self.views if split == "train" else 1
            augment = self.model.get_layer(AUGMENTATION)
            bottom = _inference(self.bottom)
            started = time.perf_counter()
            outputs, labels = [], []
            for images, y in getattr(self.data, split):
                batch = [bottom(images)]
                if views > 1:
                    batch.append(bottom(tf.reverse(images, axis=[2])))
                batch += [bottom(augment(images, training=True)) for _ in range(views - 2)]
                outputs.append(np.stack([b.numpy() for b in batch], axis=1))
                labels.append(y.numpy())
            self._cache[split] = np.concatenate(outputs), np.concatenate(labels)
            n = len(self._cache[split][1])
            logger.info(f"frozen features of {n} {split} images x {views} view{'s' * (views > 1)} "
                 f"in {time.perf_counter() - started:.1f}s")
        return self._cache[split]

    def _pooled(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Pooled base features for `split` (N, views, channels), from the stored activations."""
        x, y = self._features(split)
        if self.upper is None:
            return x, y
        key = f"{split}/pooled"
        if key not in self._cache:
            features = keras.Input(x.shape[2:])
            upper = _inference(keras.Model(features, self.pool(self.upper(features))))
            flat = x.reshape((-1,) + x.shape[2:])
            pooled = np.concatenate([upper(flat[i:i + 256]).numpy() for i in range(0, len(flat), 256)])
            self._cache[key] = pooled.reshape(x.shape[:2] + pooled.shape[1:]), y
        return self._cache[key]

    def _dataset(self, x: np.ndarray, y: np.ndarray, shuffle: bool):
        """Batches of one view per example, drawn afresh each epoch when `shuffle`."""
        import tensorflow as tf

        views = x.shape[1]
        dataset = tf.data.Dataset.from_tensor_slices((x, y))
        if shuffle:
            dataset = tf.data.Dataset.zip(
                dataset.shuffle(len(y), seed=self.seed, reshuffle_each_iteration=True),
                tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True),
            ).map(lambda xy, r: (xy[0][r % views], xy[1]))
        else:
            dataset = dataset.map(lambda x, y: (x[0], y))
        return dataset.batch(self.batch_size).prefetch(tf.data.AUTOTUNE)


def _inference(model: keras.Model):
    """`model` in inference mode as a TensorFlow graph function, traced once for any batch
    size (Keras' `predict` would pick XLA, which runs MobileNetV2 several times slower on CPU)."""
    import tensorflow as tf

    signature = [tf.TensorSpec(model.input_shape, tf.float32)]
    return tf.function(lambda x: model(x, training=False), input_signature=signature)


# Callbacks ---------------------------------------------------------------------------------


class EpochLog(keras.callbacks.Callback):
    """After every epoch: save the weights of the model being fit, with its optimizer's state,
    to `checkpoint`, then add the epoch to `history.csv`, the record of what is finished."""

    def __init__(self, history_path: Path, checkpoint: Path, history: list[dict], epochs: int,
                 started: float | None, print_lines: bool):
        super().__init__()
        self.history_path, self.checkpoint, self.history, self.epochs = history_path, checkpoint, history, epochs
        self.started, self.print_lines = started, print_lines

    def on_epoch_begin(self, epoch, logs=None):
        self.started = self.started or time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        self.started = None
        _save_weights(self.model, self.checkpoint)
        row = {"epoch": epoch + 1, **{k: float(logs[k]) for k in runs.HISTORY_FIELDS[1:-1]}, "seconds": seconds}
        self.history.append(row)
        runs.write_history(self.history_path, self.history)
        if self.print_lines:
            logger.info(f"epoch {epoch + 1}/{self.epochs}: loss {row['loss']:.4f}, accuracy {row['accuracy']:.4f}, "
                 f"val_loss {row['val_loss']:.4f}, val_accuracy {row['val_accuracy']:.4f} ({seconds:.1f}s)")


class BestModelCheckpoint(keras.callbacks.Callback):
    """Save `model` (the whole model, also when only its top is being fit) after every epoch
    that beats the best so far: higher validation accuracy, or the same with lower validation
    loss, since small validation sets often tie. Saved atomically (Keras' `ModelCheckpoint`
    monitors one quantity and writes in place)."""

    def __init__(self, path: Path, model: keras.Model, best: dict | None = None):
        super().__init__()
        self.path, self.whole = path, model
        self.best = runs.epoch_rank(best) if best else None

    def on_epoch_end(self, epoch, logs=None):
        rank = runs.epoch_rank(logs)
        if self.best is None or rank > self.best:
            self.best = rank
            with files.atomic_path(self.path) as tmp:
                self.whole.save(tmp)


def _save_weights(model: keras.Model, path: Path) -> None:
    with files.atomic_path(path) as tmp:
        model.save_weights(tmp)


# After training ----------------------------------------------------------------------------


def _finish(run: Path, settings: Settings) -> Path:
    """Plot the curves, score the best model on the test split, and drop the checkpoint."""
    from catdog import evaluate, plots

    history = runs.read_history(run / runs.HISTORY)
    minimum = config.SEED_MINIMUM_ACCURACY.get(settings.preset)
    stages = settings.training_stages()
    fine_tuning_from = stages[-1].start + 1 if stages[-1].unfreeze_from is not None else None
    plots.training_curve(history, "accuracy", run / runs.ACCURACY_PLOT, minimum, fine_tuning_from)
    plots.training_curve(history, "loss", run / runs.LOSS_PLOT, fine_tuning_from=fine_tuning_from)
    metrics = evaluate.evaluate(run)
    shutil.rmtree(run / runs.CHECKPOINT, ignore_errors=True)
    logger.info(f"{settings.preset}: test accuracy {metrics['accuracy']:.4f} on {metrics['n']} images; "
         f"{sum(row['seconds'] for row in history):.0f}s training")
    return run
