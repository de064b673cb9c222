"""The checkpoint files of a run in training, and the model it keeps.

After every epoch the run recorder (catdog.training.callbacks) writes the state of the part
being trained (weights and optimizer) to `checkpoint/stage-S-epoch-E.weights.h5` and, if the
epoch is the best so far, the whole model's weights to `checkpoint/best-epoch-E.weights.h5`;
then `history.csv`, the commit; then `model.keras`. `restore_best_model` makes `model.keras`
the best finished epoch's model again after a crash; `remove_checkpoints` tidies what is no
longer needed, and nothing else in the folder.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import keras

from catdog import files
from catdog.errors import CatdogError
from catdog.runs import folder


def state_checkpoint(run: Path, stage: int, epoch: int) -> Path:
    return run / folder.CHECKPOINT_DIR / f"stage-{stage}-epoch-{epoch}.weights.h5"


def best_checkpoint(run: Path, epoch: int) -> Path:
    return run / folder.CHECKPOINT_DIR / f"best-epoch-{epoch}.weights.h5"


def checkpoint_epoch(path: Path) -> int:
    """The epoch a checkpoint file was written after."""
    return int(path.name.split("-epoch-")[1].split(".")[0])


def load_checkpoint(model: keras.Model, path: Path) -> None:
    if not path.is_file():
        raise CatdogError(f"{path} is missing: the run cannot be resumed from epoch {checkpoint_epoch(path)}")
    model.load_weights(path)


@contextlib.contextmanager
def averaged_weights(model: keras.Model):
    """For a while, the moving average of `model`'s weights that its optimizer keeps in place
    of the weights (as for validation; see `keras.callbacks.SwapEMAWeights`); nothing
    changes if it keeps none."""
    if not getattr(model.optimizer, "use_ema", False):
        yield
        return
    swap = keras.callbacks.SwapEMAWeights()
    swap.set_model(model)
    swap.on_test_begin()
    try:
        yield
    finally:
        swap.on_test_end()


def save_model(model: keras.Model, path: Path) -> None:
    """`model.keras`, written atomically (Keras' `ModelCheckpoint` writes in place)."""
    files.require_free_space(path, model.count_params() * 4 + 16 * 2**20)
    with files.atomic_path(path) as tmp:
        model.save(tmp)


def restore_best_model(run: Path, model: keras.Model, history: list[dict]) -> None:
    """Make `model.keras` the best finished epoch's model again, from its checkpoint: the
    process may have been killed while saving it, or before. Checkpoints of epochs that
    never reached `history.csv` are removed."""
    if not (run / folder.CHECKPOINT_DIR).is_dir():
        return
    for path in (run / folder.CHECKPOINT_DIR).glob("*-epoch-*.weights.h5"):
        if checkpoint_epoch(path) > len(history):
            path.unlink()
    if history and (best := best_checkpoint(run, folder.best_epoch(history)["epoch"])).is_file():
        model.load_weights(best)
        save_model(model, run / folder.MODEL_FILE)


def remove_checkpoints(run: Path, keep: set[Path] = frozenset(), keep_best: int | None = None,
                       stage: int | None = None) -> None:
    """Remove the checkpoint files catdog wrote that are no longer needed: the state files of
    `stage` (all stages if None) but those in `keep`, and the best-epoch files but `keep_best`'s.
    Nothing else in the folder is touched."""
    checkpoints = run / folder.CHECKPOINT_DIR
    states = checkpoints.glob(f"stage-{stage}-epoch-*.weights.h5" if stage else "stage-*-epoch-*.weights.h5")
    for path in [*states, *checkpoints.glob("best-epoch-*.weights.h5")]:
        if path in keep or (path.name.startswith("best-") and checkpoint_epoch(path) == keep_best):
            continue
        path.unlink(missing_ok=True)


def tidy(run: Path) -> None:
    """Once training has ended: every checkpoint, and the checkpoint folder if that leaves it empty
    (it may hold files catdog did not make)."""
    remove_checkpoints(run)
    with contextlib.suppress(OSError):
        (run / folder.CHECKPOINT_DIR).rmdir()
