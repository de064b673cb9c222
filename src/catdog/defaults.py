"""The defaults that several stages share. Every other fact lives with the code it describes:
a preset's recipe in `catdog.models.presets`, a backbone's in `catdog.models.backbones`, the
splits in `catdog.data.splits`, the server's limits in `catdog.deploy.serve`, and so on."""

# The side of the square images models see, where neither the preset nor its backbone says.
IMAGE_SIZE = 160
BATCH_SIZE = 32
# Splits, shuffling and initial weights.
SEED = 42
