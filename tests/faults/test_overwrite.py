"""Faults: catdog never deletes or changes what it did not make.

Each case is what a user tried: an output path that is a folder of theirs, a file of
another kind, a non-empty folder given to `train --out`. The command fails with one line,
exit 2, and every file of the user's is still there, unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catdog.cli import main

from conftest import one_line_error, write_image, write_tiny_run


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its contents."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def users_folder(path: Path) -> Path:
    (path / "docs").mkdir(parents=True)
    (path / "docs" / "important.txt").write_text("x\n")
    return path


def test_data_split_into_a_folder_of_the_users_is_refused(tiny_dataset, tmp_path, capsys):
    notes = users_folder(tmp_path / "notes")
    before = snapshot(notes)
    code = main(["data", "split", "--data", str(tiny_dataset), "--out", str(notes)])
    one_line_error(capsys, code, f"{notes} is a folder, but a file is to be written there")
    assert snapshot(notes) == before


def test_data_split_over_a_users_csv_is_refused_and_over_its_own_manifest_allowed(tiny_dataset, tmp_path, capsys):
    theirs = tmp_path / "grades.csv"
    theirs.write_text("student,grade\nada,A\n")
    code = main(["data", "split", "--data", str(tiny_dataset), "--out", str(theirs)])
    one_line_error(capsys, code, "is not a catdog manifest")
    assert theirs.read_text() == "student,grade\nada,A\n"

    ours = tmp_path / "splits.csv"
    assert main(["data", "split", "--data", str(tiny_dataset), "--out", str(ours)]) == 0
    assert main(["data", "split", "--data", str(tiny_dataset), "--seed", "7", "--out", str(ours)]) == 0
    assert ours.read_text().startswith("path,class,split\n")


def test_data_split_into_the_current_folder_is_refused(tiny_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["data", "split", "--data", str(tiny_dataset), "--out", "."])
    one_line_error(capsys, code, "is a folder")


def test_data_show_never_replaces_a_folder_or_a_picture_it_did_not_draw(tiny_dataset, tmp_path, capsys):
    folder = users_folder(tmp_path / "notes2.png")
    before = snapshot(folder)
    code = main(["data", "show", "--data", str(tiny_dataset), "--out", str(folder)])
    one_line_error(capsys, code, "is a folder")
    assert snapshot(folder) == before

    photo = write_image(tmp_path / "holiday.png")
    photo_bytes = photo.read_bytes()
    code = main(["data", "show", "--data", str(tiny_dataset), "--out", str(photo)])
    one_line_error(capsys, code, "is not a PNG figure written by catdog")
    assert photo.read_bytes() == photo_bytes

    figure = tmp_path / "samples.png"
    assert main(["data", "show", "--data", str(tiny_dataset), "--out", str(figure)]) == 0
    drawn = figure.read_bytes()
    assert main(["data", "show", "--data", str(tiny_dataset), "--augment", "--out", str(figure)]) == 0
    assert figure.read_bytes() != drawn  # its own figure is replaced

    code = main(["data", "show", "--data", str(tiny_dataset), "--out", str(tmp_path / "notes2")])
    one_line_error(capsys, code, "ending in .png")


def test_export_never_replaces_a_users_folder_but_replaces_its_own_export(tmp_path, capsys):
    run = write_tiny_run(tmp_path / "run")
    mydir = users_folder(tmp_path / "mydir")
    before = snapshot(mydir)
    code = main(["export", str(run), "--format", "savedmodel", "--out", str(mydir)])
    one_line_error(capsys, code, "is not a SavedModel folder written by catdog")
    assert snapshot(mydir) == before

    out = tmp_path / "exported"
    assert main(["export", str(run), "--format", "savedmodel", "--out", str(out)]) == 0
    assert main(["export", str(run), "--format", "savedmodel", "--out", str(out)]) == 0
    assert (out / "saved_model.pb").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_text("my notes, unluckily named\n")
    code = main(["export", str(run), "--format", "onnx", "--out", str(not_onnx)])
    one_line_error(capsys, code, "is not an ONNX model written by catdog")
    assert not_onnx.read_text() == "my notes, unluckily named\n"


def test_train_into_a_non_empty_folder_that_is_not_a_run_touches_nothing(tiny_dataset, tmp_path, capsys):
    thesis = tmp_path / "thesis"
    (thesis / "checkpoint").mkdir(parents=True)
    (thesis / "checkpoint" / "thesis.tex").write_text("\\documentclass{article}\n")
    (thesis / "metrics.json").write_text('{"mine": true}\n')
    before = snapshot(thesis)
    code = main(["train", "--model", "scratch", "--epochs", "1", "--image-size", "32", "--data", str(tiny_dataset),
                 "--out", str(thesis)])
    one_line_error(capsys, code, f"--out: {thesis} is not empty and is not a catdog run folder")
    assert snapshot(thesis) == before and sorted(p.name for p in thesis.iterdir()) == ["checkpoint", "metrics.json"]


def test_train_into_a_file_is_refused(tiny_dataset, tmp_path, capsys):
    file = tmp_path / "run.txt"
    file.write_text("keep me\n")
    code = main(["train", "--model", "scratch", "--data", str(tiny_dataset), "--out", str(file)])
    one_line_error(capsys, code, f"--out: {file} is a file; give a folder for the run")
    assert file.read_text() == "keep me\n"


def test_a_finished_run_keeps_what_the_user_put_in_its_checkpoint_folder(tiny_dataset, tmp_path):
    """Training removes the checkpoint files it wrote, not the folder with someone else's file in it."""
    from catdog.training.callbacks import RunRecorder

    from conftest import train

    run = tmp_path / "run"

    class DropANote(RunRecorder):  # the user saves a note into checkpoint/ while the run trains
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            (run / "checkpoint" / "note.txt").write_text("mine\n")

    import catdog.training.fit as fit

    original, fit.RunRecorder = fit.RunRecorder, DropANote
    try:
        train("scratch", tiny_dataset, epochs=2, image_size=32, batch_size=8, out=run)
    finally:
        fit.RunRecorder = original
    assert [p.name for p in (run / "checkpoint").iterdir()] == ["note.txt"]
    assert json.loads((run / "training.json").read_text())["epochs"] == 2


@pytest.mark.parametrize("command", [["data", "split"], ["data", "show"]])
def test_a_symbolic_link_as_output_is_refused(tiny_dataset, tmp_path, capsys, command):
    target = tmp_path / "elsewhere.txt"
    target.write_text("linked\n")
    link = tmp_path / ("out.png" if command[-1] == "show" else "out.csv")
    link.symlink_to(target)
    code = main([*command, "--data", str(tiny_dataset), "--out", str(link)])
    one_line_error(capsys, code, "is a symbolic link")
    assert target.read_text() == "linked\n" and link.is_symlink()
