"""Defaults and locations: the one place for each of the project's facts."""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_SIZE = 160
BATCH_SIZE = 32
SEED = 42
EPOCHS = 20
# Keras dtype policies training accepts; "auto" picks one (see catdog.training.recipe).
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")

# Calibration: equal-width bins of confidence for the expected calibration error (Guo et al.'s 15),
# and the folds of the validation split that check a fitted temperature (see catdog.trust.calibration).
ECE_BINS = 15
CALIBRATION_FOLDS = 5
# "None of these": the share of validation images the out-of-distribution threshold flags (false
# alarms), and how distances from the training images are measured (see catdog.trust.ood).
OOD_RATE = 0.05
OOD_METHOD = "knn"

# The three splits, in this order everywhere; with the seed layout they are also folder names.
SPLITS = ("train", "validation", "test")
# The seed layout keeps train/ for training and splits validation/ into validation and test.
SEED_TEST_FRACTION = 0.2
# A flat folder of class folders is split by these fractions (the rest is training).
FLAT_VALIDATION_FRACTION = 0.15
FLAT_TEST_FRACTION = 0.15

# Two images are the same photo when their perceptual hashes differ in at most this many of 64 bits
# (scan), or when the backbone's embeddings have at least this cosine similarity (audit); both
# chosen by measurement on copies of the seed photos (benchmarks/audit.md).
NEAR_DUPLICATE_HASH_BITS = 8
NEAR_DUPLICATE_COSINE = 0.9
# `catdog audit` lists an image as an outlier when its mean distance to its nearest neighbours (in
# the backbone's features) is at least this many times the data set's median of that distance.
OUTLIER_DISTANCE_RATIO = 1.5
# ... and judges labels only where the other images predict an image's class at least this often
# (out-of-fold accuracy): below it, every label looks doubtful.
LABEL_CHECK_MIN_ACCURACY = 0.5
# A warning when the largest class has more than this many times the images of the smallest.
IMBALANCE_RATIO = 3.0
# How training weighs the classes' losses: none, balanced (each class as much in total), or auto
# (balanced beyond IMBALANCE_RATIO); the default chosen by measurement (README, "Your own data").
CLASS_WEIGHTS = ("none", "balanced", "auto")
CLASS_WEIGHT = "auto"

# Images with more pixels than this are skipped (scan) or refused (serve) rather than decoded.
MAX_IMAGE_PIXELS = 40_000_000
# Training keeps decoded images (as uint8) and frozen features in memory when a split takes at most
# this much, and in files of the run's cache/ folder beyond it; `$CATDOG_CACHE_MEMORY_MB` changes it.
CACHE_MEMORY_BYTES = 2 * 1024**3
ENV_CACHE_MEMORY = "CATDOG_CACHE_MEMORY_MB"


def cache_memory_bytes() -> int:
    """The memory budget per split for decoded images and frozen features (see CACHE_MEMORY_BYTES)."""
    text = os.environ.get(ENV_CACHE_MEMORY, "").strip()
    if not text:
        return CACHE_MEMORY_BYTES
    try:
        return int(float(text) * 1e6)
    except ValueError:
        from catdog.errors import CatdogError

        raise CatdogError(f"${ENV_CACHE_MEMORY} must be a number of megabytes, got {text!r}") from None

# `catdog serve`: where it listens, and what one request may send.
SERVE_HOST = "127.0.0.1"
SERVE_PORT = 8000
MAX_UPLOAD_MB = 20
MAX_UPLOAD_FILES = 32
# All the images of one request together, from their headers (before anything is decoded):
# eight 12-megapixel photos, or two at the per-image limit.
MAX_REQUEST_PIXELS = 100_000_000
# Uploads decoded at the same time, across all requests (decoding is CPU- and memory-bound).
MAX_CONCURRENT_DECODES = max(1, min(4, os.cpu_count() or 1))
# Open connections; one more is closed at once (uvicorn answers requests beyond it with 503).
SERVE_MAX_CONNECTIONS = 512
# Seconds a connection has to send complete request headers, from connecting or from the end
# of the previous response; and the longest silence while it sends a request body.
SERVE_HEADER_TIMEOUT_S = 10
SERVE_BODY_TIMEOUT_S = 30
# Seconds an idle keep-alive connection stays open (uvicorn's default); largest request head.
SERVE_KEEP_ALIVE_S = 5
SERVE_MAX_HEADER_BYTES = 16 * 1024

# The seed documents' data set.
SEED_DATASET_NAME = "cats_and_dogs_filtered"
SEED_DATASET_URL = "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"
SEED_DATASET_BYTES = 68_606_236  # the size every published download log of it shows
# Not found in any public record this project could check (its machines have no network).
# Without it, `catdog data fetch` verifies the archive by its exact size and by its contents
# (SEED_DATASET_CONTENT_SHA256, below); pass `--sha256` to pin the archive itself.
SEED_DATASET_SHA256: str | None = None
# The reference file set: the photographs of the shared copy (../shared/data/cats_and_dogs_filtered),
# {split}/{class}/{stem}.{n}.jpg for these numbers, classes and stems, less the files that copy lacks
# (the published archive has train/cats/cat.459.jpg; if present it must be a readable JPEG).
# 2,999 files, 68,548,710 bytes. catdog.data.fetch.reference_files() lists them.
SEED_DATASET_NUMBERS = {"train": range(0, 1000), "validation": range(2000, 2500)}
SEED_DATASET_STEMS = {"cats": "cat", "dogs": "dog"}
SEED_DATASET_NOT_IN_REFERENCE = ("train/cats/cat.459.jpg",)
# The sha256 of the lines "<sha256 of the file>  <path>\n" of the reference files, by path (relative to the
# data set folder, sorted), computed from the shared copy. Same as what its folder gives for
#   find train validation -type f | LC_ALL=C sort | xargs sha256sum | sha256sum
# (catdog.data.fetch.content_digest; tests/data/test_fetch.py recomputes it). A download must hold every
# reference file with these bytes; files beyond the set are allowed and named in the log.
SEED_DATASET_CONTENT_SHA256: str | None = "60f7563e90014d3361fced4fdab33229b2034d6f77ebcff4f515010f256468e3"
# Caps on extraction (declared sizes checked first, then the bytes actually written). JPEGs barely
# compress: the archive is 68.6 MB and the files 68.5 MB, so 150 MB leaves twice that and still refuses
# the 228 KB zip that expanded to 200 MB. The archive has about 3,000 entries.
SEED_DATASET_MAX_EXTRACTED_BYTES = 150_000_000
SEED_DATASET_MAX_ENTRIES = 10_000

# The seed assignment's minimum validation accuracy for each of its four models.
SEED_MINIMUM_ACCURACY = {"scratch": 0.52, "augmented": 0.55, "preprocessed": 0.70, "transfer": 0.90}

RUNS_DIR = Path("runs")

ENV_HOME = "CATDOG_HOME"
ENV_DATA = "CATDOG_DATA"
# A local copy of MobileNetV2's ImageNet weights (no top), for the `mobilenet_v2` backbone only.
ENV_WEIGHTS = "CATDOG_WEIGHTS"


def keras_home() -> Path:
    """Keras' own folder: `$KERAS_HOME`, else `~/.keras`."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()


def cache_dir() -> Path:
    """Where downloads go: `$CATDOG_HOME`, else Keras' own cache (`~/.keras/datasets`)."""
    if home := os.environ.get(ENV_HOME):
        return Path(home).expanduser()
    return keras_home() / "datasets"


def scan_cache_dir() -> Path:
    """Where scans remember what they checked: `$CATDOG_HOME/scans`, else `~/.cache/catdog/scans`."""
    if home := os.environ.get(ENV_HOME):
        return Path(home).expanduser() / "scans"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "catdog" / "scans"


def keras_weights_dir() -> Path:
    """Where Keras keeps the pretrained weights it downloads (`~/.keras/models`)."""
    return keras_home() / "models"
