"""`catdog run`: the whole exercise on a tiny data set, its report, and continuing it."""

import json

import pytest

from catdog.cli import main
from catdog.exercise import exercise_settings, run_exercise


@pytest.fixture(scope="module")
def exercise(tmp_path_factory):
    from conftest import write_image

    root = tmp_path_factory.mktemp("exercise")
    data = root / "data"
    for label, color in (("cats", (210, 60, 40)), ("dogs", (40, 80, 210))):
        for i in range(12):
            write_image(data / label / f"{i}.jpg", color=color, seed=i)
    out = root / "out"
    summary = run_exercise(data, exercise_settings(["scratch", "augmented"], epochs=2, image_size=32), out=out)
    return data, out, summary


def test_exercise_writes_report_summary_and_one_run_per_model(exercise):
    _, out, summary = exercise
    assert (out / "summary.json").is_file()
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    for name in ("report.html", "report.md", "samples.png", "augmentation.png", "validation_accuracy.png"):
        assert (out / name).stat().st_size > 0, name
    assert [m["preset"] for m in summary["models"]] == ["scratch", "augmented"]
    for row in summary["models"]:
        assert (out / row["preset"] / "model.keras").is_file()
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["test_n"] == 4
        assert row["parameters"] > 0
    assert summary["data"]["splits"]["train"] == {"cats": 8, "dogs": 8}


def test_report_holds_every_figure_and_the_comparison(exercise):
    _, out, summary = exercise
    md = (out / "report.md").read_text()
    for figure in ("samples.png", "augmentation.png", "validation_accuracy.png",
                   "scratch/accuracy.png", "scratch/loss.png", "augmented/accuracy.png"):
        assert f"]({figure})" in md
    assert "| model | parameters | epochs | best validation | last validation | test | training time |" in md
    assert "| `scratch` | " in md and " | 2 | " in md  # two epochs each, none stopped early
    assert f"the best model is `{summary['best']}`" in md
    best = summary["best"]
    assert f"]({best}/reliability.png)" in md and f"]({best}/misclassified.png)" in md
    metrics = json.loads((out / best / "metrics.json").read_text())
    assert "## Can its predictions be trusted?" in md
    assert f"expected calibration error of **{100 * metrics['calibration']['ece']:.1f} %** on the test split" in md
    assert f"flags {100 * metrics['ood']['flagged']:.1f} % of the test photos" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == md.count("![")


def test_rerun_keeps_finished_models(exercise, capsys):
    data, out, summary = exercise
    before = (out / "scratch" / "model.keras").stat().st_mtime_ns
    code = main(["run", "--data", str(data), "--models", "scratch", "--epochs", "2", "--image-size", "32",
                 "--out", str(out), "--json"])
    assert code == 0
    rerun = json.loads(capsys.readouterr().out)
    assert rerun["models"][0] == summary["models"][0]
    assert (out / "scratch" / "model.keras").stat().st_mtime_ns == before


def test_unknown_model_fails_before_any_training(tmp_path, tiny_dataset, capsys):
    code = main(["run", "--data", str(tiny_dataset), "--models", "scratch,resnet9000", "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["catdog: error: --models: unknown model 'resnet9000'; choose one of: "
                   "scratch, augmented, preprocessed, transfer, finetune, cnn"]
    assert not (tmp_path / "x").exists()


def test_missing_weights_fail_before_any_training(tmp_path, tiny_dataset, capsys):
    code = main(["run", "--data", str(tiny_dataset), "--models", "scratch,transfer",
                 "--weights", str(tmp_path / "nope.h5"), "--out", str(tmp_path / "x")])
    assert code == 2
    assert "nope.h5 does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_each_preset_trains_at_its_own_size_on_the_same_split(tiny_dataset, tmp_path):
    summary = run_exercise(tiny_dataset, exercise_settings(["scratch", "cnn", "transfer"], epochs=1, weights="none"),
                           out=tmp_path / "out")

    sizes = {row["preset"]: row["image_size"] for row in summary["models"]}
    assert sizes == {"scratch": 160, "cnn": 128, "transfer": 224}  # transfer: its backbone's size
    splits = {(tmp_path / "out" / name / "splits.csv").read_text() for name in sizes}
    assert len(splits) == 1
