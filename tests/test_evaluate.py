"""Evaluation: the metrics themselves, `catdog evaluate` on real photographs, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from catdog.cli import main
from catdog.evaluation import metrics_from, misclassified_files, score
from catdog.report import plots

from conftest import train, write_image, write_tiny_run


def test_metrics_count_per_class_precision_recall_and_the_confusion_matrix():
    true = np.array([0, 0, 0, 1, 1, 2])
    probabilities = np.eye(3)[[0, 0, 1, 1, 2, 2]] * 0.8 + 0.2 / 3
    metrics = metrics_from(true, probabilities, ["a", "b", "c"])

    assert metrics["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert metrics["accuracy"] == pytest.approx(4 / 6) and metrics["n"] == 6
    assert metrics["loss"] == pytest.approx(-(4 * np.log(0.8 + 0.2 / 3) + 2 * np.log(0.2 / 3)) / 6)
    a, b, c = (metrics["per_class"][name] for name in "abc")
    assert (a["precision"], a["recall"], a["n"]) == (1.0, pytest.approx(2 / 3), 3)
    assert (b["precision"], b["recall"], b["n"]) == (0.5, 0.5, 2)
    assert (c["precision"], c["recall"], c["f1"]) == (0.5, 1.0, pytest.approx(2 / 3))


def test_many_class_metrics_weigh_every_class_alike():
    """Six classes, a large one always right and five small ones mostly wrong: accuracy flatters, balanced
    accuracy and macro F1 do not; top-5 and the most confused pairs are counted by hand."""
    true = np.array([0] * 10 + [1, 1, 2, 2, 3, 4])  # class 5 never occurs, but is predicted once
    predicted = np.array([0] * 10 + [1, 2, 1, 1, 5, 0])
    probabilities = np.full((16, 6), 0.02)
    probabilities[np.arange(16), predicted] = 0.9
    probabilities[14, 3] = 0.05  # class 3's image ranks its true class second: in the top 5
    probabilities[15, 4] = 0.01  # class 4's image ranks its true class last: not in the top 5
    metrics = metrics_from(true, probabilities, list("abcdef"))

    assert metrics["accuracy"] == pytest.approx(11 / 16)
    recalls = {"a": 1.0, "b": 0.5, "c": 0.0, "d": 0.0, "e": 0.0}
    assert metrics["balanced_accuracy"] == pytest.approx(sum(recalls.values()) / 5)  # f has no images
    precisions = {"a": 10 / 11, "b": 1 / 3, "c": 0.0, "d": 0.0, "e": 0.0, "f": 0.0}
    f1 = {"a": 2 * (10 / 11) / (1 + 10 / 11), "b": 2 * (1 / 3 * 0.5) / (1 / 3 + 0.5)}
    assert metrics["macro_precision"] == pytest.approx(sum(precisions.values()) / 6)  # f was predicted: it counts
    assert metrics["macro_recall"] == pytest.approx(sum(recalls.values()) / 6)
    assert metrics["macro_f1"] == pytest.approx(sum(f1.values()) / 6)
    assert metrics["top_5_accuracy"] == pytest.approx(15 / 16)
    assert metrics["most_confused"] == [
        {"true": "c", "predicted": "b", "count": 2}, {"true": "b", "predicted": "c", "count": 1},
        {"true": "d", "predicted": "f", "count": 1}, {"true": "e", "predicted": "a", "count": 1}]
    assert "top_5_accuracy" not in metrics_from(true[:10], probabilities[:10, :5], list("abcde"))


def test_the_confusion_matrix_of_120_classes_gives_each_class_a_readable_row(tmp_path):
    from PIL import Image

    names = [f"breed_{i:03d}" for i in range(120)]
    matrix = np.diag(np.arange(120) % 5 + 1)
    matrix[3, 70] = 2
    path = plots.confusion_matrix(matrix, names, tmp_path / "confusion.png")
    with Image.open(path) as image:
        assert image.height / 120 >= 12 and image.width < 4000  # pixels per class row (its name in 8 points)


def _photos(folder: Path, reference_data: Path, split: str, numbers: range) -> Path:
    """A folder of class folders linking to real photographs of the reference data set."""
    for name in ("cats", "dogs"):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for n in numbers:
            (folder / name / f"{name[:-1]}.{n}.jpg").symlink_to(reference_data / split / name / f"{name[:-1]}.{n}.jpg")
    return folder


def test_misclassified_files_are_listed_most_confident_first():
    true = np.array([0, 1, 1, 0])
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])
    assert misclassified_files(["a.jpg", "b.jpg", "c.jpg", "d.jpg"], true, probabilities, ["cats", "dogs"]) == [
        {"path": "d.jpg", "true": "cats", "predicted": "dogs", "probability": 0.7},
        {"path": "b.jpg", "true": "dogs", "predicted": "cats", "probability": 0.6},
    ]


def fixed_model(images):
    """Answers every image with the probabilities of its first pixel's first two values."""
    return images[:, 0, 0, :2]


def test_score_lists_mistakes_only_when_the_paths_line_up(caplog):
    import tensorflow as tf

    images = np.zeros((3, 2, 2, 3), "float32")
    images[:, 0, 0, :2] = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]
    dataset = tf.data.Dataset.from_tensor_slices((images, np.array([0, 1, 1], "int32"))).batch(2)

    metrics, mistakes = score(fixed_model, dataset, ["cats", "dogs"], paths=["x", "y", "z"])
    assert metrics["misclassified"] == [{"path": "y", "true": "dogs", "predicted": "cats",
                                         "probability": pytest.approx(0.8)}]
    assert [(m.true, m.predicted) for m in mistakes] == [("dogs", "cats")]

    metrics, _ = score(fixed_model, dataset, ["cats", "dogs"], paths=["x", "y", "z", "dropped"])
    assert "misclassified" not in metrics and "not listed" in caplog.text
    assert "misclassified" not in score(fixed_model, dataset, ["cats", "dogs"])[0]


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory, reference_data, shared_weights):
    """`transfer` trained for 10 (fast) epochs on 40 real photographs per class (28 train, 6 validation, 6 test)."""
    root = tmp_path_factory.mktemp("photos")
    data = _photos(root / "data", reference_data, "train", range(40))
    return train("transfer", data, epochs=10, batch_size=16, weights=shared_weights, out=root / "run")


@pytest.mark.slow
def test_evaluate_scores_the_test_split_of_real_photographs(photo_run, capsys):
    metrics = json.loads((photo_run / "metrics.json").read_text())
    assert metrics["n"] == 12 and metrics["data"] == "test split"
    assert metrics["accuracy"] >= 0.8

    assert main(["evaluate", str(photo_run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["accuracy"] == metrics["accuracy"] and again["loss"] == pytest.approx(metrics["loss"], abs=1e-6)
    for name in ("confusion_matrix.png", "misclassified.png"):
        assert (photo_run / name).stat().st_size > 0
    assert len(metrics["misclassified"]) == round(metrics["n"] * (1 - metrics["accuracy"]))


@pytest.mark.slow
def test_evaluate_on_a_folder_never_seen_in_training(photo_run, reference_data, tmp_path, capsys):
    unseen = _photos(tmp_path / "unseen", reference_data, "validation", range(2000, 2010))
    assert main(["evaluate", str(photo_run), "--data", str(unseen)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{unseen}: accuracy ") and "20 images" in out

    metrics = json.loads((photo_run / "evaluation-unseen" / "metrics.json").read_text())
    assert metrics["n"] == 20 and metrics["accuracy"] >= 0.8
    assert {name: row["n"] for name, row in metrics["per_class"].items()} == {"cats": 10, "dogs": 10}
    assert json.loads((photo_run / "metrics.json").read_text())["data"] == "test split"


@pytest.mark.slow
def test_evaluate_names_the_misclassified_files(photo_run, reference_data, tmp_path, capsys):
    # Dogs filed as cats and cats as dogs: a good model gets (nearly) every one "wrong".
    swapped = tmp_path / "swapped"
    for name, other in (("cats", "dogs"), ("dogs", "cats")):
        (swapped / name).mkdir(parents=True)
        for n in range(2000, 2012):
            photo = f"{other[:-1]}.{n}.jpg"
            (swapped / name / photo).symlink_to(reference_data / "validation" / other / photo)
    assert main(["evaluate", str(photo_run), "--data", str(swapped)]) == 0
    out = capsys.readouterr().out

    metrics = json.loads((photo_run / "evaluation-swapped" / "metrics.json").read_text())
    wrong = metrics["misclassified"]
    assert len(wrong) == round(24 * (1 - metrics["accuracy"])) >= 19
    for mistake in wrong:
        path = Path(mistake["path"])
        assert mistake["true"] == path.parent.name and mistake["predicted"] == path.name[:3] + "s"
    assert [m["probability"] for m in wrong] == sorted((m["probability"] for m in wrong), reverse=True)
    assert f"{wrong[0]['path']}: {wrong[0]['true']}, predicted {wrong[0]['predicted']}" in out
    assert f"and {len(wrong) - 10} more (all in metrics.json)" in out


def test_classes_the_model_does_not_know_are_an_error(tmp_path, capsys):
    run = write_tiny_run(tmp_path / "run")
    for name in ("cats", "birds"):
        write_image(tmp_path / "other" / name / "0.jpg")
    assert main(["evaluate", str(run), "--data", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    unknown = "has classes the model does not know: birds (it knows cats, dogs)"
    assert err == f"catdog: error: {tmp_path / 'other'} {unknown}\n"


def test_a_run_folder_without_a_model_is_an_error(tmp_path, capsys):
    run = write_tiny_run(tmp_path / "run")
    (run / "model.keras").unlink()
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("catdog: error: ") and "has no model.keras" in err and err.count("\n") == 1


def test_plots_are_written(tmp_path):
    history = [{"epoch": e, "accuracy": 0.5 + e / 10, "val_accuracy": 0.5 + e / 12, "loss": 1 / e, "val_loss": 1.2 / e}
               for e in (1, 2, 3)]
    written = [
        plots.training_curve(history, "accuracy", tmp_path / "accuracy.png", minimum=0.52),
        plots.training_curve(history, "loss", tmp_path / "loss.png", fine_tuning_from=2),
        plots.confusion_matrix([[3, 1], [0, 4]], ["cats", "dogs"], tmp_path / "confusion.png"),
        plots.misclassified([plots.Mistake(np.full((8, 8, 3), 200.0), "cats", "dogs", 0.9)], tmp_path / "wrong.png"),
        plots.misclassified([], tmp_path / "none.png"),
        plots.compare_validation_accuracy({"scratch": history, "transfer": history}, tmp_path / "compare.png",
                                          {"scratch": 0.52, "transfer": 0.9}),
    ]
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG")
