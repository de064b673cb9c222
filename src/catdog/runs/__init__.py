"""Runs: a run's settings, its folder, and the one handle to it.

    >>> settings = TrainSettings.resolve("transfer", epochs=3)   # every choice, resolved and checked
    >>> run = Run.open("runs/transfer")                          # a run folder, opened
    >>> run.settings == settings

- `settings.py`: `TrainSettings` (every training choice, resolved once from the preset, the
  overrides and the machine, and checked) and the training stages it plans.
- `config.py`: `RunConfig`, the run's `config.json`: its settings written down, with the class
  names, the data and where it trained.
- `folder.py`: the run folder's file names, its lock, and its history.
- `run.py`: `Run`, the one handle to a run folder, for everything that uses a trained run.
"""

from catdog.runs import folder
from catdog.runs.config import RunConfig
from catdog.runs.folder import RUNS_DIR, epoch_rank
from catdog.runs.run import Run, as_run
from catdog.runs.settings import Stage, TrainSettings

__all__ = ["RUNS_DIR", "Run", "RunConfig", "Stage", "TrainSettings", "as_run", "epoch_rank", "folder"]
