"""Every preset on tags: `catdog run` trains each of them on a multi-label data set (one sigmoid per
tag, binary cross-entropy), scores them in multi-label terms, and reports them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from catdog.data import Source
from catdog.data.labels import LabelsFile
from catdog.deploy.predict import Predictor
from catdog.exercise import exercise_settings, run_exercise
from catdog.models import PRESETS
from catdog.runs import Run

from messy import tag_pairs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exercise(reference_data, shared_weights, tmp_path_factory):
    root = tmp_path_factory.mktemp("tag-exercise")
    tags = tag_pairs(reference_data, root / "data", 60, seed=3)
    out = root / "out"
    settings = exercise_settings(list(PRESETS), epochs=2, image_size=32, weights=str(shared_weights))
    summary = run_exercise(Source(root / "data", LabelsFile(tags, "ID", "TAGS")), settings, out=out)
    return out, summary


def test_the_exercise_trains_and_scores_every_preset_on_tags(exercise):
    out, summary = exercise
    images = sorted((out.parent / "data" / "images").iterdir())[:20]
    assert [row["preset"] for row in summary["models"]] == list(PRESETS)
    for row in summary["models"]:
        metrics = json.loads((out / row["preset"] / "metrics.json").read_text())
        assert set(metrics["per_tag"]) == {"cats", "dogs"} and 0 <= metrics["mean_average_precision"] <= 1
        run = Run.open(out / row["preset"])
        assert run.multilabel and len(run.thresholds) == 2
        assert np.isfinite([epoch["loss"] for epoch in run.history]).all()
        sums = [sum(row["probabilities"].values()) for row in Predictor(run).predict_paths(images)]
        assert not np.allclose(sums, 1.0, atol=1e-3), (row["preset"], sums)  # one sigmoid per tag, not a softmax
    page = (out / "report.md").read_text()
    assert "mean average precision" in page.lower() and "per tag" in page.lower()


def test_a_minimum_confidence_holds_for_each_tag(exercise):
    out, summary = exercise
    run = Run.open(out / summary["best"])
    images = sorted((out.parent / "data" / "images").iterdir())[:20]
    plain = Predictor(run).predict_paths(images)
    strict = Predictor(run, min_confidence=0.9).predict_paths(images)
    for loose, sure in zip(plain, strict, strict=True):
        assert sure["labels"] == [tag for tag in loose["labels"] if sure["probabilities"][tag] >= 0.9]
