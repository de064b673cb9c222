"""Labelling the unlabelled: a pool of real photos queued by how unsure a real run is of them, checked
against the run's own probabilities, and exported as new labelled rows."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from catdog.cli import main
from catdog.deploy.predict import Predictor
from catdog.errors import ParameterError
from catdog.review import review_pool
from catdog.review.pool import margin

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool(reference_data, other_photo, tmp_path_factory):
    """data/unlabelled/: 15 validation photos of each class and one of neither (Grace Hopper)."""
    data = tmp_path_factory.mktemp("pool") / "data"
    unlabelled = data / "unlabelled"
    unlabelled.mkdir(parents=True)
    for name in ("cats", "dogs"):
        for n in range(2000, 2015):
            photo = reference_data / "validation" / name / f"{name[:-1]}.{n}.jpg"
            (unlabelled / photo.name).symlink_to(photo)
    shutil.copyfile(other_photo, unlabelled / "person.jpg")
    (unlabelled / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
    return data, unlabelled


def test_the_least_certain_come_first_with_the_runs_guess(pool, trusted_run, tmp_path):
    data, unlabelled = pool
    expected = {p["path"]: p for p in Predictor(trusted_run).predict_paths([unlabelled])}
    with review_pool(unlabelled, trusted_run, data=data, out=tmp_path / "review") as review:
        items = [item for item in review.items if item.kind == "pool"]
        assert [item.kind for item in review.items[len(items):]] == ["skipped"]
        assert review.items[-1].reason.startswith("Cannot be used: ")
        predictions = [expected[item.members[0].file] for item in items]
        assert len(items) == 31 and [item.suggested for item in items] == [p["label"] for p in predictions]
        # Out of distribution first (most unlike first), then by margin, smallest first.
        unlike = [p for p in predictions if p["in_distribution"] is False]
        assert unlike and predictions[:len(unlike)] == sorted(unlike, key=lambda p: -p["ood_score"])
        assert any(p["path"].endswith("person.jpg") for p in unlike)
        margins = [margin(p["probabilities"]) for p in predictions[len(unlike):]]
        assert margins == sorted(margins) and margins[0] < margins[-1]
        assert [item.score for item in items[len(unlike):]] == pytest.approx(margins, abs=1e-4)

        first, second = items[len(unlike)], items[len(unlike) + 1]
        review.decide(first.id, "change", label=first.suggested)  # the run's guess, accepted
        review.decide(second.id, "change", label="dogs" if second.suggested == "cats" else "cats")
        review.decide(next(i.id for i in items if i.members[0].path.endswith("person.jpg")), "exclude")
        with pytest.raises(ParameterError, match="a pool image has no label to keep"):
            review.decide(items[-1].id, "keep")
        summary = review.export(tmp_path / "new-rows.csv")
    with open(tmp_path / "new-rows.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "label"] and summary["rows"] == 2
    assert dict(rows[1:]) == {first.members[0].path: first.suggested,
                              second.members[0].path: "dogs" if second.suggested == "cats" else "cats"}
    assert all(path.startswith("unlabelled/") for path, _ in rows[1:])  # relative to --data, as --labels reads


def test_the_cli_predicts_once_and_resumes(pool, trusted_run, tmp_path, capsys):
    data, unlabelled = pool
    out = tmp_path / "review"
    command = ["review", "--pool", str(unlabelled), "--run", str(trusted_run), "--data", str(data), "--out", str(out),
               "--export", str(tmp_path / "rows.csv"), "--json"]
    assert main(command) == 0
    assert json.loads(capsys.readouterr().out)["export"]["rows"] == 0  # nothing labelled yet
    cached = json.loads((out / "predictions.json").read_text())
    assert len(cached["predictions"]) == 31 and cached["skipped"][0][0].endswith("broken.jpg")
    stamp = (out / "predictions.json").stat().st_mtime_ns
    assert main(command) == 0
    assert (out / "predictions.json").stat().st_mtime_ns == stamp  # the same run and files: not predicted again
