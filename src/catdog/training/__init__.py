"""Training: a preset trained on a data set into a run folder, and resumed after an interruption.

- `loop.py`: `train` and `resume`, the fit loop inside one distribution scope.
- `recipe.py`: the stages, optimizer, schedule and precision.
- `frozen.py`: the frozen bottom of a pretrained model, run once per image.
- `callbacks.py`: the epoch record, its checkpoint, and the best model.
"""

from catdog.training.loop import resume, train

__all__ = ["resume", "train"]
