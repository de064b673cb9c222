"""catdog: train, evaluate, serve and export image classifiers.

The packages follow the data::

    files -> data (check, scan, split into a manifest, tf.data pipelines)
          -> models (backbones and presets) -> training (into a run folder, runs.py)
          -> evaluate -> report, exercise; deploy (runtimes, prediction, serving, export)

`catdog.cli` is a thin command-line layer over these.
"""

from importlib import metadata

try:
    __version__ = metadata.version("catdog")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
