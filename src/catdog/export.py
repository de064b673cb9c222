"""Export: a run's model in formats that run without catdog, each checked against Keras.

==========  =======================  ==============================================  =================
format      default output           runs with                                       input
==========  =======================  ==============================================  =================
savedmodel  RUN/export/savedmodel/   `tf.saved_model.load` (TF Serving, TF.js, ...)  `serving_default`: float32,
                                                                                      `serving_uint8`: uint8
tflite      RUN/export/model.tflite  the TFLite interpreter (LiteRT)                 float32
onnx        RUN/export/model.onnx    onnxruntime                                     float32
==========  =======================  ==============================================  =================

Every input is a batch of raw pixels, shape (N, S, S, 3) with values 0..255 at the run's
image size S; the model's own preprocessing is part of the exported graph, and every
output is the softmax probabilities (N, classes) in the order of the run's class names.
`quantize` (TFLite only) stores the weights as int8 (dynamic-range quantisation).

After writing, `export` runs the exported model with its own runtime on a few real
images and compares the probabilities with the Keras model's. Only a model within the
format's tolerance is moved into place; otherwise `CatdogError` says by how much it
differs and nothing is written.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from catdog import config, images
from catdog.errors import BadImageError, CatdogError
from catdog.files import atomic_path
from catdog.runs import SPLITS, Run, open_run

FORMATS = config.EXPORT_FORMATS
SUFFIXES = {"savedmodel": "", "tflite": ".tflite", "onnx": ".onnx"}
RUNTIMES = {"savedmodel": "TensorFlow", "tflite": "the TFLite interpreter", "onnx": "onnxruntime"}

# Largest allowed difference in any probability between the export and the Keras model.
# Float exports only reorder float32 arithmetic; int8 weights change the numbers.
TOLERANCE = 1e-4
QUANTIZED_TOLERANCE = 0.1
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
    """Write `run`'s model in `format` to `out`, after checking it against the Keras model.

    The check uses `check_images` (files or folders) if given, else the run's test split
    if its files are still there, else generated noise images.
    """
    if format not in FORMATS:
        raise CatdogError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if quantize and format != "tflite":
        raise CatdogError("quantisation is available for the tflite format only; drop --quantize or use --format tflite")
    run = run if isinstance(run, Run) else open_run(run)
    out = Path(out) if out is not None else default_output(run, format, quantize)
    if SUFFIXES[format] and out.suffix != SUFFIXES[format]:
        raise CatdogError(f"the {format} export's file name must end in {SUFFIXES[format]} (got {out.name})")

    model = run.load_model()
    pixels, images_from = parity_images(run, check_images)
    tolerance = QUANTIZED_TOLERANCE if quantize else TOLERANCE
    with atomic_path(out) as tmp:
        WRITERS[format](inference_model(model), tmp, run.image_size, quantize)
        difference = check_parity(model, tmp, format, pixels, tolerance)
    return ExportReport(format, out, _size(out), quantize, difference, tolerance, len(pixels), images_from)


def default_output(run: Run, format: str, quantize: bool = False) -> Path:
    name = "savedmodel" if format == "savedmodel" else "model_int8" if quantize else "model"
    return run.path / "export" / f"{name}{SUFFIXES[format]}"


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


# Writers ------------------------------------------------------------------------------------


def inference_model(model):
    """`model` with its augmentation replaced by a pass-through, sharing all other layers.

    Augmentation is the identity outside training, but Keras still traces its random ops,
    which some runtimes (onnxruntime) cannot run.
    """
    import keras

    from catdog.models import AUGMENTATION

    def skip_augmentation(layer):
        if layer.name == AUGMENTATION:
            return keras.layers.Lambda(lambda images, mask=None: images, name=AUGMENTATION)
        return layer

    return keras.models.clone_model(model, clone_function=skip_augmentation)


def _image_spec(image_size: int, dtype):
    import tensorflow as tf

    return tf.TensorSpec((None, image_size, image_size, 3), dtype, name="images")


def write_savedmodel(model, path: Path, image_size: int, quantize: bool = False) -> None:
    """A SavedModel with a float32 and a uint8 serving signature, both returning `probabilities`.

    Saved by TensorFlow directly: Keras' `ExportArchive` stores every weight twice.
    """
    import tensorflow as tf

    def signature(dtype):
        return tf.function(
            lambda images: {"probabilities": model(tf.cast(images, tf.float32), training=False)},
            input_signature=[_image_spec(image_size, dtype)],
        )

    module = tf.Module()
    module.model = model
    signatures = {"serving_default": signature(tf.float32), "serving_uint8": signature(tf.uint8)}
    tf.saved_model.save(module, str(path), signatures=signatures)


def write_tflite(model, path: Path, image_size: int, quantize: bool = False) -> None:
    import tensorflow as tf

    options = {"optimizations": [tf.lite.Optimize.DEFAULT]} if quantize else {}
    model.export(str(path), format="litert", verbose=False, input_signature=[_image_spec(image_size, tf.float32)], **options)


def write_onnx(model, path: Path, image_size: int, quantize: bool = False) -> None:
    import tensorflow as tf

    # Keras' compatibility patch for tf2onnx probes `np.object`, which NumPy 2 warns about.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(path), format="onnx", verbose=False, input_signature=[_image_spec(image_size, tf.float32)])


WRITERS = {"savedmodel": write_savedmodel, "tflite": write_tflite, "onnx": write_onnx}


# Runtimes -----------------------------------------------------------------------------------


def run_savedmodel(path: Path, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Probabilities from each serving signature (the uint8 one gets the same pixels as uint8)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    inputs = {"serving_default": pixels, "serving_uint8": pixels.astype("uint8")}
    return {
        name: loaded.signatures[name](images=tf.constant(batch))["probabilities"].numpy()
        for name, batch in inputs.items()
    }


def _tflite_interpreter(path: Path):
    """LiteRT's interpreter when installed, else TensorFlow's copy of it."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    # TensorFlow's copy warns that it is moving to ai-edge-litert; it runs the same models.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
        return Interpreter(model_path=str(path))


def run_tflite(path: Path, pixels: np.ndarray) -> dict[str, np.ndarray]:
    interpreter = _tflite_interpreter(path)
    (image_input,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(image_input["index"], pixels.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(image_input["index"], pixels)
    interpreter.invoke()
    (output,) = interpreter.get_output_details()
    return {"tflite": interpreter.get_tensor(output["index"])}


def onnx_function(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """An onnxruntime session on the ONNX export at `path`, as a function of a pixel batch."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Idle workers would otherwise spin, taking the cores that decode the next batch.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (image_input,) = session.get_inputs()
    return lambda pixels: session.run(None, {image_input.name: pixels})[0]


def run_onnx(path: Path, pixels: np.ndarray) -> dict[str, np.ndarray]:
    return {"onnx": onnx_function(path)(pixels)}


RUNNERS = {"savedmodel": run_savedmodel, "tflite": run_tflite, "onnx": run_onnx}


# The check ----------------------------------------------------------------------------------


def check_parity(model, path: str | os.PathLike, format: str, pixels: np.ndarray, tolerance: float) -> float:
    """Run the export at `path` with its own runtime; the largest difference from `model`'s probabilities.

    Raises `CatdogError` if the export cannot be run, gives the wrong shape, or differs by
    more than `tolerance` in any probability.
    """
    expected = np.asarray(model.predict_on_batch(pixels))
    try:
        outputs = RUNNERS[format](Path(path), pixels)
    except Exception as e:  # any runtime's own error means the file is unusable
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CatdogError(f"the exported {format} model at {path} cannot be run with {RUNTIMES[format]}: {message}") from e
    difference = 0.0
    for name, probabilities in outputs.items():
        if probabilities.shape != expected.shape:
            raise CatdogError(
                f"the exported {format} model ({name}) gives outputs of shape {probabilities.shape}, expected {expected.shape}"
            )
        difference = max(difference, float(np.max(np.abs(probabilities - expected))))
    if not difference <= tolerance:
        raise CatdogError(
            f"the exported {format} model's probabilities differ from the Keras model's by up to {difference:.3g} "
            f"on {len(pixels)} images (tolerance {tolerance:g}); it was not written"
        )
    return difference


def parity_images(
    run: Run, sources: Sequence[str | os.PathLike] | None = None, count: int = PARITY_IMAGES
) -> tuple[np.ndarray, str]:
    """Up to `count` images to check an export with, and where they came from.

    `sources` (files or folders) if given; else the run's test split, when its files are
    still there; else reproducible noise, so that an export never depends on the data.
    """
    from catdog.predict import find_images

    if sources:
        paths, origin = find_images(sources), "the given images"
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
    from catdog.splits import TEST, Manifest

    data = run.config.get("data")
    if not data or not (run.path / SPLITS).is_file():
        return []
    try:
        paths, _ = Manifest.read(run.path / SPLITS, root=data).files(TEST)
    except CatdogError:
        return []
    return paths


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
