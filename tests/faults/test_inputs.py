"""Faults: run folders that lie or are damaged, images as phones and cameras make them, data folders
as archives leave them, and exports of models trained in mixed precision. One line, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from catdog.cli import main
from catdog.data import images
from catdog.data.scan import scan
from catdog.runs import RunConfig, TrainSettings

from conftest import one_line_error, write_image, write_tiny_run


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def edit_config(run: Path, **changes) -> None:
    config = json.loads((run / "config.json").read_text())
    config.update(changes)
    (run / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))


@pytest.mark.parametrize(("edit", "message"), [
    ({"class_names": ["cats", "dogs", "birds"]}, "has 2 outputs but"),
    ({"image_size": 32}, "takes 64x64 images but"),
    ({"image_size": "big"}, "image_size must be a positive whole number, found 'big'"),
    ({"class_names": None}, "has no class_names"),
])
@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_a_run_whose_config_does_not_fit_its_model_is_refused(run_copy, tmp_path, capsys, edit, message, command):
    edit_config(run_copy, **edit)
    photo = write_image(tmp_path / "cat.jpg")
    args = {"predict": [str(photo)], "evaluate": [], "export": ["--format", "onnx"]}[command]
    one_line_error(capsys, main([command, str(run_copy), *args]), message)


def test_an_empty_config_and_resume_on_it_are_one_line(run_copy, capsys):
    (run_copy / "config.json").write_text("{}")
    one_line_error(capsys, main(["predict", str(run_copy), str(run_copy)]), "has no preset, class_names, image_size")
    one_line_error(capsys, main(["train", "--resume", str(run_copy)]), "has no preset, class_names, image_size")


def test_a_corrupt_model_is_named_as_such(run_copy, capsys):
    (run_copy / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    one_line_error(capsys, main(["evaluate", str(run_copy)]), "model.keras is damaged: it is not a .keras archive")
    # A zip, but not of a model.
    import zipfile

    with zipfile.ZipFile(run_copy / "model.keras", "w") as archive:
        archive.writestr("notes.txt", "hello")
    last = one_line_error(capsys, main(["evaluate", str(run_copy)]), "model.keras is not a readable Keras model")
    assert "File not found" not in last


def test_a_model_with_python_code_is_refused_for_what_it_is(tmp_path, capsys):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    run = tmp_path / "run"
    run.mkdir()
    keras.Model(inputs, outputs).save(run / "model.keras")
    RunConfig(TrainSettings.from_dict({"preset": "tiny", "image_size": 16}), ("a", "b")).write(run / "config.json")
    one_line_error(capsys, main(["predict", str(run), str(write_image(tmp_path / "x.png"))]),
                   "contains Python code (a Lambda layer); catdog loads only safe models")


def test_a_macos_metadata_folder_is_not_a_class(tmp_path):
    root = tmp_path / "unzipped"
    for label in ("cats", "dogs"):
        for i in range(3):
            write_image(root / label / f"{i}.jpg")
    write_image(root / "__MACOSX" / "cats" / "._0.jpg")
    found = scan(root)
    assert found.class_names == ["cats", "dogs"]
    assert dict(found.skipped)["__MACOSX"] == "macOS archive metadata"


def test_an_unreadable_or_linked_subfolder_is_reported_not_lost(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for label in ("cats", "dogs"):
        for i in range(3):
            write_image(root / label / f"{i}.jpg")
    write_image(root / "cats" / "locked" / "9.jpg")
    (root / "dogs" / "linked").symlink_to(root / "cats", target_is_directory=True)

    real_scandir = os.scandir

    def scandir(path="."):  # the tests run as root, whom permissions do not stop
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    skipped = dict(scan(root).skipped)
    assert skipped["cats/locked"] == "cannot be read (Permission denied)"
    assert skipped["dogs/linked"] == "a link to a folder (not followed)"


def phone_photo(path: Path, fmt: str) -> np.ndarray:
    """A portrait photo stored sideways with an EXIF orientation, as phones write them; returns
    the upright picture."""
    upright = np.zeros((96, 64, 3), np.uint8)
    upright[:48, :, 0] = 230  # red above, blue below
    upright[48:, :, 2] = 230
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 270 CW to display"
    Image.fromarray(np.rot90(upright, k=-1)).save(path, format=fmt, exif=exif)
    return upright


@pytest.mark.parametrize("suffix, fmt", [(".jpg", "JPEG"), (".webp", "WEBP"), (".tiff", "TIFF")])
def test_phone_photos_train_predict_and_serve_upright_and_alike(tmp_path, suffix, fmt):
    """The same file gives the same, upright pixels to training, prediction and an upload."""
    from catdog.data import load
    from catdog.deploy.predict import Predictor

    root = tmp_path / "data"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(4):
            phone_photo(root / label / f"{i}{suffix}", fmt)
    assert not scan(root).skipped
    photo = root / "a" / f"0{suffix}"

    pixels = images.decode(photo, 32).astype(int)
    assert pixels[:12, :, 0].mean() > 150 and pixels[-12:, :, 2].mean() > 150  # upright: red above blue

    data = load(root, image_size=32, batch_size=16, seed=0, cache=False)
    trained_on = np.concatenate([x for x, _ in data.train.as_numpy_iterator()])
    assert any(np.array_equal(image, pixels) for image in trained_on) or any(
        np.array_equal(image, pixels) for split in (data.validation, data.test) for x, _ in split.as_numpy_iterator()
        for image in x)
    predictor = Predictor(write_tiny_run(tmp_path / "run", image_size=32))
    np.testing.assert_array_equal(predictor.decode_uploads([("p", photo.read_bytes())])[0], pixels)
    (from_path,) = predictor.predict_paths([photo])
    np.testing.assert_allclose(list(from_path["probabilities"].values()),
                               predictor.predict_arrays(pixels[None].astype("float32"))[0], atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "I;16"])
def test_grayscale_and_16_bit_images_keep_working(tmp_path, mode):
    value = 200 if mode == "L" else 200 * 257
    path = tmp_path / "gray.png"
    Image.new(mode, (40, 30), value).save(path)
    assert images.inspect_image(path).format == "PNG"
    np.testing.assert_array_equal(images.decode(path, 8), np.full((8, 8, 3), 200, np.uint8))


@pytest.fixture(scope="module")
def mixed_precision_run(tmp_path_factory):
    from conftest import train

    root = tmp_path_factory.mktemp("colours")
    for label, color in (("red", (210, 60, 40)), ("blue", (40, 80, 210))):
        for i in range(8):
            write_image(root / label / f"{i}.jpg", color=color, seed=i)
    return train("scratch", root, epochs=1, image_size=32, batch_size=8, precision="mixed_bfloat16",
                 out=tmp_path_factory.mktemp("runs") / "bf16")


@pytest.mark.parametrize("format", ["onnx", "tflite"])
def test_a_model_trained_in_mixed_bfloat16_exports_as_float32(mixed_precision_run, format, capsys):
    assert json.loads((mixed_precision_run / "config.json").read_text())["precision"] == "mixed_bfloat16"
    assert main(["export", str(mixed_precision_run), "--format", format, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["max_difference"] <= report["tolerance"] == 1e-4


def test_export_without_its_extra_says_which_to_install(tiny_run, monkeypatch, capsys):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "tf2onnx" else real_find_spec(name, *args))
    one_line_error(capsys, main(["export", str(tiny_run), "--format", "onnx"]),
                   "the onnx format needs tf2onnx, which is not installed; install it with: "
                   "pip install 'catdog[export]'")
