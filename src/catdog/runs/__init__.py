"""Runs: a run's settings, its folder, and the one handle to it.

    >>> settings = catdog.runs.TrainSettings.resolve("transfer", epochs=3)
    >>> run = catdog.runs.Run.open("runs/transfer")

- `settings.py`: `TrainSettings`, every choice training makes, resolved once (and its stages).
- `config.py`: `config.json`, the settings as a run records them, with its classes and data.
- `folder.py`: where each of a run's files goes, its lock, and its history.
- `run.py`: `Run`, the handle everything after training takes (`as_run` opens a path).
"""

from catdog.runs.config import RunConfig
from catdog.runs.folder import RUNS_DIR, best_epoch, epoch_rank, locked, new_run_dir
from catdog.runs.run import Run, as_run
from catdog.runs.settings import Stage, TrainSettings

__all__ = ["RUNS_DIR", "Run", "RunConfig", "Stage", "TrainSettings", "as_run", "best_epoch", "epoch_rank", "locked",
           "new_run_dir"]
