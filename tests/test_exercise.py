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
    assert "| `scratch` | " in md and " | 2 of 2 | " in md and "Every model trained for all its epochs." in md
    assert f"the best model is `{summary['best']}`" in md
    best = summary["best"]
    metrics = json.loads((out / best / "metrics.json").read_text())
    assert f"]({best}/reliability.png)" in md
    if metrics["misclassified"]:  # a gallery of them, and where the model looked
        from catdog.report.exercise import short_name

        assert f"]({best}/misclassified.png)" in md and f"- `{short_name(metrics['misclassified'][0]['path'])}`" in md
    else:
        assert f"`{best}` classified every test image correctly." in md
    assert "## Can its predictions be trusted?" in md
    assert f"how often it was right by **{100 * metrics['calibration']['ece']:.1f} %** on average" in md
    assert f"It called **{100 * metrics['ood']['flagged']:.1f} %** of the test photos so" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == md.count("![")


def page_text(page: str) -> str:
    """The text of an HTML page, as a browser shows it (without its style and scripts)."""
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self):
            super().__init__()
            self.parts, self.hidden = [], 0

        def handle_starttag(self, tag, attrs):
            self.hidden += tag in ("style", "script", "title")

        def handle_endtag(self, tag):
            self.hidden -= tag in ("style", "script", "title")

        def handle_data(self, data):
            if not self.hidden:
                self.parts.append(data)

    parser = Text()
    parser.feed(page)
    return " ".join(" ".join(parser.parts).split())


def test_the_report_opens_with_its_result(exercise):
    _, out, summary = exercise
    best = next(m for m in summary["models"] if m["preset"] == summary["best"])
    first_screen = page_text((out / "report.html").read_text())[:1500]
    assert f"{best['preset']} is the model chosen by validation accuracy: it scores " \
           f"{100 * best['test_accuracy']:.1f} % on the 4 test images" in first_screen
    assert "would score 50.0 % (the baseline)" in first_screen
    # Each model against the assignment's minimum line, judged on its test accuracy.
    for model, minimum in (("scratch", 0.52), ("augmented", 0.55)):
        row = next(m for m in summary["models"] if m["preset"] == model)
        verdict = "pass" if row["test_accuracy"] >= minimum else "miss"
        assert f"{100 * minimum:.1f} % {verdict}" in first_screen, model
    md = (out / "report.md").read_text()
    assert md.rstrip().splitlines()[-1].startswith("**Train one model on your own photos**")
    assert f"`catdog serve {out.as_posix()}`" in md


def test_stopped_early_is_said_of_the_models_the_table_shows_stopped_early():
    from catdog.report.exercise import ModelResult, stopped_early

    def result(epochs: int, stopped: str | None) -> ModelResult:
        return ModelResult("preprocessed", "run", 1, 0.7, 0.6, epochs, 0.7, 0.6, 0.68, 200, 160, 60.0, epochs=epochs,
                           planned_epochs=20, stopped=stopped)

    # A run that stalls on its last planned epoch records why, but ran every epoch.
    assert not stopped_early(result(20, "validation had not improved for 5 epochs since the best, epoch 15"))
    assert stopped_early(result(12, "validation had not improved for 5 epochs since the best, epoch 7"))
    assert not stopped_early(result(20, None))


def test_an_exercise_folder_opens_as_its_chosen_model(exercise, tmp_path, capsys):
    from catdog.deploy.serve.app import create_app
    from catdog.runs import Run

    data, out, summary = exercise
    best = summary["best"]
    assert Run.open(out).path == out / best
    photo = next((data / "cats").iterdir())

    assert main(["predict", str(out), str(photo)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{photo}: ")
    assert f"{out} is an exercise of `catdog run`: using its chosen model, {best} ({out / best})" in captured.err

    # The server: what GET /model answers (uvicorn itself is left out: it reconfigures logging, and
    # with it the handler `main` gave the captured stderr).
    app = create_app(out)
    describe_model = next(route.endpoint for route in app.routes if getattr(route, "path", None) == "/model")
    assert describe_model()["preset"] == best
    capsys.readouterr()

    # A folder of runs that is not a finished exercise names the runs inside it.
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "summary.json").write_text("{}")
    (unfinished / "scratch").symlink_to(out / "scratch")
    assert main(["evaluate", str(unfinished)]) == 2
    assert capsys.readouterr().err.strip() == (f"catdog: error: {unfinished} is not a catdog run folder: it has no "
                                               f"config.json; the run folders in it: {unfinished / 'scratch'}")


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
