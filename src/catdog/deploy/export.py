"""Export: a run's model in a format that runs without catdog, checked against Keras.

    >>> report = export("runs/transfer", "onnx")

The formats, their files and runtimes are the rows of `catdog.formats.FORMATS`. What is exported
is the run's served model (catdog.models.inference.served): the probabilities calibrated
by the run's temperature, and the classifier's features. After writing, `export` runs the
exported model with its own runtime on a few real images and compares both outputs with
the Keras model's. Only a model within the format's tolerance is moved into place;
otherwise `CatdogError` says by how much it differs and nothing is written. `quantize`
(formats that allow it) stores the weights as int8; a format that calibrates its int8
activations (ONNX) takes the ranges from the run's training images. An export that
computes in reduced precision (int8 activations, OpenVINO's bfloat16) must also score
within `MAX_ACCURACY_DROP` of the Keras model on the test split, where the run's test
files are still there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from catdog import defaults
from catdog.data import images
from catdog.data.splits import TEST, TRAIN
from catdog.errors import BadImageError, CatdogError, ParameterError
from catdog.files import atomic_path, check_replaceable
from catdog.formats import FORMATS, Format, get_format
from catdog.outputs import FEATURES, PROBABILITIES
from catdog.runs import Run, as_run

PARITY_IMAGES = 16
CALIBRATION_IMAGES = 64
# The most a quantized export's test accuracy may fall below the Keras model's: half a point.
MAX_ACCURACY_DROP = 0.005


@dataclass(frozen=True)
class ExportReport:
    """What was written, and how closely it matches the Keras model."""

    format: str
    path: Path
    size_bytes: int
    quantized: bool
    max_difference: float
    tolerance: float
    images: int
    images_from: str
    # A reduced-precision export's accuracy on the run's test split, and the Keras model's.
    test_accuracy: float | None = None
    keras_test_accuracy: float | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


def export(
    run: Run | str | os.PathLike,
    format: str,
    out: str | os.PathLike | None = None,
    quantize: bool = False,
    check_images: Sequence[str | os.PathLike] | None = None,
) -> ExportReport:
    """Write `run`'s model in `format` to `out` (default: the format's place in the run folder),
    after checking it against the Keras model.

    The check uses `check_images` (files or folders) if given, else the run's test split
    if its files are still there, else generated noise images.
    """

    spec = get_format(format)
    if missing := spec.missing_modules():
        verb, pronoun = ("is", "it") if len(missing) == 1 else ("are", "them")
        raise CatdogError(f"the {format} format needs {', '.join(missing)}, which {verb} not installed; "
                          f"install {pronoun} with: pip install 'catdog[export]'")
    if quantize and not spec.quantizable:
        quantizable = " and ".join(name for name, row in FORMATS.items() if row.quantizable)
        raise ParameterError("quantize", f"{{name}} is available for the {quantizable} formats only, not {format}")
    run = as_run(run)
    out = Path(out) if out is not None else run.export_path(format, quantize)
    if spec.suffix and out.suffix != spec.suffix:
        raise ParameterError("out", f"{{name}}: the {format} export's file name must end in {spec.suffix} "
                                    f"(got {out.name})")

    check_replaceable(out, spec.kind)  # before the model is converted, not after
    with run.locked():
        return _export(run, spec, out, quantize, check_images)


def _export(run: Run, spec: Format, out: Path, quantize: bool, check_images) -> ExportReport:
    from catdog.models.inference import exportable, mixed_precision

    trained = run.keras_model()
    reference = run.served_model()
    model = exportable(reference)
    # A mixed-precision model is exported in float32 and checked against its float32 self.
    if mixed_precision(trained):
        reference = model
    pixels, images_from = parity_images(run, check_images)
    tolerance = spec.tolerance(quantize)
    calibrated = quantize and spec.calibrates
    with atomic_path(out, spec.kind) as tmp:
        spec.write(model, tmp, run.image_size, quantize, calibration_images(run) if calibrated else None)
        difference = check_parity(reference, spec, tmp, pixels, tolerance, run.detector, run.thresholds)
        accuracies = check_accuracy(reference, spec, tmp, run) if spec.checks_accuracy(quantize) else {}
    return ExportReport(spec.name, out, _size(out), quantize, difference, tolerance, len(pixels), images_from,
                        **accuracies)


def calibration_images(run: Run, count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """Up to `count` of the run's training images, every k-th, for calibrating an int8 export."""
    paths = _split_files(run, TRAIN)[0]
    readable = _readable(paths[:: max(1, len(paths) // count)], count)
    if not readable:
        raise CatdogError(f"quantizing calibrates on the run's training images, and none of them could be read "
                          f"from {run.config.data or 'the recorded data folder'}")
    return images.load_images(readable, run.image_size)


def check_accuracy(model, format: Format, path: str | os.PathLike, run: Run) -> dict[str, float]:
    """The export's and `model`'s accuracy on the run's test split (nothing if its files are gone).

    Raises `CatdogError` if the export's is more than `MAX_ACCURACY_DROP` below the model's.
    """
    from catdog.models.inference import numpy_function

    paths, labels = _split_files(run, TEST)
    if not paths or len(_readable(paths, len(paths))) < len(paths):
        return {}
    pixels = images.load_images(paths, run.image_size)

    def accuracy(predict) -> float:
        """The share of test images right: their class, or for a multi-label run every one of their tags."""
        batches = range(0, len(pixels), defaults.BATCH_SIZE)
        probabilities = np.concatenate([predict(pixels[i:i + defaults.BATCH_SIZE])[PROBABILITIES] for i in batches])
        if run.multilabel:
            return float(np.mean(((probabilities >= np.asarray(run.thresholds)) == labels.astype(bool)).all(axis=1)))
        return float(np.mean(probabilities.argmax(axis=1) == labels))

    exported, expected = accuracy(format.load(Path(path))), accuracy(numpy_function(model))
    if exported < expected - MAX_ACCURACY_DROP:
        raise CatdogError(
            f"the exported {format.name} model scores {exported:.1%} on the test split against the Keras model's "
            f"{expected:.1%} (at most {MAX_ACCURACY_DROP:.1%} lower allowed); it was not written")
    return {"test_accuracy": exported, "keras_test_accuracy": expected}


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def check_parity(model, format: Format, path: str | os.PathLike, pixels: np.ndarray, tolerance: float,
                 detector=None, thresholds: Sequence[float] | None = None) -> float:
    """Run the export at `path` with its own runtime; the largest difference from the outputs
    of `model` (a served model).

    Raises `CatdogError` if the export cannot be run, lacks an output or gives the wrong
    shape, or differs by more than `tolerance` in any probability, or in what its features
    are for: with the run's out-of-distribution `detector`, the score it gives them (features
    computed in bfloat16 differ far more than the scores they give: benchmarks/decisions.md);
    without one, any feature by more than `tolerance` times the features' largest magnitude (at
    least 1). With a multi-label run's `thresholds`, each image must also get the same tags,
    but for a tag whose probability is within `tolerance` of its threshold.
    """
    from catdog.models.inference import numpy_function

    expected = numpy_function(model)(pixels)
    try:
        outputs = format.outputs(Path(path), pixels)
    except Exception as e:  # any runtime's own error means the file is unusable
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CatdogError(f"the exported {format.name} model at {path} cannot be run with {format.runtime}: "
                          f"{message}") from e
    difference = features = 0.0
    feature_scale = max(1.0, float(np.max(np.abs(expected[FEATURES]))))
    for name, given in outputs.items():
        for output in (PROBABILITIES, FEATURES):
            if output not in given:
                raise CatdogError(f"the exported {format.name} model ({name}) has no {output} output")
            if given[output].shape != expected[output].shape:
                raise CatdogError(f"the exported {format.name} model ({name}) gives {output} of shape "
                                  f"{given[output].shape}, expected {expected[output].shape}")
        difference = max(difference, float(np.max(np.abs(given[PROBABILITIES] - expected[PROBABILITIES]))))
        if detector is not None:
            gap = np.abs(detector.scores(given[FEATURES]) - detector.scores(expected[FEATURES]))
        else:
            gap = np.abs(given[FEATURES] - expected[FEATURES]) / feature_scale
        features = max(features, float(np.max(gap)))
        if thresholds is not None:
            _check_tag_sets(format.name, name, given[PROBABILITIES], expected[PROBABILITIES], thresholds, tolerance)
    features_what = "out-of-distribution scores" if detector is not None else "features"
    for what, value in (("probabilities", difference), (features_what, features)):
        if not value <= tolerance:
            scale = " of their largest value" if what == "features" else ""
            raise CatdogError(f"the exported {format.name} model's {what} differ from the Keras model's by up to "
                              f"{value:.3g}{scale} on {len(pixels)} images (tolerance {tolerance:g}); "
                              "it was not written")
    return difference


def _check_tag_sets(format: str, output: str, given: np.ndarray, expected: np.ndarray, thresholds, tolerance: float):
    """Refuse an export that gives an image other tags than the Keras model, where the Keras
    model's probability is not within `tolerance` of the tag's threshold."""
    thresholds = np.asarray(thresholds)
    differ = ((given >= thresholds) != (expected >= thresholds)) & (np.abs(expected - thresholds) > tolerance)
    if differ.any():
        image, tag = map(int, np.argwhere(differ)[0])
        raise CatdogError(f"the exported {format} model ({output}) gives image {image + 1} other tags than the Keras "
                          f"model (tag {tag + 1}: {given[image, tag]:.3f} against {expected[image, tag]:.3f}, "
                          f"threshold {thresholds[tag]:.3f}); it was not written")


def parity_images(
    run: Run, sources: Sequence[str | os.PathLike] | None = None, count: int = PARITY_IMAGES
) -> tuple[np.ndarray, str]:
    """Up to `count` images to check an export with, and where they came from.

    `sources` (files or folders) if given; else the run's test split, when its files are
    still there; else reproducible noise, so that an export never depends on the data.
    """
    if sources:
        paths, origin = images.find_images(sources), "the given images"
    else:
        paths, origin = _test_split(run), "the run's test split"
    # Every k-th file, so that the check covers every class of a sorted test split.
    readable = _readable(paths[:: max(1, len(paths) // count)], count)
    if readable:
        return images.load_images(readable, run.image_size), origin
    if sources:
        raise CatdogError("none of the images given to check the export with could be read")
    size = run.image_size
    noise = np.random.default_rng(defaults.SEED).integers(0, 256, (count, size, size, 3))
    return noise.astype("float32"), "generated noise images"


def _test_split(run: Run) -> list[str]:
    return _split_files(run, TEST)[0]


def _split_files(run: Run, split: str) -> tuple[list[str], np.ndarray]:
    """The files of one of the run's splits and their class indices; none if the data has gone."""
    nothing = ([], np.zeros(0, dtype="int32"))
    if not run.config.data:
        return nothing
    try:
        return run.manifest().files(split)
    except CatdogError:
        return nothing


def _readable(paths: Sequence, count: int) -> list:
    found = []
    for path in paths:
        try:
            images.inspect_image(path)
        except BadImageError:
            continue
        found.append(path)
        if len(found) == count:
            break
    return found
