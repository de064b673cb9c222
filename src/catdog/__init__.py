"""catdog: train, evaluate, explain, serve and export image classifiers.

The packages follow the data, each importing only those above it in this list (tests/test_layers.py):

- `errors.py`: the exceptions users see, each one sentence.
- `defaults.py`: the defaults several stages share.
- `outputs.py`: the named outputs of a served model and of every export.
- `files.py`: writing files atomically, and only over what catdog made.
- `environment.py`: the environment variables, TensorFlow, and the devices.
- `terminal.py`: what a person watching the terminal sees: progress bars, numbers in one format.
- `metrics.py`: scores from labels and probabilities (one class per image, or tags).
- `data/`: files in, checked, scanned and split into a manifest, out as `tf.data` pipelines.
- `trust/`: calibration and out-of-distribution arithmetic on arrays.
- `formats/`: the export formats, one row each: how to write and how to run them.
- `models/`: backbones and presets (tables), builders, the factory, models at inference time.
- `runs/`: a run's settings (`TrainSettings`), its folder, and the one handle to it (`Run`).
- `training/`: settings and data in, a run folder holding its model out.
- `audit/`: duplicates, leaks, label errors and outliers of a data set.
- `report/`: every figure and every HTML or Markdown block catdog writes.
- `explain/`: why a model gave its label (Grad-CAM).
- `evaluation/`: a run scored on its test split, or on a folder of labelled images.
- `workflow.py`: training, then the steps after it (calibration, curves, test scores).
- `deploy/`: prediction, batch prediction on Ray, export, serving.
- `exercise.py`: the reference tutorial's whole exercise in one call (`catdog run`).
- `review/`: acting on what the audit found (or labelling a pool a run is unsure of), on a
  local page or in one command, into a corrected labels file (`catdog review`).
- `cli/`: the `catdog` command, a thin layer over all of these.
"""

from importlib import metadata

try:
    __version__ = metadata.version("catdog")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
