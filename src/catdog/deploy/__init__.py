"""Deployment: using a trained run.

- `formats.py`: the export formats, one row each (file, writer, runtime, tolerance);
- `runtimes.py`: a run's model or one of its exports as one function;
- `export.py`: writing an export and checking it against the Keras model;
- `predict.py`: predictions for files, folders, uploads and arrays;
- `serve.py`: the web page and JSON API.
"""
