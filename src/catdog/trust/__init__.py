"""Predictions people can trust: calibrated probabilities, "none of these" for images unlike
the training images, and test-time augmentation (the picture of why is catdog.explain).

- `calibration.py`: the expected calibration error, reliability bins, temperature scaling.
- `ood.py`: out-of-distribution detection on a model's features.
- `tta.py`: test-time augmentation (the image and its mirror image).
- `fitting.py`: what a run stores after training (temperature, detector) and reads back.

Nothing here is imported by this package's `__init__`: `calibration`, `ood` and `tta`
need only NumPy, so that predicting with an exported model does not load TensorFlow.
"""

# The named outputs of a served model (catdog.models.inference.served) and of every export.
PROBABILITIES = "probabilities"
FEATURES = "features"
