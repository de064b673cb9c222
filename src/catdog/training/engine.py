"""`train` and `resume`: a run's settings and data in, a run folder holding its model out.

    >>> settings = catdog.runs.TrainSettings.resolve("transfer", epochs=3)
    >>> run = catdog.training.train(settings, "cats_and_dogs_filtered")
    >>> catdog.training.resume(run)      # after Ctrl-C or a crash

`train` places the run (a `tf.distribute` strategy, chosen by name: catdog.training.distribute),
loads the data, and builds the model before it writes anything, so that a setting the model
cannot take fails first; then it records the settings and the split (`config.json`,
`splits.csv`) and fits the model stage by stage (catdog.training.fit). Training ends at the
model: `model.keras` (the best epoch), `history.csv`, `training.json`. What follows (the
temperature, the out-of-distribution detector, the test scores, the figures) is
`catdog.workflow`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras

from catdog import __version__, files
from catdog.data import Data, DataArgument, load
from catdog.data.labels import MULTILABEL
from catdog.data.pack import is_remote
from catdog.errors import ParameterError
from catdog.models import create_model
from catdog.runs import Run, RunConfig, TrainSettings, as_run, folder
from catdog.training import checkpoints, distribute, memory, recipe
from catdog.training.checkpoints import restore_best_model
from catdog.training.fit import fit, training_ended

logger = logging.getLogger(__name__)


def train(settings: TrainSettings, data: DataArgument | Data = None, *, out: str | os.PathLike | None = None,
          strategy: str = "auto", callbacks: Sequence[keras.callbacks.Callback] = ()) -> Run:
    """Train a model with `settings` on `data` (a folder, a `catdog.data.Source`, or a loaded
    `catdog.data.Data` at the settings' image size) into the run folder `out` (default:
    `runs/<preset>-<timestamp>/`), and return the run.

    `strategy`: where to train (see catdog.training.distribute; the batch size is the global
    batch). `callbacks`: Keras callbacks added to every stage's `fit`.
    """
    placement = distribute.place(strategy)  # first: a multi-worker strategy must be set up before anything runs
    if placement.workers > 1 and out is None:
        raise ParameterError("out", "{name} is needed with the multiworker strategy: every worker names the same run")
    path = folder.new_run_dir(settings.preset, out) if placement.is_chief else _worker_folder()
    memory.batch_fits(settings.preset, settings.image_size, settings.batch_size)  # before the data and the model

    # The global seed before any dataset exists: tf.data derives its shuffling from it and the op's seed.
    keras.utils.set_random_seed(settings.seed)
    data = _load(settings, data)
    settings = _for_placement(settings, placement)
    config = RunConfig(settings, tuple(data.class_names), _location(data.root), placement.record(), library_versions(),
                       data.task)
    with _scope(settings, placement):
        model = _build(settings, len(data.class_names), data.task == MULTILABEL)  # before anything is written
    with folder.locked(path):
        if placement.is_chief:
            folder.new_run_dir(settings.preset, path)  # again, now that no other process can write it
        config.write(path / folder.CONFIG_FILE)
        data.manifest.write(path / folder.MANIFEST_FILE)
        logger.info(f"training {settings.preset} into {path} ({_where(placement)})")
        with _scope(settings, placement):
            fit(path, model, settings, data.with_cache_folder(path / folder.CACHE_DIR), [], callbacks)
    if not placement.is_chief:
        shutil.rmtree(path)  # a worker's own copy of the run
        return Run(Path(out), config)
    return Run(path, config, data)


def resume(run: Run | str | os.PathLike, data: DataArgument | Data = None, *, strategy: str = "auto",
           callbacks: Sequence[keras.callbacks.Callback] = ()) -> Run:
    """Continue an interrupted run's training from its last finished epoch, with its own
    settings; if training had ended, only make sure `model.keras` is its best epoch's.

    `data`: the data folder if it has moved since (the run's split is reused as recorded), or
    the same data already loaded. `strategy`: where to train now (the machine may have
    changed); recorded in the run's config.
    """
    placement = distribute.place(strategy)
    if placement.workers > 1:
        raise ParameterError("strategy", "{name} multiworker cannot resume a run; resume it on one machine")
    run = as_run(run)
    path, config = run.path, run.config
    with run.locked():
        for place in (path, path / folder.CHECKPOINT_DIR):
            if place.is_dir():
                files.sweep_temporary(place)
        shutil.rmtree(path / folder.CACHE_DIR, ignore_errors=True)  # a cache cut off mid-write is no cache
        history = run.history
        keras.utils.set_random_seed(config.settings.seed)
        data = _load(config.settings, data or config.data, run.manifest())
        if placement.record() != config.placement:
            settings = _for_placement(config.settings, placement)
            config = dataclasses.replace(config, settings=settings, placement=placement.record())
            config.write(path / folder.CONFIG_FILE)
        with _scope(config.settings, placement):
            model = _build(config.settings, len(config.class_names), config.task == MULTILABEL)
            restore_best_model(path, model, history)
            if training_ended(path, config.settings, history):
                checkpoints.tidy(path)  # the process may have been killed before it did
            else:
                logger.info(f"resuming {path} after epoch {len(history)} of {config.settings.epochs}")
                fit(path, model, config.settings, data.with_cache_folder(path / folder.CACHE_DIR), history,
                    callbacks)
    return Run(path, config, data)


def library_versions() -> dict[str, str]:
    """The versions that matter for reproducing a run."""
    import numpy as np
    import tensorflow as tf

    return {"catdog": __version__, "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__}


def _location(root: Path | str) -> str:
    """Where the data are, as recorded: a local folder in full, a pack's URL as it is."""
    return os.fspath(root) if is_remote(root) else str(Path(root).resolve())


def _load(settings: TrainSettings, data, manifest=None) -> Data:
    if isinstance(data, Data):
        size = data.train.element_spec[0].shape[1]
        if size != settings.image_size:
            raise ParameterError("image_size", f"the data were loaded at {size} px, but {{name}} is "
                                               f"{settings.image_size}")
        return data
    return load(data, image_size=settings.image_size, batch_size=settings.batch_size, seed=settings.seed,
                manifest=manifest)


def _for_placement(settings: TrainSettings, placement: distribute.Placement) -> TrainSettings:
    """The settings as they can train where the run is placed: no XLA across replicas."""
    if settings.jit_compile and placement.replicas > 1:
        logger.warning("XLA is off: it cannot compile a step spread over several replicas")
        return dataclasses.replace(settings, jit_compile=False)
    return settings


@contextlib.contextmanager
def _scope(settings: TrainSettings, placement: distribute.Placement):
    """The run's dtype policy and distribution strategy, for building and fitting its model."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(settings.precision)
    try:
        with placement.tf_strategy.scope():
            yield
    finally:
        keras.config.set_dtype_policy(previous)


def _where(placement: distribute.Placement) -> str:
    if placement.replicas == 1:
        return f"on {placement.devices[0]}"
    workers = f" on {placement.workers} workers" if placement.workers > 1 else ""
    return f"{placement.strategy}: {placement.replicas} replicas{workers} ({', '.join(placement.devices)})"


def _worker_folder() -> Path:
    """Where a worker that is not the chief writes its own, discarded copy of the run."""
    return Path(tempfile.mkdtemp(prefix="catdog-worker-"))


def _build(settings: TrainSettings, num_classes: int, multilabel: bool) -> keras.Model:
    """The run's model (a sigmoid per tag if `multilabel`), checked against this machine's memory."""
    import tensorflow as tf

    try:
        model = create_model(settings.preset, num_classes, multilabel=multilabel, image_size=settings.image_size,
                             backbone=settings.backbone, weights=settings.weights, seed=settings.seed)
    except ValueError as e:  # Keras' own shape checks: an image size the network cannot take
        raise ParameterError("image_size", f"model {settings.preset!r} cannot be built for {{name}} "
                                           f"{settings.image_size}: {str(e).splitlines()[0]}") from e
    except (MemoryError, tf.errors.ResourceExhaustedError) as e:  # its weights alone: beyond `batch_fits`' estimate
        raise ParameterError("image_size", f"model {settings.preset!r} is too large for this machine's memory at "
                                           f"{{name}} {settings.image_size}; choose a smaller one") from e
    unfrozen = [stage.unfreeze_from for stage in settings.stages if stage.unfreeze_from is not None]
    frozen = settings.frozen_features and recipe.has_base(model)
    trained_from = (str(unfrozen[0]) if unfrozen else "") if frozen else None
    memory.fits_in_memory(model, settings.preset, settings.image_size, settings.batch_size, trained_from)
    return model
