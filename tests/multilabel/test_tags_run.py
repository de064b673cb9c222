"""A multi-label run end to end, on photos that hold a cat, a dog, both or neither (two tiles side by
side, tagged in a Kaggle-style CSV): trained at the defaults, scored, predicted with Keras and with
its ONNX export, explained, audited, and served to a real browser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from catdog.cli import main
from catdog.deploy.export import _check_tag_sets
from catdog.deploy.predict import Predictor
from catdog.errors import CatdogError
from catdog.metrics import fit_thresholds
from catdog.runs import Run

from conftest import live_server
from messy import backdrop, pair_of, photos, tag_pairs, tile_of

pytestmark = pytest.mark.slow

CHECKS = 10


@pytest.fixture(scope="module")
def pairs(reference_data, tmp_path_factory) -> Path:
    """500 tagged pairs of tiles made from the reference's training photos."""
    root = tmp_path_factory.mktemp("pairs")
    tag_pairs(reference_data, root, 500, seed=1)
    return root


@pytest.fixture(scope="module")
def checks(reference_data, tmp_path_factory) -> Path:
    """Photos of both animals (`both/`) and of neither (`empty/`), made from photos no run trains on."""
    root = tmp_path_factory.mktemp("checks")
    (root / "both").mkdir()
    (root / "empty").mkdir()
    rng = np.random.default_rng(7)
    cats = photos(reference_data, "cats", CHECKS, folder="validation")
    dogs = photos(reference_data, "dogs", CHECKS, folder="validation")
    for i in range(CHECKS):
        tiles = [tile_of(cats[i]), tile_of(dogs[i])][:: 1 if i % 2 else -1]
        pair_of(*tiles).save(root / "both" / f"{i}.jpg")
        pair_of(backdrop(rng), backdrop(rng)).save(root / "empty" / f"{i}.jpg")
    return root


@pytest.fixture(scope="module")
def run(pairs, shared_weights, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tags"
    assert main(["train", "--model", "transfer", "--data", str(pairs), "--labels", str(pairs / "tags.csv"),
                 "--path-column", "ID", "--label-column", "TAGS", "--weights", str(shared_weights),
                 "--out", str(out)]) == 0
    return out


def given(run: Path, folder: Path, runtime: str) -> list[list[str]]:
    return [row["labels"] for row in Predictor(run, runtime=runtime).predict_paths([folder])]


def test_the_run_scores_tags_and_gives_both_animals_or_none(run, checks):
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("mean_average_precision", "micro_f1", "macro_f1", "subset_accuracy", "hamming_loss"):
        assert 0 <= metrics[key] <= 1, key
    assert set(metrics["per_tag"]) == {"cats", "dogs"} and metrics["mean_average_precision"] > 0.9
    config = json.loads((run / "config.json").read_text())
    assert (config["task"], config["format_version"], config["class_names"]) == ("multilabel", 3, ["cats", "dogs"])
    both, empty = given(run, checks / "both", "keras"), given(run, checks / "empty", "keras")
    assert sum(labels == ["cats", "dogs"] for labels in both) >= CHECKS - 4, both  # 7 to 10 over five seeds
    assert sum(labels == [] for labels in empty) >= CHECKS - 1, empty  # 10 over five seeds
    for name in ("pr_curves.png", "tag_examples.png", "confusion_matrix.png", "reliability.png"):
        assert (run / name).read_bytes().startswith(b"\x89PNG"), name


def test_the_onnx_export_gives_the_same_tags(run, checks, capsys):
    assert main(["export", str(run), "--format", "onnx"]) == 0
    assert "wrote" in capsys.readouterr().out
    for folder in (checks / "both", checks / "empty"):
        assert given(run, folder, "onnx") == given(run, folder, "keras")


def test_thresholds_are_chosen_on_the_validation_split_alone(run):
    opened = Run.open(run)
    model = opened.served_model(calibrated=False)
    from catdog.models.inference import numpy_function, run_over

    outputs, labels = run_over(numpy_function(model), opened.data().validation)
    calibrated = opened.calibrated(outputs["probabilities"])
    np.testing.assert_allclose(opened.thresholds, fit_thresholds(labels, calibrated), atol=1e-6)


def test_tag_sets_must_match_in_an_export_but_near_a_threshold():
    thresholds = [0.5, 0.5]
    expected = np.array([[0.9, 0.2], [0.505, 0.1]])
    _check_tag_sets("onnx", "model", np.array([[0.88, 0.21], [0.495, 0.1]]), expected, thresholds, 0.1)
    with pytest.raises(CatdogError, match="gives image 1 other tags than the Keras model"):
        _check_tag_sets("onnx", "model", np.array([[0.3, 0.2], [0.505, 0.1]]), expected, thresholds, 0.1)


def test_prediction_evaluation_and_explanation_speak_in_tags(run, checks, tmp_path, capsys):
    assert main(["predict", str(run), str(checks / "empty" / "0.jpg")]) == 0
    assert capsys.readouterr().out.strip().endswith("no tag (of 2)")
    assert main(["predict", str(run), str(checks / "both"), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(set(row) == {"path", "labels", "probabilities", "thresholds", "ood_score", "in_distribution"}
               for row in rows)
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "mean average precision" in out and "\ncats " in out and "\ndogs " in out
    picture = checks / "both" / "1.jpg"
    assert main(["explain", str(run), str(picture), "--out", str(tmp_path / "why"), "--json"]) == 0
    explained = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["explained"] for row in explained] == explained[0]["labels"]  # a picture per tag it is given
    assert main(["explain", str(run), str(picture), "--class", "dogs", "--out", str(tmp_path / "dogs"),
                 "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["explained"] == "dogs" and Path(row["explanation"]).name == "1-dogs.png"


def test_the_audit_finds_tags_taken_away(pairs, shared_weights, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(pairs / "images", data / "images")
    rows = (pairs / "tags.csv").read_text().splitlines()
    header, rows = rows[0], rows[1:]
    both = [i for i, row in enumerate(rows) if row.endswith(",cats dogs")][:10]
    for i in both:  # these photos show a dog too, which their labels now leave out
        rows[i] = rows[i].removesuffix(" dogs")
    (data / "tags.csv").write_text("\n".join([header, *rows]) + "\n")
    assert main(["audit", "--data", str(data), "--labels", str(data / "tags.csv"), "--path-column", "ID",
                 "--label-column", "TAGS", "--weights", str(shared_weights), "--json"]) == 0
    issues = json.loads(capsys.readouterr().out)["label_issues"]
    missing_dogs = {Path(issue["path"]).stem for issue in issues if "dogs" in issue["missing"]}
    planted = {rows[i].split(",")[0].split("/")[-1] for i in both}
    assert len(planted & missing_dogs) >= 7, (planted, missing_dogs)


def test_the_page_shows_every_tag_it_gives(run, checks, browser):
    from catdog.deploy.serve.app import create_app

    with live_server(create_app(run, runtime="keras")) as url:
        page = browser.new_page()
        page.goto(url + "/")
        page.locator("#picker").set_input_files([str(checks / "both" / "1.jpg"), str(checks / "empty" / "1.jpg")])
        page.wait_for_function("document.querySelectorAll('.card.done').length === 2")
        both, empty = page.locator(".card").nth(0), page.locator(".card").nth(1)
        shown_photos = [checks / "both" / "1.jpg", checks / "empty" / "1.jpg"]
        expected = Predictor(run, runtime="keras").predict_paths(shown_photos)
        for card, prediction in zip((both, empty), expected, strict=True):
            shown = card.locator(".label").inner_text()
            assert shown == (", ".join(prediction["labels"]) or "none of the 2 tags")
            assert card.locator(".row").count() == 2 and card.locator(".mark").count() == 2
            assert card.locator(".row.best").count() == len(prediction["labels"])
        page.close()
