"""Runs: what a run trains with, the folder it leaves, and the one handle to that folder.

    >>> settings = TrainSettings.resolve("transfer", epochs=3)    # every choice, checked once
    >>> run = Run.open("runs/transfer")                            # a trained run, wherever it is used
    >>> run.settings == settings, run.class_names, run.temperature

- `settings.py`: `TrainSettings`, every training choice resolved from a preset and overrides,
  and the stages (`plan`) a run trains in.
- `config.py`: `RunConfig`, the settings written down in a run's `config.json`, checked when read.
- `folder.py`: where each of a run folder's files goes, who may write it (`locked`), its history.
- `run.py`: `Run`, the one handle to a run folder, and `as_run` where a path enters the API.
"""

from catdog.runs import folder
from catdog.runs.config import CONFIG_FILE, RunConfig
from catdog.runs.folder import RUNS_DIR, best_epoch, epoch_rank
from catdog.runs.run import Run, as_run
from catdog.runs.settings import Stage, TrainSettings, plan

__all__ = ["CONFIG_FILE", "RUNS_DIR", "Run", "RunConfig", "Stage", "TrainSettings", "as_run", "best_epoch",
           "epoch_rank", "folder", "plan"]
