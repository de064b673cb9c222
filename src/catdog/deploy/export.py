"""Export: a run's model in a format that runs without catdog, checked against Keras.

    >>> report = export("runs/transfer", "onnx")

The formats, their files and runtimes are the rows of `formats.FORMATS`. After writing,
`export` runs the exported model with its own runtime on a few real images and compares
the probabilities with the Keras model's. Only a model within the format's tolerance is
moved into place; otherwise `CatdogError` says by how much it differs and nothing is
written. `quantize` (formats that allow it) stores the weights as int8.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from catdog import config, runs
from catdog.data import images
from catdog.data.splits import TEST
from catdog.deploy.formats import Format, get_format
from catdog.errors import BadImageError, CatdogError, ParameterError
from catdog.files import atomic_path, check_replaceable
from catdog.runs import Run, open_run

PARITY_IMAGES = 16


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
        raise ParameterError("quantize", f"{{name}} is available for the tflite format only, not {format}")
    run = run if isinstance(run, Run) else open_run(run)
    out = Path(out) if out is not None else spec.default_path(run.path, quantize)
    if spec.suffix and out.suffix != spec.suffix:
        raise ParameterError("out", f"{{name}}: the {format} export's file name must end in {spec.suffix} "
                                    f"(got {out.name})")

    check_replaceable(out, spec.kind)  # before the model is converted, not after
    with runs.locked(run.path):
        return _export(run, spec, out, quantize, check_images)


def _export(run: Run, spec: Format, out: Path, quantize: bool, check_images) -> ExportReport:
    from catdog.models.inference import exportable, mixed_precision

    trained = run.load_model()
    model = exportable(trained)
    # A mixed-precision model is exported in float32 and checked against its float32 self.
    reference = model if mixed_precision(trained) else trained
    pixels, images_from = parity_images(run, check_images)
    tolerance = spec.tolerance(quantize)
    with atomic_path(out, spec.kind) as tmp:
        spec.write(model, tmp, run.image_size, quantize)
        difference = check_parity(reference, spec, tmp, pixels, tolerance)
    return ExportReport(spec.name, out, _size(out), quantize, difference, tolerance, len(pixels), images_from)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def check_parity(model, format: Format, path: str | os.PathLike, pixels: np.ndarray, tolerance: float) -> float:
    """Run the export at `path` with its own runtime; the largest difference from `model`'s probabilities.

    Raises `CatdogError` if the export cannot be run, gives the wrong shape, or differs by
    more than `tolerance` in any probability.
    """
    from catdog.models.inference import numpy_function

    expected = numpy_function(model)(pixels)
    try:
        outputs = format.outputs(Path(path), pixels)
    except Exception as e:  # any runtime's own error means the file is unusable
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CatdogError(f"the exported {format.name} model at {path} cannot be run with {format.runtime}: "
                          f"{message}") from e
    difference = 0.0
    for name, probabilities in outputs.items():
        if probabilities.shape != expected.shape:
            raise CatdogError(f"the exported {format.name} model ({name}) gives outputs of shape "
                              f"{probabilities.shape}, expected {expected.shape}")
        difference = max(difference, float(np.max(np.abs(probabilities - expected))))
    if not difference <= tolerance:
        raise CatdogError(
            f"the exported {format.name} model's probabilities differ from the Keras model's by up to "
            f"{difference:.3g} on {len(pixels)} images (tolerance {tolerance:g}); it was not written"
        )
    return difference


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
    noise = np.random.default_rng(config.SEED).integers(0, 256, (count, size, size, 3))
    return noise.astype("float32"), "generated noise images"


def _test_split(run: Run) -> list[str]:
    if not run.config.data:
        return []
    try:
        return run.manifest().files(TEST)[0]
    except CatdogError:
        return []


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
