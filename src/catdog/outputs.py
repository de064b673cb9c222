"""The named outputs of a served model (`catdog.models.inference.served`) and of every export
(`catdog.formats`): what prediction, serving, evaluation and the export checks read."""

# Class probabilities, (N, classes), calibrated by the run's temperature.
PROBABILITIES = "probabilities"
# The features the classifier reads, (N, D): what the out-of-distribution score is computed from.
FEATURES = "features"
