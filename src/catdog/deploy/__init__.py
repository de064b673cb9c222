"""Deployment: using a trained run.

- `predict.py`: predictions for files, folders, uploads and arrays (`Predictor`).
- `prediction_files.py`: predictions written to a JSON-lines or Parquet file.
- `ray_batch.py`: batch prediction on Ray Data, on this machine or a cluster.
- `export.py`: writing an export (catdog.formats) and checking it against the Keras model.
- `serve/`: the web page and JSON API.
"""
