"""A run trained on real photographs, trusted: its temperature and out-of-distribution detector
are fitted after training, stored, and applied by evaluation, prediction and the exports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from catdog.cli import main
from catdog.data import images, load
from catdog.deploy.export import export
from catdog.deploy.predict import Predictor
from catdog.errors import CatdogError
from catdog.models.inference import numpy_function, served
from catdog.runs import Run
from catdog.trust import calibration
from catdog.workflow import fit_trust

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(trusted_run):
    opened = Run.open(trusted_run)
    return load(opened.config.data, image_size=opened.image_size, batch_size=16, manifest=opened.manifest())


@pytest.fixture
def cat(reference_data) -> Path:
    return reference_data / "validation" / "cats" / "cat.2005.jpg"


def outputs_of(run: Path, dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The uncalibrated probabilities, features and labels of the run's saved model on `dataset`."""
    model = numpy_function(served(Run.open(run).keras_model()))
    parts = [(model(x), y) for x, y in dataset.as_numpy_iterator()]
    return (np.concatenate([p["probabilities"] for p, _ in parts]), np.concatenate([p["features"] for p, _ in parts]),
            np.concatenate([y for _, y in parts]))


def test_the_temperature_and_threshold_are_fitted_on_the_validation_split(trusted_run, data):
    trust = Run.open(trusted_run)
    probabilities, features, labels = outputs_of(trusted_run, data.validation)

    kept, checked = calibration.calibrate(probabilities, labels, seed=Run.open(trusted_run).settings.seed)
    assert trust.temperature == pytest.approx(kept, rel=1e-3)
    recorded = json.loads((trusted_run / "calibration.json").read_text())
    assert recorded["validation"]["loss_held_out"] == pytest.approx(checked["loss_held_out"], rel=1e-3)
    assert recorded["validation"]["loss_calibrated"] <= recorded["validation"]["loss"]
    # A temperature is kept only where it also lowers the loss and the calibration error of validation images
    # it was not fitted on.
    fitted = calibration.fit_temperature(probabilities, labels)
    held_out_better = (checked["loss_held_out_calibrated"] < checked["loss_held_out"]
                       and checked["ece_held_out_calibrated"] < checked["ece_held_out"])
    assert recorded["validation"]["kept"] == held_out_better
    assert trust.temperature == pytest.approx(fitted if held_out_better else 1.0, rel=1e-3)
    assert trust.detector.method == "knn" and trust.detector.rate == 0.05
    assert np.mean(trust.detector.scores(features) > 1) <= 0.05


def test_metrics_give_the_expected_calibration_error_before_and_after_on_the_test_split(trusted_run, data):
    metrics = json.loads((trusted_run / "metrics.json").read_text())
    probabilities, features, labels = outputs_of(trusted_run, data.test)
    temperature = Run.open(trusted_run).temperature

    assert metrics["calibration"] == {
        "temperature": pytest.approx(temperature),
        "ece": pytest.approx(calibration.expected_calibration_error(calibration.scale(probabilities, temperature),
                                                                      labels), abs=1e-5),
        "ece_uncalibrated": pytest.approx(calibration.expected_calibration_error(probabilities, labels), abs=1e-5),
    }
    assert metrics["loss"] == pytest.approx(calibration.negative_log_likelihood(
        calibration.scale(probabilities, temperature), labels), abs=1e-5)
    assert metrics["ood"]["flagged"] == pytest.approx(np.mean(Run.open(trusted_run).detector.scores(features) > 1))
    assert (trusted_run / "reliability.png").read_bytes().startswith(b"\x89PNG")


def test_stored_features_give_the_same_fit_as_running_the_model_again(trusted_run, data, tmp_path):
    """The calibration step fits from the head inputs training stored; without them the model runs again."""
    again = tmp_path / "run"
    shutil.copytree(trusted_run, again)
    fit_trust(Run.open(again))  # no stored head inputs: every image through the model
    refitted, trained = Run.open(again), Run.open(trusted_run)

    assert refitted.temperature == pytest.approx(trained.temperature, rel=1e-4)
    assert refitted.detector.threshold == pytest.approx(trained.detector.threshold, rel=1e-4)


def test_predictions_are_calibrated_and_flag_a_photo_of_something_else(trusted_run, cat, other_photo):
    predictor = Predictor(trusted_run, runtime="keras")
    hopper, cat_result = predictor.predict_paths([other_photo, cat])

    assert hopper["in_distribution"] is False and hopper["ood_score"] > 1
    assert hopper["label"] in ("cats", "dogs")  # flagged, but still labelled without --reject-unknown
    assert cat_result["in_distribution"] is True and cat_result["ood_score"] <= 1 and cat_result["label"] == "cats"
    raw = Run.open(trusted_run).keras_model().predict(images.load_images([other_photo, cat], 224), verbose=0)
    calibrated = calibration.scale(raw, Run.open(trusted_run).temperature)
    for result, expected in zip((hopper, cat_result), calibrated, strict=True):
        assert list(result["probabilities"].values()) == pytest.approx(expected.tolist(), abs=1e-5)


def test_the_onnx_export_gives_the_same_calibrated_probabilities_and_scores(trusted_run, tmp_path, cat, other_photo):
    run = tmp_path / "run"
    shutil.copytree(trusted_run, run)
    report = export(run, "onnx")
    assert report.max_difference <= report.tolerance and report.images_from == "the run's test split"

    with_onnx, with_keras = Predictor(run), Predictor(run, runtime="keras")
    assert with_onnx.runtime == "onnx"
    for a, b in zip(with_onnx.predict_paths([other_photo, cat]), with_keras.predict_paths([other_photo, cat]),
                    strict=True):
        assert list(a["probabilities"].values()) == pytest.approx(list(b["probabilities"].values()), abs=1e-4)
        assert a["ood_score"] == pytest.approx(b["ood_score"], abs=1e-4)
        assert a["in_distribution"] == b["in_distribution"]

    # A new temperature makes the export out of date: it has the old one inside.
    (run / "calibration.json").write_text(json.dumps({"temperature": 3.0}))
    assert Predictor(run).runtime == "keras"


def test_test_time_augmentation_averages_the_image_and_its_mirror(trusted_run, cat):
    plain = Predictor(trusted_run, runtime="keras")
    pixels = images.load_images([cat], 224)
    expected = (plain.predict_arrays(pixels) + plain.predict_arrays(pixels[:, :, ::-1])) / 2

    (result,) = Predictor(trusted_run, runtime="keras", tta=True).predict_paths([cat])
    assert list(result["probabilities"].values()) == pytest.approx(expected[0].tolist(), abs=1e-6)
    assert result["ood_score"] == pytest.approx(next(plain.predict_paths([cat]))["ood_score"], abs=1e-6)


def test_cli_marks_rejects_and_doubts(trusted_run, cat, other_photo, capsys):
    assert main(["predict", str(trusted_run), str(other_photo), str(cat)]) == 0
    hopper_line, cat_line = capsys.readouterr().out.splitlines()
    assert hopper_line.startswith(f"{other_photo}: ") and hopper_line.endswith("%), unlike the training images")
    assert cat_line.startswith(f"{cat}: cats (") and "unlike" not in cat_line

    assert main(["predict", str(trusted_run), str(other_photo), str(cat), "--reject-unknown", "--json"]) == 0
    hopper, cat_result = map(json.loads, capsys.readouterr().out.splitlines())
    assert hopper["label"] == "unknown" and hopper["in_distribution"] is False
    assert cat_result["label"] == "cats"

    assert main(["predict", str(trusted_run), str(other_photo), "--reject-unknown"]) == 0
    best = max(hopper["probabilities"], key=hopper["probabilities"].get)
    expected = f"{other_photo}: unknown (unlike the training images; {best} {hopper['probability']:.1%})"
    assert capsys.readouterr().out.strip() == expected

    above = min(1.0, cat_result["probability"] + 1e-4)
    assert main(["predict", str(trusted_run), str(cat), "--min-confidence", str(above)]) == 0
    assert capsys.readouterr().out.strip() == f"{cat}: unsure (cats {cat_result['probability']:.1%})"
    below = cat_result["probability"] - 1e-4
    assert main(["predict", str(trusted_run), str(cat), "--min-confidence", str(below), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == "cats"


def test_cli_evaluate_with_tta_reports_calibration_and_flags(trusted_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trusted_run, run)
    assert main(["evaluate", str(run), "--tta"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tta"] is True
    assert "with test-time augmentation" in out.splitlines()[0]
    calibrated = metrics["calibration"]
    assert (f"calibration: temperature {calibrated['temperature']:.3f}, expected calibration error "
            f"{calibrated['ece']:.2%} ({calibrated['ece_uncalibrated']:.2%} uncalibrated)") in out
    assert f"unlike the training images: {metrics['ood']['flagged']:.1%} of these (knn; " in out


def test_a_run_without_trust_statistics_predicts_and_resume_adds_them(trusted_run, tmp_path, cat, capsys):
    run = tmp_path / "run"
    shutil.copytree(trusted_run, run)
    for name in ("calibration.json", "ood.npz", "reliability.png"):
        (run / name).unlink()  # as a run trained before catdog had them

    (result,) = Predictor(run).predict_paths([cat])
    assert result["ood_score"] is None and result["in_distribution"] is None
    with pytest.raises(CatdogError, match=f"no out-of-distribution detector .* catdog train --resume {run}"):
        Predictor(run, reject_unknown=True)

    assert main(["train", "--resume", str(run)]) == 0
    assert {"calibration.json", "ood.npz", "reliability.png"} <= {p.name for p in run.iterdir()}
    assert Run.open(run).temperature == pytest.approx(Run.open(trusted_run).temperature, rel=1e-4)
    assert main(["train", "--resume", str(run)]) == 2
    assert "already finished" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "message"), [
    (["predict", "RUN", "IMAGE", "--min-confidence", "1.5"], "argument --min-confidence: 1.5 is not a probability"),
    (["predict", "RUN", "IMAGE", "--min-confidence", "0"], "argument --min-confidence: 0 is not a finite number"),
    (["train", "--model", "transfer", "--ood-rate", "2", "--out", "OUT"],
     "--ood-rate must be a share of false alarms between 0 and 1"),
    (["train", "--model", "transfer", "--ood-method", "forest", "--out", "OUT"],
     "argument --ood-method: invalid choice"),
])
def test_bad_trust_options_are_one_line_errors(command, message, trusted_run, cat, tmp_path, capsys):
    values = {"RUN": str(trusted_run), "IMAGE": str(cat), "OUT": str(tmp_path / "new")}
    assert main([values.get(part, part) for part in command]) == 2
    err = capsys.readouterr().err
    assert err.startswith("catdog: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "new").exists()
