"""Grad-CAM where the answer is known, `catdog explain`, and the heatmaps in evaluation's gallery."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catdog.cli import main
from catdog.explain.explainer import Explainer

from conftest import PATCH_COLOURS, PATCH_IMAGE_SIZE, check_patch_heatmaps, patch_image, train_patch_run

SIZE = PATCH_IMAGE_SIZE
COLOURS = PATCH_COLOURS


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory) -> Path:
    """`cnn` trained on generated images whose class is the colour of a patch at a known place (or no patch)."""
    return train_patch_run(tmp_path_factory.mktemp("patches"), seed=1)


@pytest.mark.slow
def test_the_heatmap_peaks_in_the_patch_that_decides_the_class(patch_run):
    metrics = json.loads((patch_run / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.8  # 1.0 for 10 seeds of 11, 0.89 for the other (16 of 18 test images)
    check_patch_heatmaps(patch_run)


@pytest.mark.slow
def test_explain_writes_a_picture_per_image_and_names_the_class(patch_run, tmp_path, capsys):
    rng = np.random.default_rng(5)
    photos = tmp_path / "photos"
    (photos / "more").mkdir(parents=True)
    Image.fromarray(patch_image(rng, COLOURS["red"])).save(photos / "a.png")
    Image.fromarray(patch_image(rng, COLOURS["blue"])).save(photos / "more" / "a.png")
    (photos / "notes.png").write_text("not an image")
    out = tmp_path / "out"

    assert main(["explain", str(patch_run), str(photos), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["a-2.png", "a.png"]
    lines = captured.out.splitlines()
    assert lines[0] == f"{out / 'a.png'}: red ({lines[0].split('(')[1].split(')')[0]}); heatmap of red"
    assert lines[1].startswith(f"{out / 'a-2.png'}: blue (") and lines[1].endswith("; heatmap of blue")
    assert f"skipping {photos / 'notes.png'}: not an image" in captured.err
    with Image.open(out / "a.png") as picture:
        assert picture.info["Software"].startswith("catdog") and picture.width > 2 * SIZE

    # The heatmap of the other class, as JSON; the pictures catdog wrote are replaced.
    assert main(["explain", str(patch_run), str(photos / "a.png"), "--out", str(out), "--class", "blue",
                 "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["label"], record["explained"], record["explanation"]) == ("red", "blue", str(out / "a.png"))
    assert record["probability"] == record["probabilities"]["red"] > 0.5


def test_explain_errors_are_one_line(tiny_run, tmp_path, make_image, capsys):
    image = make_image(tmp_path / "cat.jpg")
    assert main(["explain", str(tiny_run), str(image), "--class", "birds", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == ("catdog: error: --class: the model has no class 'birds'; it knows "
                                               "cats, dogs")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "cat.png").write_bytes(b"a file catdog did not write")
    assert main(["explain", str(tiny_run), str(image), "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert "is not a PNG figure written by catdog: catdog will not replace it" in err and err.count("\n") == 1
    assert (tmp_path / "taken" / "cat.png").read_bytes() == b"a file catdog did not write"
    (tmp_path / "empty").mkdir()
    assert main(["explain", str(tiny_run), str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.strip() == "catdog: error: no image files found in the given paths"


def test_an_explanation_of_the_tiny_model_covers_the_image(tiny_run, tmp_path, make_image):
    explainer = Explainer(tiny_run)
    (explained,) = explainer.explain_paths([make_image(tmp_path / "x.png", size=(80, 50))])
    assert explained.heatmap.shape == (64, 64) and 0 <= explained.heatmap.min() <= explained.heatmap.max() <= 1
    assert explained.overlay().shape == (64, 64, 3) and explained.overlay().dtype == np.uint8
    assert explained.label in ("cats", "dogs") and explained.ood_score is None
