"""Runs: a run's settings, its folder, and the one handle to it.

    >>> settings = TrainSettings.resolve("transfer", epochs=3)   # every choice, resolved once
    >>> run = Run.open("runs/transfer")                          # a trained run
    >>> run.settings.preset, run.class_names, run.model()

- `settings.py`: `TrainSettings` (every training choice, resolved and checked once), the
  training stages (`Stage`, `plan`) and the precision a run trains in.
- `config.py`: `RunConfig`, the settings written down as the run's `config.json`.
- `folder.py`: the run folder's file names, its lock, its history.
- `run.py`: `Run`, the one handle to a run folder, and `as_run` where a path enters the API.
"""

from catdog.runs import folder
from catdog.runs.config import RunConfig
from catdog.runs.folder import RUNS_DIR, epoch_rank
from catdog.runs.run import Run, as_run
from catdog.runs.settings import Stage, TrainSettings

__all__ = ["RUNS_DIR", "Run", "RunConfig", "Stage", "TrainSettings", "as_run", "epoch_rank", "folder"]
