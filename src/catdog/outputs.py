"""The named outputs of a served model (`catdog.models.inference.served`) and of every export
(`catdog.formats`): what prediction, serving, evaluation and the export checks read; and the
words for an image whose features are unlike the training images'."""

# Class probabilities, (N, classes), calibrated by the run's temperature.
PROBABILITIES = "probabilities"
# The features the classifier reads, (N, D): what the out-of-distribution score is computed from.
FEATURES = "features"

# How catdog says, in every place (predict, explain, evaluate, the report, the web page), that the
# out-of-distribution score of an image is above 1.
UNLIKE_TRAINING_IMAGES = "unlike the training images"
