"""Prediction on real photographs: the Python API and `catdog predict`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from catdog.cli import main
from catdog.data import images
from catdog.data.images import find_images
from catdog.deploy.export import export
from catdog.deploy.predict import Predictor
from catdog.errors import BadImageError, CatdogError
from catdog.runs import Run

from conftest import write_tiny_run


@pytest.fixture(scope="module")
def predictor(tiny_run) -> Predictor:
    return Predictor(tiny_run)


@pytest.fixture
def photos(reference_data) -> list[Path]:
    validation = reference_data / "validation"
    return [validation / "cats" / "cat.2000.jpg", validation / "cats" / "cat.2001.jpg",
            validation / "dogs" / "dog.2000.jpg"]


@pytest.fixture
def photo_folder(tmp_path, photos) -> Path:
    """Real photos in a folder tree, plus a truncated JPEG and a text file."""
    root = tmp_path / "photos"
    (root / "more").mkdir(parents=True)
    shutil.copy(photos[0], root / "b.jpg")
    shutil.copy(photos[1], root / "more" / "a.jpg")
    shutil.copy(photos[2], root / "a.jpg")
    (root / "broken.jpg").write_bytes(photos[0].read_bytes()[:2000])
    (root / "notes.txt").write_text("not an image, and not in an image's clothes either")
    return root


def test_predictions_match_the_model_on_real_photos(predictor, photos):
    results = list(predictor.predict_paths(photos, batch_size=2))

    assert [r["path"] for r in results] == [str(p) for p in photos]
    assert predictor.runtime == "keras"
    model = Run.open(predictor.run.path).keras_model()
    expected = model.predict(images.load_images(photos, predictor.image_size), verbose=0)
    for result, probabilities in zip(results, expected, strict=True):
        assert set(result["probabilities"]) == {"cats", "dogs"}
        assert list(result["probabilities"].values()) == pytest.approx(probabilities.tolist(), abs=1e-6)
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert result["label"] == predictor.class_names[int(np.argmax(probabilities))]
        assert result["probability"] == max(result["probabilities"].values())


def test_batches_give_the_same_answers_as_one_image_at_a_time(predictor, photo_folder):
    one_by_one = list(predictor.predict_paths([photo_folder], batch_size=1))
    batched = list(predictor.predict_paths([photo_folder], batch_size=8))

    assert [r["path"] for r in batched] == [r["path"] for r in one_by_one]
    for a, b in zip(batched, one_by_one, strict=True):
        assert a["label"] == b["label"]
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-6)


def test_folders_are_searched_recursively_in_order_and_bad_files_skipped(predictor, photo_folder):
    skipped = []
    results = list(predictor.predict_paths([photo_folder], on_skip=lambda path, reason: skipped.append((path, reason))))

    names = [Path(r["path"]).relative_to(photo_folder).as_posix() for r in results]
    assert names == ["a.jpg", "b.jpg", "more/a.jpg"]
    assert skipped == [(str(photo_folder / "broken.jpg"), "truncated or corrupt JPEG")]


def test_find_images_keeps_named_files_whatever_their_suffix(photo_folder):
    found = find_images([photo_folder / "notes.txt", photo_folder / "more"])
    assert found == [photo_folder / "notes.txt", photo_folder / "more" / "a.jpg"]


def test_predict_bytes_matches_predict_paths(predictor, photos):
    uploads = [(p.name, p.read_bytes()) for p in photos]
    from_bytes = predictor.predict_bytes(uploads)
    from_paths = list(predictor.predict_paths(photos))

    assert [r["path"] for r in from_bytes] == [p.name for p in photos]
    for a, b in zip(from_bytes, from_paths, strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-6)


def test_predict_bytes_names_the_bad_upload(predictor, photos):
    with pytest.raises(BadImageError) as raised:
        predictor.predict_bytes([("cat.jpg", photos[0].read_bytes()), ("notes.txt", b"hello")])
    assert raised.value.path == "notes.txt"
    assert raised.value.reason == "not an image"


def test_predict_arrays_checks_the_shape(predictor):
    with pytest.raises(CatdogError, match=r"expected images of shape \(N, 64, 64, 3\)"):
        predictor.predict_arrays(np.zeros((2, 32, 32, 3), dtype="float32"))


def test_cli_prints_one_line_per_image_and_skips_on_stderr(tiny_run, photo_folder, capsys):
    assert main(["predict", str(tiny_run), str(photo_folder), "--batch-size", "2"]) == 0

    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{photo_folder / 'a.jpg'}: ")
    assert all(line.endswith("%)") and (": cats (" in line or ": dogs (" in line) for line in lines)
    assert f"skipping {photo_folder / 'broken.jpg'}: truncated or corrupt JPEG" in err


def test_cli_json_prints_one_object_per_line(tiny_run, photos, capsys):
    assert main(["predict", str(tiny_run), *map(str, photos), "--json"]) == 0

    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in photos]
    for record in records:
        assert set(record) == {"path", "label", "probability", "probabilities", "ood_score", "in_distribution"}
        assert record["probability"] == record["probabilities"][record["label"]]
        assert record["ood_score"] is None and record["in_distribution"] is None  # the tiny run has no detector


def test_cli_fails_when_nothing_can_be_predicted(tiny_run, photo_folder, capsys):
    code = main(["predict", str(tiny_run), str(photo_folder / "broken.jpg"), str(photo_folder / "missing.jpg")])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert "catdog: error: no image could be predicted (2 unreadable)" in err
    assert "missing.jpg: cannot be read" in err


def test_cli_reports_a_folder_without_images(tiny_run, tmp_path, capsys):
    assert main(["predict", str(tiny_run), str(tmp_path)]) == 2
    assert "no image files found" in capsys.readouterr().err


def test_cli_reports_a_missing_run(tmp_path, photos, capsys):
    assert main(["predict", str(tmp_path / "nope"), str(photos[0])]) == 2
    assert "run folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory) -> Path:
    """A tiny run with an ONNX export at its default place."""
    run = write_tiny_run(tmp_path_factory.mktemp("runs") / "exported")
    export(run, "onnx")
    return run


def test_auto_runs_an_up_to_date_onnx_export_with_the_same_answers(exported_run, photo_folder):
    with_onnx = Predictor(exported_run)
    with_keras = Predictor(exported_run, runtime="keras")

    assert (with_onnx.runtime, with_onnx.model_path) == ("onnx", exported_run / "export" / "model.onnx")
    assert with_keras.runtime == "keras"
    onnx_results = list(with_onnx.predict_paths([photo_folder]))
    keras_results = list(with_keras.predict_paths([photo_folder]))
    assert [r["path"] for r in onnx_results] == [r["path"] for r in keras_results]
    for a, b in zip(onnx_results, keras_results, strict=True):
        assert a["label"] == b["label"]
        assert list(a["probabilities"].values()) == pytest.approx(list(b["probabilities"].values()), abs=1e-4)


def test_an_export_older_than_the_model_is_not_used(exported_run, tmp_path):
    run = tmp_path / "retrained"
    shutil.copytree(exported_run, run)
    onnx_file = run / "export" / "model.onnx"
    model_time = (run / "model.keras").stat().st_mtime
    os.utime(onnx_file, (model_time - 60, model_time - 60))  # as if the model was trained again after export

    assert Predictor(run).runtime == "keras"
    advice = r"no onnx export newer than its model; write one with: catdog export .* --format onnx"
    with pytest.raises(CatdogError, match=advice):
        Predictor(run, runtime="onnx")


def test_runtime_onnx_without_an_export_says_how_to_make_one(tiny_run, photos, capsys):
    assert main(["predict", str(tiny_run), str(photos[0]), "--runtime", "onnx"]) == 2
    assert f"catdog export {tiny_run} --format onnx" in capsys.readouterr().err


def test_cli_says_which_runtime_runs_the_model(exported_run, photos, capsys):
    assert main(["predict", str(exported_run), str(photos[0])]) == 0
    assert f"running {exported_run / 'export' / 'model.onnx'} with onnx" in capsys.readouterr().err

    assert main(["predict", str(exported_run), str(photos[0]), "--runtime", "keras"]) == 0
    assert f"running {exported_run / 'model.keras'} with keras" in capsys.readouterr().err


def test_predict_on_an_onnx_export_never_imports_tensorflow(exported_run, photos):
    """The command's start-up: with an export, no TensorFlow (nor Keras) is loaded at all."""
    import subprocess
    import sys

    script = ("import sys; from catdog.cli import main; code = main(sys.argv[1:]); "
              "sys.exit(code or 3 * any(m in sys.modules for m in ('tensorflow', 'keras')))")
    done = subprocess.run([sys.executable, "-c", script, "predict", str(exported_run), *map(str, photos), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    predicted = [json.loads(line) for line in done.stdout.splitlines()]
    expected = list(Predictor(exported_run, runtime="keras").predict_paths(photos))
    assert [p["label"] for p in predicted] == [e["label"] for e in expected]
    for a, b in zip(predicted, expected, strict=True):
        assert list(a["probabilities"].values()) == pytest.approx(list(b["probabilities"].values()), abs=1e-4)


def test_training_and_prediction_see_the_same_pixels(reference_data):
    """Prediction decodes with Pillow alone (no TensorFlow); the training and evaluation
    pipeline decodes the same files to exactly the same pixels."""
    from catdog.data.pipeline import make_dataset

    paths = sorted(str(p) for p in (reference_data / "validation" / "cats").glob("*.jpg"))[:6]
    (batch, _), = make_dataset(paths, [0] * len(paths), 224, batch_size=len(paths), shuffle=False).take(1)
    np.testing.assert_array_equal(batch.numpy(), images.load_images(paths, 224))
    np.testing.assert_array_equal(batch.numpy()[0], images.decode(paths[0], 224))


def test_auto_prefers_an_openvino_export_to_an_onnx_one(exported_run, tmp_path, photos):
    run = tmp_path / "both"
    shutil.copytree(exported_run, run)
    export(run, "openvino")

    with_openvino = Predictor(run)
    assert (with_openvino.runtime, with_openvino.model_path) == ("openvino", run / "export" / "openvino")
    expected = list(Predictor(run, runtime="keras").predict_paths(photos))
    for a, b in zip(with_openvino.predict_paths(photos), expected, strict=True):
        assert list(a["probabilities"].values()) == pytest.approx(list(b["probabilities"].values()), abs=0.1)
