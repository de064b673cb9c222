"""Export to SavedModel, TFLite and ONNX, each run with its own runtime and checked against Keras."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from catdog.cli import main
from catdog.data import images
from catdog.deploy.export import check_parity, export, parity_images
from catdog.errors import CatdogError
from catdog.formats import FLOAT_TOLERANCE, FORMATS, QUANTIZED_TOLERANCE
from catdog.models.inference import served
from catdog.runs import Run, RunConfig, TrainSettings

from conftest import write_tiny_run


@pytest.fixture
def photos(reference_data) -> list[Path]:
    validation = reference_data / "validation"
    return [validation / "cats" / f"cat.{n}.jpg" for n in (2003, 2004)] + [validation / "dogs" / "dog.2003.jpg"]


@pytest.fixture
def pixels(photos) -> np.ndarray:
    return images.load_images(photos, 64)


@pytest.fixture(scope="module")
def keras_model(tiny_run):
    return Run.open(tiny_run).keras_model()


def run_savedmodel_as_uint8(path: Path, pixels: np.ndarray) -> dict[str, np.ndarray]:
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures["serving_uint8"]
    return {name: value.numpy() for name, value in serve(images=tf.constant(pixels.astype("uint8"))).items()}


def run_onnx(path: Path, pixels: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"images": pixels})
    assert session.get_outputs()[0].name == "probabilities", "the probabilities come first"
    return {output.name: value for output, value in zip(session.get_outputs(), outputs, strict=True)}


def run_tflite(path: Path, pixels: np.ndarray) -> dict[str, np.ndarray]:
    import tensorflow as tf

    return tf.lite.Interpreter(model_path=str(path)).get_signature_runner()(images=pixels)


def run_openvino(path: Path, pixels: np.ndarray) -> np.ndarray:
    import openvino

    model = openvino.Core().read_model(str(path / "model.xml"))
    model.reshape([len(pixels), *pixels.shape[1:]])
    compiled = openvino.Core().compile_model(model, "CPU")
    results = compiled(pixels)
    return {output.get_any_name(): results[output] for output in compiled.outputs}


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
@pytest.mark.parametrize(
    "format, quantize, name, runtime",
    [
        ("savedmodel", False, "savedmodel", run_savedmodel_as_uint8),
        ("tflite", False, "model.tflite", run_tflite),
        ("tflite", True, "model_int8.tflite", run_tflite),
        ("onnx", False, "model.onnx", run_onnx),
        ("openvino", False, "openvino", run_openvino),
    ],
)
def test_each_format_runs_without_catdog_and_matches_keras(
    tiny_run, keras_model, tmp_path, photos, pixels, format, quantize, name, runtime
):
    out = tmp_path / name
    report = export(tiny_run, format, out=out, quantize=quantize, check_images=photos)

    assert report.path == out and out.exists()
    assert report.size_bytes > 1000
    assert report.quantized is quantize
    assert report.tolerance == (QUANTIZED_TOLERANCE if quantize or format == "openvino" else FLOAT_TOLERANCE)
    assert 0 <= report.max_difference <= report.tolerance
    assert (report.images, report.images_from) == (3, "the given images")
    assert not list(tmp_path.glob(".*.tmp")), "the temporary folder is cleaned up"

    outputs = runtime(out, pixels)
    assert set(outputs) == {"probabilities", "features"}
    assert outputs["probabilities"].shape == (3, 2)
    np.testing.assert_allclose(outputs["probabilities"], keras_model.predict(pixels, verbose=0), atol=report.tolerance)
    # The features the classifier reads (here: the tiny model's pooled convolution), for the out-of-distribution score.
    features = keras.Model(keras_model.input, keras_model.layers[-1].input).predict(pixels, verbose=0)
    assert outputs["features"].shape == (3, 8)
    np.testing.assert_allclose(outputs["features"], features, atol=report.tolerance * max(1, np.abs(features).max()))


def test_the_default_output_is_inside_the_run(tmp_path):
    run = write_tiny_run(tmp_path / "run")
    report = export(run, "onnx")
    assert report.path == run / "export" / "model.onnx"
    assert report.images_from == "generated noise images"
    assert report.path.stat().st_size == report.size_bytes


def test_the_check_uses_the_runs_test_split_when_its_files_exist(tmp_path, tiny_dataset):
    run = write_tiny_run(tmp_path / "run", data=tiny_dataset)
    tests = [f"{label}/{label}.{i}.jpg" for label in ("cats", "dogs") for i in range(3)]
    (run / "splits.csv").write_text("path,class,split\n" + "".join(f"{p},{p.split('/')[0]},test\n" for p in tests))

    pixels, origin = parity_images(Run.open(run))

    assert origin == "the run's test split"
    expected = images.load_images([tiny_dataset / p for p in tests], 64)
    np.testing.assert_array_equal(pixels, expected)


def test_the_check_fails_against_a_different_model(tmp_path, keras_model, pixels):
    other = write_tiny_run(tmp_path / "other", seed=1)
    exported = export(other, "onnx", out=tmp_path / "other.onnx").path

    differ = r"onnx model's probabilities differ from the Keras model's by up to .* on 3 images"
    with pytest.raises(CatdogError, match=differ):
        check_parity(served(keras_model), FORMATS["onnx"], exported, pixels, FLOAT_TOLERANCE)


def test_the_check_fails_on_a_damaged_file(tiny_run, keras_model, tmp_path, pixels):
    exported = export(tiny_run, "tflite", out=tmp_path / "model.tflite").path
    exported.write_bytes(exported.read_bytes()[:500])

    with pytest.raises(CatdogError, match="cannot be run with the TFLite interpreter"):
        check_parity(served(keras_model), FORMATS["tflite"], exported, pixels, FLOAT_TOLERANCE)


def test_an_export_that_fails_its_check_is_not_written(tiny_run, tmp_path, monkeypatch):
    """A converter that got the model wrong (here: it is handed a different model) leaves nothing behind."""
    wrong = Run.open(write_tiny_run(tmp_path / "wrong", seed=2)).keras_model()
    monkeypatch.setattr("catdog.models.inference.exportable", lambda model: served(wrong))
    out = tmp_path / "out" / "savedmodel"

    with pytest.raises(CatdogError, match="savedmodel model's probabilities differ .* it was not written"):
        export(tiny_run, "savedmodel", out=out)
    assert not out.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_augmentation_is_left_out_of_the_exported_graph(tmp_path):
    """ONNX has no random ops: the augmentation, a no-op outside training, must not be traced."""
    from catdog.models import create_model

    model = create_model("augmented", 2, image_size=32, weights="none", seed=0)
    run = tmp_path / "augmented"
    run.mkdir()
    model.save(run / "model.keras")
    settings = TrainSettings.from_dict({"preset": "augmented", "image_size": 32})
    RunConfig(settings, ("cats", "dogs")).write(run / "config.json")

    report = export(run, "onnx")
    assert report.max_difference <= report.tolerance


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"format": "pickle"}, "unknown export format 'pickle'"),
        ({"format": "savedmodel", "quantize": True},
         "quantize is available for the tflite and onnx formats only, not savedmodel"),
        ({"format": "tflite", "out": "model.bin"},
         r"out: the tflite export's file name must end in \.tflite \(got model.bin\)"),
    ],
)
def test_bad_requests_are_clear_errors(tiny_run, kwargs, message):
    with pytest.raises(CatdogError, match=message):
        export(tiny_run, **kwargs)


def test_unreadable_check_images_are_an_error(tiny_run, tmp_path):
    (tmp_path / "notes.jpg").write_text("no image here")
    with pytest.raises(CatdogError, match="none of the images given to check the export with could be read"):
        export(tiny_run, "onnx", out=tmp_path / "m.onnx", check_images=[tmp_path])


def test_cli_prints_the_report(tiny_run, tmp_path, photos, capsys):
    out = tmp_path / "model.tflite"
    command = ["export", str(tiny_run), "--format", "tflite", "--out", str(out), "--check-images", *map(str, photos)]
    assert main(command) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"wrote {out} (tflite, ") and lines[0].endswith(" KB)")
    assert lines[1].startswith("checked on 3 images (the given images): largest probability difference from Keras ")
    assert lines[1].endswith("(tolerance 0.0001)")


def test_cli_json(tiny_run, tmp_path, capsys):
    out = tmp_path / "model_int8.tflite"
    assert main(["export", str(tiny_run), "--format", "tflite", "--quantize", "--out", str(out), "--json"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(out) and report["quantized"] is True
    assert report["size_bytes"] == out.stat().st_size
    assert report["max_difference"] <= report["tolerance"] == QUANTIZED_TOLERANCE


def test_cli_error_is_one_line(tiny_run, capsys):
    assert main(["export", str(tiny_run), "--format", "savedmodel", "--quantize"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "catdog: error: --quantize is available for the tflite and onnx formats only, not savedmodel")


@pytest.fixture
def run_with_splits(tmp_path, tiny_dataset) -> Path:
    """A tiny run whose splits.csv lists 8 training and 4 test images per class of `tiny_dataset`."""
    run = write_tiny_run(tmp_path / "run", data=tiny_dataset)
    rows = [f"{label}/{label}.{i}.jpg,{label},{'train' if i < 8 else 'test'}\n"
            for label in ("cats", "dogs") for i in range(12)]
    (run / "splits.csv").write_text("path,class,split\n" + "".join(rows))
    return run


def test_a_quantized_onnx_export_is_int8_calibrated_scored_and_run_by_default(run_with_splits):
    import onnx

    from catdog.deploy.predict import Predictor

    report = export(run_with_splits, "onnx", quantize=True)

    assert report.path == run_with_splits / "export" / "model_int8.onnx" and report.quantized
    operators = {node.op_type for node in onnx.load(str(report.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= operators
    assert report.max_difference <= report.tolerance
    assert report.test_accuracy >= report.keras_test_accuracy - 0.005
    predictor = Predictor(run_with_splits)
    assert (predictor.runtime, predictor.model_path) == ("onnx", report.path)


def test_a_quantized_export_that_loses_accuracy_is_not_written(run_with_splits, monkeypatch):
    from catdog.deploy import export as export_module

    monkeypatch.setattr(export_module, "MAX_ACCURACY_DROP", -0.01)  # as if it had lost a point
    with pytest.raises(CatdogError, match=r"the exported onnx model scores .* on the test split .* not written"):
        export(run_with_splits, "onnx", quantize=True)
    assert not (run_with_splits / "export" / "model_int8.onnx").exists()
