"""The training engine: one preset on one data set, into a run folder (see catdog.runs).

    >>> run = catdog.training.train("transfer", "cats_and_dogs_filtered", epochs=3)
    >>> catdog.training.resume(run)      # after Ctrl-C or a crash

`train` checks every setting and builds the model before it writes anything, then records
the settings (`runs.RunConfig`) and the split, and fits the model stage by stage
(`recipe.plan`). After every epoch it checkpoints the part being trained and appends the
epoch to `history.csv`, so that `resume` continues an interrupted run from its last
finished epoch. The best epoch by validation accuracy is kept as `model.keras`, which is
then scored on the test split (catdog.evaluate).

Models are built and fit inside one `tf.distribute` strategy's scope, chosen by name
(catdog.training.distribute: one device, every GPU, several workers), and recorded in the
run's config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import keras

from catdog import config, files, runs
from catdog.data import Data, load
from catdog.data.pack import is_remote
from catdog.data.splits import TRAIN
from catdog.errors import CatdogError, ParameterError
from catdog.models import create_model, default_image_size, get_preset, resolve_backbone, resolve_weights
from catdog.runs import RunConfig
from catdog.training import checks, distribute, recipe
from catdog.training.callbacks import (
    RunRecorder,
    StopWhenStalled,
    TrainingStopped,
    ValidationStalled,
    best_checkpoint,
    catch_interrupts,
    checkpoint_epoch,
    raise_pending_interrupt,
    remove_checkpoints,
    save_model,
    state_checkpoint,
)
from catdog.training.frozen import FrozenFeatures
from catdog.trust import ood

logger = logging.getLogger(__name__)


def train(
    preset: str,
    data: str | os.PathLike | Data | None = None,
    *,
    epochs: int | None = None,
    image_size: int | None = None,
    batch_size: int = config.BATCH_SIZE,
    seed: int = config.SEED,
    backbone: str | None = None,
    weights: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    learning_rate: float | None = None,
    frozen_features: bool = True,
    views: int | None = None,
    precision: str = "auto",
    jit_compile: bool = False,
    class_weight: str = config.CLASS_WEIGHT,
    strategy: str = "auto",
    patience: int | None = None,
    ood_rate: float = config.OOD_RATE,
    ood_method: str = config.OOD_METHOD,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> Path:
    """Train `preset` on `data` (a folder, a `catdog.data.Source`, or an already loaded
    `catdog.data.Data`) and return the run folder, complete with model, history, figures and
    test metrics.

    `epochs` and `image_size` default to the preset's (20 epochs and 160 px for the seed's
    models, the backbone's size for the pretrained ones, 60 epochs at 128 px for `cnn`); a
    loaded `Data` brings its own image size. `backbone` (pretrained presets): a row of
    `catdog.models.BACKBONES`, default MobileNetV2. `weights`: see
    `catdog.models.resolve_weights`. `views`, `frozen_features`: see catdog.training.frozen.
    `precision`: a Keras dtype policy, or "auto" (see `recipe.resolve_precision`).
    `jit_compile` turns on XLA (several times slower for these models on CPU, measured).
    `class_weight`: how the classes' losses are weighed (see `recipe.class_weights`).
    `strategy`: where to train (see catdog.training.distribute); `batch_size` is the global batch.
    `patience`: see `catdog.models.Preset` (None: the preset's; 0: run every epoch).
    `ood_rate`, `ood_method`: the out-of-distribution detector fitted after training (see
    catdog.trust.ood): the share of validation images it flags, and how it measures.
    """
    spec = get_preset(preset)
    network = resolve_backbone(spec, backbone)
    epochs = checks.at_least_one("epochs", epochs or spec.epochs)
    batch_size = checks.at_least_one("batch_size", batch_size)
    views = checks.at_least_one("views", spec.views if views is None else views)
    learning_rate = checks.learning_rate(learning_rate or spec.learning_rate)
    class_weight = recipe.check_class_weight(class_weight)
    image_size = checks.at_least_one("image_size", image_size or _image_size(data) or default_image_size(spec, network))
    resolved = resolve_weights(spec, network, weights)
    ood_rate, ood_method = ood.check_rate(ood_rate), ood.check_method(ood_method)
    placement = distribute.place(strategy)  # first: a multi-worker strategy must be set up before anything runs
    if placement.workers > 1 and out is None:
        raise ParameterError("out", "{name} is needed with the multiworker strategy: every worker names the same run")
    run = runs.new_run_dir(spec.name, out) if placement.is_chief else _worker_folder()

    # The global seed before any dataset exists: tf.data derives its shuffling from it and the op's seed.
    keras.utils.set_random_seed(seed)
    data = _load_data(data, image_size, batch_size, seed)
    settings = RunConfig(
        preset=spec.name, class_names=data.class_names, image_size=image_size, data=_location(data.root),
        backbone=network.name if network else None, epochs=epochs, batch_size=batch_size, seed=seed,
        weights=resolved or "none", learning_rate=learning_rate, frozen_features=frozen_features, views=views,
        precision=recipe.resolve_precision(precision, spec), jit_compile=_xla(jit_compile, placement),
        class_weight=class_weight,
        stages=[stage.to_dict() for stage in recipe.plan(spec, network, epochs, learning_rate)],
        patience=checks.patience(spec.patience if patience is None else patience),
        ood_method=ood_method, ood_rate=ood_rate, versions=runs.library_versions(), **placement.record(),
    )
    with _training_scope(settings, placement):
        model = _build(settings)  # before anything is written: a setting the model cannot take fails here
    with runs.locked(run):
        if placement.is_chief:
            runs.new_run_dir(spec.name, run)  # again, now that no other process can write it
        settings.write(run / runs.CONFIG_FILE)
        data.manifest.write(run / runs.MANIFEST_FILE)
        data = data.with_cache_folder(run / runs.CACHE_DIR)
        logger.info(f"training {spec.name} into {run} ({_where(placement)})")
        with _training_scope(settings, placement):
            frozen = _fit(run, model, settings, data, history=[], callbacks=callbacks)
        if placement.is_chief:  # outside the strategy: evaluation needs no other worker
            return _finish(run, settings, data, frozen)
    shutil.rmtree(run)  # a worker's own copy of the run
    return Path(out)


def resume(run: str | os.PathLike, data: str | os.PathLike | Data | None = None, *, strategy: str = "auto",
           callbacks: Sequence[keras.callbacks.Callback] = ()) -> Path:
    """Complete an interrupted run with its own settings: train from its last finished epoch,
    or, if training had ended, write what is missing (the model from the best epoch's
    checkpoint, the figures, the test metrics).

    `data`: the data folder if it has moved since (the run's split is reused as recorded),
    or the same data already loaded. `strategy`: where to train now (the machine may have
    changed); recorded in the run's config.
    """
    placement = distribute.place(strategy)
    if placement.workers > 1:
        raise ParameterError("strategy", "{name} multiworker cannot resume a run; resume it on one machine")
    opened = runs.open_run(run)
    settings, run = opened.config, opened.path
    with runs.locked(run):
        for folder in (run, run / runs.CHECKPOINT_DIR):
            if folder.is_dir():
                files.sweep_temporary(folder)
        shutil.rmtree(run / runs.CACHE_DIR, ignore_errors=True)  # a cache cut off mid-write is no cache
        history = opened.history
        trained = _training_ended(run, settings, history)
        if trained and _complete(run):
            raise CatdogError(f"run {run} has already finished its {len(history)} epochs")
        keras.utils.set_random_seed(settings.seed)
        data = _load_data(data or settings.data, settings.image_size, settings.batch_size, settings.seed,
                          opened.manifest()).with_cache_folder(run / runs.CACHE_DIR)
        if placement.record() != {key: getattr(settings, key) for key in placement.record()}:
            settings = dataclasses.replace(settings, **placement.record(),
                                           jit_compile=_xla(settings.jit_compile, placement))
            settings.write(run / runs.CONFIG_FILE)
        with _training_scope(settings, placement):
            model = _build(settings)
            _restore_best_model(run, model, history)
            frozen = None
            if not trained:
                logger.info(f"resuming {run} after epoch {len(history)} of {settings.epochs}")
                frozen = _fit(run, model, settings, data, history=history, callbacks=callbacks)
        return _finish(run, settings, data, frozen)


def stages(settings: RunConfig) -> list[recipe.Stage]:
    """The stages recorded for a run; derived from its preset for a run recorded without them."""
    if settings.stages:
        return [recipe.Stage.from_dict(stage) for stage in settings.stages]
    spec = get_preset(settings.preset)
    return recipe.plan(spec, resolve_backbone(spec, settings.backbone), settings.epochs, settings.learning_rate)


def _location(root: Path | str) -> str:
    """Where the data are, as recorded: a local folder in full, a pack's URL as it is."""
    return os.fspath(root) if is_remote(root) else str(Path(root).resolve())


def _image_size(data) -> int | None:
    """The image size of a loaded `Data`'s batches; None for a folder."""
    return data.train.element_spec[0].shape[1] if isinstance(data, Data) else None


def _load_data(data, image_size: int, batch_size: int, seed: int, manifest=None) -> Data:
    if isinstance(data, Data):
        if _image_size(data) != image_size:
            raise ParameterError("image_size", f"the data were loaded at {_image_size(data)} px, but {{name}} is "
                                               f"{image_size}")
        return data
    return load(data, image_size=image_size, batch_size=batch_size, seed=seed, manifest=manifest)


@contextlib.contextmanager
def _training_scope(settings: RunConfig, placement: distribute.Placement):
    """The run's dtype policy and distribution strategy, for building and fitting its model."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(settings.precision)
    try:
        with placement.tf_strategy.scope():
            yield
    finally:
        keras.config.set_dtype_policy(previous)


def _xla(jit_compile: bool, placement: distribute.Placement) -> bool:
    if jit_compile and placement.replicas > 1:
        logger.warning("XLA is off: it cannot compile a step spread over several replicas")
        return False
    return jit_compile


def _where(placement: distribute.Placement) -> str:
    if placement.replicas == 1:
        return f"on {placement.devices[0]}"
    workers = f" on {placement.workers} workers" if placement.workers > 1 else ""
    return f"{placement.strategy}: {placement.replicas} replicas{workers} ({', '.join(placement.devices)})"


def _worker_folder() -> Path:
    """Where a worker that is not the chief writes its own, discarded copy of the run."""
    return Path(tempfile.mkdtemp(prefix="catdog-worker-"))


def _build(settings: RunConfig) -> keras.Model:
    try:
        model = create_model(settings.preset, len(settings.class_names), image_size=settings.image_size,
                             backbone=settings.backbone, weights=settings.weights, seed=settings.seed)
    except ValueError as e:  # Keras' own shape checks: an image size the network cannot take
        raise ParameterError("image_size", f"model {settings.preset!r} cannot be built for {{name}} "
                                           f"{settings.image_size}: {str(e).splitlines()[0]}") from None
    unfrozen = [stage.unfreeze_from for stage in stages(settings) if stage.unfreeze_from is not None]
    frozen = settings.frozen_features and recipe.has_base(model)
    trained_from = (str(unfrozen[0]) if unfrozen else "") if frozen else None
    checks.fits_in_memory(model, settings.preset, settings.image_size, settings.batch_size, trained_from)
    return model


def _fit(run: Path, model: keras.Model, settings: RunConfig, data: Data, history: list[dict],
         callbacks) -> FrozenFeatures | None:
    """Fit `model` stage by stage from epoch `len(history)`, recording every epoch (see
    catdog.training.callbacks). The checkpoint of a stage is the state of the part of the
    model it trains; resuming loads those of the stages already (or partly) done. Returns
    the frozen features it trained on, if any."""
    frozen = None
    try:
        with catch_interrupts():
            if settings.frozen_features and recipe.has_base(model):
                frozen = FrozenFeatures(model, stages(settings), data, settings.views, settings.batch_size,
                                        settings.seed, drop_remainder=settings.replicas > 1,
                                        cache_folder=run / runs.CACHE_DIR)
            _fit_stages(run, model, settings, data, history, callbacks, frozen)
    except TrainingStopped as e:
        _record_outcome(run, history, stopped=e.reason)
        if not history:
            raise CatdogError(f"{e.reason}; no epoch finished, so there is no model to keep "
                              "(try a lower learning rate)") from None
        log = logger.info if isinstance(e, ValidationStalled) else logger.warning
        log(f"{e.reason}: training stopped; keeping the best of the {len(history)} finished epochs")
    except KeyboardInterrupt:
        logger.info(f"interrupted after epoch {len(history)}; continue with: catdog train --resume {run}")
        raise
    return frozen


def _fit_stages(run: Path, model: keras.Model, settings: RunConfig, data: Data, history: list[dict],
                callbacks, frozen: FrozenFeatures | None) -> None:
    preset = get_preset(settings.preset)
    planned = stages(settings)
    steps = math.ceil(len(data.manifest.files(TRAIN)[0]) / settings.batch_size)
    class_weight = recipe.class_weights(settings.class_weight, list(data.manifest.counts()[TRAIN].values()))
    if class_weight:
        logger.info(f"class weights ({settings.class_weight}): from {min(class_weight.values()):.2f} "
                    f"to {max(class_weight.values()):.2f}")
    for number, stage in enumerate(planned, 1):
        started = time.perf_counter()  # the first epoch's time includes computing frozen features
        recipe.set_trainable(model, stage)
        top = frozen.top(stage) if frozen else model
        if stage.end <= len(history):  # done before an interruption
            _load_checkpoint(top, state_checkpoint(run, number, stage.end))
            continue
        top.compile(optimizer=recipe.optimizer(preset, stage, steps), loss=recipe.loss(preset),
                    metrics=["accuracy"], jit_compile=settings.jit_compile)
        first = max(len(history), stage.start)
        if first > stage.start:  # interrupted inside this stage
            top.optimizer.build(top.trainable_variables)
            _load_checkpoint(top, state_checkpoint(run, number, first))
        if frozen:
            train_data, validation_data = frozen.datasets(stage)
        else:  # several replicas: no last batch smaller than the replica count (see distribute.py)
            train_data = data.train.rebatch(settings.batch_size, drop_remainder=True) if settings.replicas > 1 \
                else data.train
            validation_data = data.validation
        train_data, validation_data = recipe.batches(preset, train_data, validation_data,
                                                     num_classes=len(settings.class_names), seed=settings.seed)
        on_terminal = sys.stderr.isatty()
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():  # Keras prints progress on stdout
            # The pipeline's batch count is unknown until the first epoch ends; Keras warns about that.
            warnings.filterwarnings("ignore", "Your input ran out of data")
            top.fit(
                train_data, validation_data=validation_data, initial_epoch=first, epochs=stage.end,
                shuffle=False, verbose=1 if on_terminal else 0, class_weight=class_weight,
                callbacks=[
                    *recipe.callbacks(preset),
                    RunRecorder(run, model, number, history, settings.epochs, started, print_lines=not on_terminal),
                    *([StopWhenStalled(history, settings.patience, stage.start)]
                      if settings.patience and number == len(planned) else []),
                    keras.callbacks.TensorBoard(log_dir=str(run / runs.LOGS_DIR)),
                    *callbacks,
                ],
            )
    raise_pending_interrupt()  # a Ctrl-C dropped after the last batch


def _load_checkpoint(model: keras.Model, path: Path) -> None:
    if not path.is_file():
        raise CatdogError(f"{path} is missing: the run cannot be resumed from epoch {checkpoint_epoch(path)}")
    model.load_weights(path)


def _training_ended(run: Path, settings: RunConfig, history: list[dict]) -> bool:
    outcome = runs.read_json(run / runs.TRAINING_FILE) or {}
    return len(history) >= settings.epochs or bool(outcome.get("stopped"))


def _complete(run: Path) -> bool:
    """Whether a run whose training has ended has every output, and nothing left to tidy."""
    outputs = (runs.MODEL_FILE, runs.METRICS_FILE, runs.TRAINING_FILE, runs.ACCURACY_PLOT, runs.LOSS_PLOT,
               runs.CONFUSION_MATRIX_PLOT, runs.MISCLASSIFIED_PLOT, runs.RELIABILITY_PLOT, runs.CALIBRATION_FILE,
               runs.OOD_FILE)
    return all((run / name).is_file() for name in outputs) and not (run / runs.CHECKPOINT_DIR).exists()


def _restore_best_model(run: Path, model: keras.Model, history: list[dict]) -> None:
    """Make `model.keras` the best finished epoch's model again, from its checkpoint: the
    process may have been killed while saving it, or before. Checkpoints of epochs that
    never reached `history.csv` are removed."""
    if not (run / runs.CHECKPOINT_DIR).is_dir():
        return
    for path in (run / runs.CHECKPOINT_DIR).glob("*-epoch-*.weights.h5"):
        if checkpoint_epoch(path) > len(history):
            path.unlink()
    if history and (best := best_checkpoint(run, runs.best_epoch(history)["epoch"])).is_file():
        model.load_weights(best)
        save_model(model, run / runs.MODEL_FILE)


def _record_outcome(run: Path, history: list[dict], stopped: str | None = None) -> None:
    outcome = runs.read_json(run / runs.TRAINING_FILE) or {}
    stopped = stopped or outcome.get("stopped")
    best = runs.best_epoch(history)["epoch"] if history else None
    files.write_json(run / runs.TRAINING_FILE, {"epochs": len(history), "best_epoch": best, "stopped": stopped,
                                                "seconds": sum(row["seconds"] for row in history)})


def _finish(run: Path, settings: RunConfig, data: Data, frozen: FrozenFeatures | None = None) -> Path:
    """Plot the curves, fit the best model's temperature and out-of-distribution detector
    (catdog.trust), score it on the test split, record how training ended, and remove the
    checkpoints."""
    from catdog import evaluate, plots
    from catdog.trust import fitting

    history = runs.read_history(run / runs.HISTORY_FILE)
    minimum = config.SEED_MINIMUM_ACCURACY.get(settings.preset)
    planned = stages(settings)
    fine_tuning_from = planned[-1].start + 1 if planned[-1].unfreeze_from is not None else None
    plots.training_curve(history, "accuracy", run / runs.ACCURACY_PLOT, minimum, fine_tuning_from)
    plots.training_curve(history, "loss", run / runs.LOSS_PLOT, fine_tuning_from=fine_tuning_from)
    fitting.fit(run, data, frozen)
    metrics = evaluate.evaluate(run)
    _record_outcome(run, history)
    remove_checkpoints(run)
    shutil.rmtree(run / runs.CACHE_DIR, ignore_errors=True)
    with contextlib.suppress(OSError):  # only if empty: the folder may hold files catdog did not make
        (run / runs.CHECKPOINT_DIR).rmdir()
    logger.info(f"{settings.preset}: test accuracy {metrics['accuracy']:.4f} on {metrics['n']} images; "
                f"{sum(row['seconds'] for row in history):.0f}s training")
    return run
