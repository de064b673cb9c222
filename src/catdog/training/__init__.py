"""Training: a run's settings and data in, a run folder holding its model out.

- `engine.py`: `train` and `resume`: place the run, start (or reopen) its folder, fit.
- `fit.py`: the fit loop, stage by stage, and how training ended.
- `recipe.py`: what a stage trains, optimizer and schedule, loss, batches, class weights.
- `frozen.py`: the frozen bottom of a pretrained model, run once per image.
- `callbacks.py`: the epoch record, and early stopping.
- `checkpoints.py`: the checkpoint files, and the best model kept and restored.
- `interrupts.py`: Ctrl-C during training, never lost.
- `memory.py`: whether a model's training steps fit in memory.
- `distribute.py`: `tf.distribute` strategies by name.
- `keras_patches.py`: Keras' `fit` made to work under several replicas and workers.
"""

from catdog.training.distribute import is_chief
from catdog.training.engine import resume, train

__all__ = ["is_chief", "resume", "train"]
