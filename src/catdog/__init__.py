"""catdog: train, evaluate, serve and export image classifiers.

The data flows through one module per step::

    files -> scan (scan.py) -> split into a manifest (splits.py) -> tf.data pipeline (pipeline.py)
          -> model from the preset registry (models.py) -> training into a run folder (train.py, runs.py)
          -> evaluation (evaluate.py) -> report (report.py), prediction (predict.py),
             serving (serve.py), export (export.py)

`catdog.cli` is a thin command-line layer over these modules.
"""

__version__ = "0.1.0"
