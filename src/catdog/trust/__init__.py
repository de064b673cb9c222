"""Predictions people can trust, as arithmetic on arrays: calibrated probabilities, "none of
these" for images unlike the training images, and test-time augmentation. NumPy only, so
that predicting with an exported model never loads TensorFlow.

- `calibration.py`: the expected calibration error, reliability bins, temperature scaling.
- `ood.py`: out-of-distribution detection on a model's features.
- `tta.py`: test-time augmentation (the image and its mirror image).

Fitting them to a trained run (running its model over the splits) is a step after training
(`catdog.workflow`); a run carries what was fitted (`catdog.runs.Run.temperature`, `.detector`).
"""
