"""`catdog data ...` end to end: the issue's figures on the shared photographs, bad files, errors, figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from catdog.cli import main
from catdog.data.splits import Manifest

from conftest import write_bad_images, write_image


def run_json(capsys, *argv):
    assert main(["data", "info", "--json", *map(str, argv)]) == 0
    return json.loads(capsys.readouterr().out)


def test_shared_data_info_json_has_the_issues_figures(reference_data):
    result = subprocess.run(
        [sys.executable, "-m", "catdog", "data", "info", "--data", str(reference_data), "--json"],
        capture_output=True,
        text=True,
        env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["classes"] == ["cats", "dogs"]
    assert report["splits"] == {
        "train": {"cats": 999, "dogs": 1000},
        "validation": {"cats": 400, "dogs": 400},
        "test": {"cats": 100, "dogs": 100},
    }
    assert report["baseline_accuracy"] == 0.5
    assert report["skipped"] == [] and report["warnings"] == []


def test_data_split_twice_writes_the_same_manifest(reference_data, tmp_path, capsys):
    for name in ("first.csv", "second.csv"):
        assert main(["data", "split", "--data", str(reference_data), "--out", str(tmp_path / name)]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "first.csv"), str(tmp_path / "second.csv")]
    assert (tmp_path / "first.csv").read_bytes() == (tmp_path / "second.csv").read_bytes()
    rows = Manifest.read(tmp_path / "first.csv", reference_data).rows
    assert len(rows) == len({row.path for row in rows}) == 2999


@pytest.fixture
def slice_with_bad_files(reference_data, tmp_path):
    """A few shared photographs (linked, not copied) in the split layout, plus one bad file of each kind."""
    root = tmp_path / "slice"
    for folder in ("train", "validation"):
        for class_name in ("cats", "dogs"):
            (root / folder / class_name).mkdir(parents=True)
            for source in sorted((reference_data / folder / class_name).iterdir())[:5]:
                (root / folder / class_name / source.name).symlink_to(source)
    bad = write_bad_images(root / "train" / "cats")
    write_image(root / "validation" / "dogs" / "really_a_bmp.jpg", fmt="BMP")
    return root, {f"train/cats/{name}": reason for name, reason in bad.items()}


def test_bad_files_are_reported_with_reasons_and_the_exit_code_is_0(slice_with_bad_files, capsys):
    root, expected = slice_with_bad_files
    report = run_json(capsys, "--data", root)
    skipped = {item["path"]: item["reason"] for item in report["skipped"]}
    assert set(skipped) == set(expected)
    for path, reason in expected.items():
        assert skipped[path].startswith(reason)
    assert report["splits"]["train"] == {"cats": 5, "dogs": 5}
    assert report["splits"]["validation"]["dogs"] + report["splits"]["test"]["dogs"] == 6  # the BMP is kept
    assert len(report["warnings"]) == 1 and "really_a_bmp.jpg" in report["warnings"][0]

    assert main(["data", "info", "--data", str(root)]) == 0
    table = capsys.readouterr().out
    assert "baseline accuracy: 50.0%" in table
    for path, reason in expected.items():
        assert f"{path}: {reason}" in table


def test_seed_changes_the_split_but_not_its_sizes(slice_with_bad_files, capsys):
    root, _ = slice_with_bad_files
    a, b = run_json(capsys, "--data", root, "--seed", "1"), run_json(capsys, "--data", root, "--seed", "1")
    assert a == b
    manifests = {}
    for seed in (1, 2):
        out = root.parent / f"{seed}.csv"
        assert main(["data", "split", "--data", str(root), "--seed", str(seed), "--out", str(out)]) == 0
        manifests[seed] = (root.parent / f"{seed}.csv").read_text()
    capsys.readouterr()
    assert manifests[1] != manifests[2]
    assert run_json(capsys, "--data", root, "--seed", "2")["splits"] == a["splits"]


def missing_folder(root):
    return root / "missing", root / "missing"


def single_class(root):
    write_image(root / "cats" / "a.jpg")
    return root, root


def empty_class(root):
    write_image(root / "cats" / "a.jpg")
    (root / "dogs").mkdir()
    (root / "dogs" / "empty.jpg").write_bytes(b"")
    return root, root / "dogs"


@pytest.mark.parametrize(
    "make, message",
    [
        (missing_folder, "data folder {folder} does not exist"),
        (single_class, "{folder} has only one class folder (cats)"),
        (empty_class, "class folder {folder} has no usable images (1 files skipped)"),
    ],
)
def test_layout_errors_are_one_line_naming_the_folder_with_exit_code_2(tmp_path, capsys, make, message):
    data, folder = make(tmp_path)
    assert main(["data", "info", "--data", str(data)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("catdog: error: " + message.format(folder=folder))
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_missing_folder_exits_2_without_a_traceback_from_the_real_command(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "catdog", "data", "info", "--data", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"catdog: error: data folder {tmp_path / 'nowhere'} does not exist")
    assert result.stderr.count("\n") == 1


def test_show_draws_the_sample_grid_and_the_augmentation_preview(tiny_dataset, tmp_path, monkeypatch, capsys):
    figures = tmp_path / "figures"
    figures.mkdir()
    monkeypatch.chdir(figures)
    assert main(["data", "show", "--data", str(tiny_dataset)]) == 0
    assert main(["data", "show", "--data", str(tiny_dataset), "--augment", "--out", "aug/preview.png"]) == 0
    assert capsys.readouterr().out.split() == ["samples.png", "aug/preview.png"]
    with Image.open(figures / "samples.png") as grid, Image.open(figures / "aug" / "preview.png") as preview:
        assert grid.format == preview.format == "PNG"
        assert grid.width > grid.height  # two rows of three
        assert preview.width > preview.height  # two rows of four
    assert sorted(p.name for p in figures.rglob("*")) == ["aug", "preview.png", "samples.png"]  # nothing half-written


@pytest.mark.parametrize("command", [[], ["fetch"], ["info"], ["show"], ["split"]])
def test_every_data_command_has_help(command, capsys):
    assert main(["data", *command, "--help"]) == 0
    assert "usage: catdog data" in capsys.readouterr().out
