"""Training on data as people have it: labels in a CSV file with extensionless ids, classes of 1, 2 and 3 images
among larger ones, a 40-to-1 imbalance; and `catdog run`'s report on it (many-class metrics, the audit)."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from catdog.cli import main
from catdog.exercise import exercise_settings, run_exercise
from catdog.training.recipe import class_weights

from messy import photos

pytestmark = pytest.mark.slow

SIZES = {"cats": 40, "dogs": 12, "six": 6, "three": 3, "two": 2, "one": 1}  # 40 to 1


@pytest.fixture(scope="module")
def messy_csv(reference_data, tmp_path_factory):
    """Real photos named by ids in one folder, labelled by `labels.csv` (`id,breed`, no extensions)."""
    root = tmp_path_factory.mktemp("messy") / "data"
    (root / "images").mkdir(parents=True)
    sources = {"cats": photos(reference_data, "cats", 40), "dogs": photos(reference_data, "dogs", 12),
               "six": photos(reference_data, "cats", 6, folder="validation"),
               "three": photos(reference_data, "dogs", 3, folder="validation"),
               "two": photos(reference_data, "cats", 2, start=10, folder="validation"),
               "one": photos(reference_data, "dogs", 1, start=10, folder="validation")}
    rows = []
    for n, (label, files) in enumerate(sources.items()):
        for i, source in enumerate(files):
            image_id = f"{n:02x}{i:030x}"
            shutil.copyfile(source, root / "images" / f"{image_id}.jpg")
            rows.append(f"images/{image_id},{label}")
    (root / "labels.csv").write_text("id,breed\n" + "\n".join(rows) + "\n")
    return root


def test_class_weights_balance_the_classes_and_auto_waits_for_imbalance():
    assert class_weights("none", [40, 1]) is None
    assert class_weights("auto", [30, 10]) is None  # 3x: not beyond the threshold
    balanced = class_weights("balanced", [30, 10])
    assert balanced == pytest.approx({0: 40 / 60, 1: 40 / 20})
    assert 30 * balanced[0] == pytest.approx(10 * balanced[1])  # each class weighs as much in total
    assert class_weights("auto", [40, 1]) == class_weights("balanced", [40, 1])


def test_small_classes_train_first_and_the_run_reports_many_class_metrics(messy_csv, shared_weights, tmp_path,
                                                                          capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "transfer", "--data", str(messy_csv), "--labels", str(messy_csv / "labels.csv"),
                 "--path-column", "id", "--label-column", "breed", "--epochs", "2", "--image-size", "96",
                 "--weights", str(shared_weights), "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "the classes are imbalanced: cats has 28.0x the training images of one (28 against 1)" in err
    assert "2 classes have no test images" in err and ": one, two" in err
    assert "1 classes have no validation images" in err
    assert "class weights (auto)" in err

    with open(run / "splits.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    splits = {label: sorted(row["split"] for row in rows if row["class"] == label) for label in SIZES}
    assert splits["one"] == ["train"]
    assert splits["two"] == ["train", "validation"]
    assert splits["three"] == ["test", "train", "validation"]
    assert all(row["path"].startswith("images/") and row["path"].endswith(".jpg") for row in rows)
    assert json.loads((run / "config.json").read_text())["class_weight"] == "auto"
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("top_5_accuracy", "balanced_accuracy", "macro_f1", "macro_precision", "macro_recall"):
        assert 0 <= metrics[key] <= 1, key
    assert metrics["top_5_accuracy"] >= metrics["accuracy"]


def test_the_exercise_report_has_the_audit_and_the_many_class_metrics(messy_csv, shared_weights, tmp_path):
    from catdog.data import Source
    from catdog.data.labels import LabelsFile

    out = tmp_path / "exercise"
    summary = run_exercise(Source(messy_csv, LabelsFile(messy_csv / "labels.csv", "id", "breed")),
                           exercise_settings(["transfer"], epochs=1, image_size=96, weights=str(shared_weights)),
                           out=out)
    assert summary["audit"]["images"] == sum(SIZES.values())
    assert (out / "audit.json").is_file() and (out / "audit.html").is_file()
    md = (out / "report.md").read_text()
    assert "## Audit of the data" in md and "suspected label errors" in md and "`audit.html`" in md
    assert "The classes are imbalanced: the largest has 28.0x the training images of the smallest" in md
    assert "2 classes are too small to spare a test image: `one`, `two`." in md
    assert "Over its classes: balanced accuracy" in md and "top-5 accuracy" in md
    assert summary["data"]["baseline_balanced_accuracy"] == pytest.approx(1 / 4)  # 4 classes have test images
