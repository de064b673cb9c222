"""`Run`, the one handle to a run folder: what it reads, once; runs of the previous config.json format
open, resume, predict and serve; and the steps after training completed whichever are missing."""

from __future__ import annotations

import json
import shutil

import httpx
import numpy as np
import pytest

from catdog.cli import main
from catdog.deploy.predict import Predictor
from catdog.deploy.serve.app import create_app
from catdog.errors import CatdogError
from catdog.runs import Run, as_run, folder
from catdog.workflow import STEPS, finish, is_finished, missing_steps

from conftest import live_server, one_line_error, train, write_image

STEP_OUTPUTS = [name for step in STEPS for name in step.outputs]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, colours):
    return train("scratch", colours, epochs=2, image_size=32, batch_size=8, seed=3,
                 out=tmp_path_factory.mktemp("runs") / "scratch")


def test_a_run_is_read_once_and_loads_its_model_once(finished_run, monkeypatch):
    import keras

    loads, reads = [], []
    real_load, real_read = keras.saving.load_model, folder.read_json
    monkeypatch.setattr(keras.saving, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    monkeypatch.setattr(folder, "read_json", lambda path: reads.append(path.name) or real_read(path))
    run = as_run(finished_run)
    assert as_run(run) is run
    app = create_app(run, runtime="keras")  # the Keras runtime: a predictor, and the explainer on demand
    photo = write_image(finished_run.parent / "red.jpg", color=(210, 60, 40))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        files = {"files": ("red.jpg", photo.read_bytes(), "image/jpeg")}
        assert client.post("/predict", files=files).status_code == 200
        assert client.post("/explain", files=files).status_code == 200
    assert len(loads) == 1 and reads.count(folder.CALIBRATION_FILE) == 1


def test_a_run_of_the_previous_format_opens_resumes_predicts_and_serves(finished_run, tmp_path, capsys):
    """catdog 0.1's config.json (format 1): no format_version, backbone, stages, precision or class
    weights; and its run folder had no calibration, detector or reliability diagram."""
    old = tmp_path / "old"
    shutil.copytree(finished_run, old)
    recorded = json.loads((old / "config.json").read_text())
    kept = ("preset", "class_names", "image_size", "data", "epochs", "batch_size", "seed", "weights", "learning_rate")
    (old / "config.json").write_text(json.dumps({key: recorded[key] for key in kept}))
    for name in ("calibration.json", "ood.npz", "reliability.png"):
        (old / name).unlink()

    run = Run.open(old)
    assert run.settings.class_weight == "none" and run.temperature == 1.0 and run.detector is None
    assert [step.name for step in missing_steps(run)] == ["calibrate", "curves", "score"]
    (prediction,) = Predictor(old).predict_paths([write_image(tmp_path / "blue.jpg", color=(40, 80, 210))])
    assert prediction["label"] in ("blue", "red") and prediction["ood_score"] is None
    with live_server(create_app(old)) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.get("/model").json()["classes"] == ["blue", "red"]

    assert main(["train", "--resume", str(old)]) == 0
    capsys.readouterr()
    opened = Run.open(old)
    assert is_finished(opened) and opened.detector is not None
    assert (old / "reliability.png").is_file() and json.loads((old / "metrics.json").read_text())["calibration"]
    one_line_error(capsys, main(["train", "--resume", str(old)]), "already finished its 2 epochs")


def test_finish_completes_only_the_steps_a_run_is_missing(finished_run, tmp_path):
    run_folder = tmp_path / "run"
    shutil.copytree(finished_run, run_folder)
    before = {name: (run_folder / name).stat().st_mtime_ns for name in STEP_OUTPUTS}
    (run_folder / "loss.png").unlink()
    (run_folder / "metrics.json").touch()  # newer: still done
    assert [step.name for step in missing_steps(Run.open(run_folder))] == ["curves", "score"]  # after a redone step
    finish(run_folder)
    after = {name: (run_folder / name).stat().st_mtime_ns for name in STEP_OUTPUTS}
    assert after["calibration.json"] == before["calibration.json"] and after["ood.npz"] == before["ood.npz"]
    assert after["accuracy.png"] > before["accuracy.png"] and after["metrics.json"] > before["metrics.json"]
    assert is_finished(Run.open(run_folder))


def test_the_run_hands_out_its_model_for_a_runtime(finished_run):
    run = Run.open(finished_run)
    model = run.model("keras")
    pixels = np.full((2, 32, 32, 3), 128.0, "float32")
    outputs = model(pixels)
    assert model.runtime == "keras" and set(outputs) == {"probabilities", "features"}
    np.testing.assert_allclose(outputs["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    assert run.runtime_for("auto") == ("keras", run.model_path)  # no export yet
    with pytest.raises(CatdogError, match="has no onnx export newer than its model"):
        run.model("onnx")


def test_a_path_that_is_no_run_is_one_line(tmp_path):
    with pytest.raises(CatdogError, match="is not a catdog run folder: it has no config.json"):
        Run.open(tmp_path)
    with pytest.raises(CatdogError, match="does not exist"):
        Run.open(tmp_path / "nowhere")


def test_debug_prints_the_traceback_and_its_cause_under_the_one_line_error(tmp_path, capsys, monkeypatch):
    (tmp_path / "config.json").write_text("{not json")
    args = ["evaluate", str(tmp_path)]
    last = one_line_error(capsys, main(args), "is not valid JSON")
    assert main(["--debug", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(last + "\n") and "Traceback" in err and "JSONDecodeError" in err
    assert main([*args, "--debug"]) == 2 and "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("CATDOG_DEBUG", "1")
    assert main(args) == 2 and "Traceback" in capsys.readouterr().err
