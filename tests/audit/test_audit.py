"""`catdog audit` on messy copies of real photos: a CSV-labelled flat folder with extensionless ids, copies of
some photos re-encoded, resized and cropped within it and in an --against folder, 5 % of the labels flipped,
and a photo of neither class."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest

from catdog.cli import main

from conftest import one_line_error
from messy import EDITS, copy, photos

pytestmark = pytest.mark.slow

FLIPPED = ("c10", "c11", "d10", "d11")  # 4 of 90 files, about 5 %


@pytest.fixture(scope="module")
def messy(reference_data, tmp_path_factory):
    """The data set, the --against folder, and what was planted: {copy: original} within the data, the same for
    the --against folder, the unrelated --against files, and the flipped ids."""
    from matplotlib import cbook
    from matplotlib.figure import Figure

    root = tmp_path_factory.mktemp("audit")
    data, against = root / "data", root / "against"
    rows, original_of = [], {}
    for class_name, prefix in (("cats", "c"), ("dogs", "d")):
        (data / "images").mkdir(parents=True, exist_ok=True)
        for i, photo in enumerate(photos(reference_data, class_name, 40)):
            shutil.copyfile(photo, data / "images" / f"{prefix}{i}.jpg")
            label = {"cats": "dogs", "dogs": "cats"}[class_name] if f"{prefix}{i}" in FLIPPED else class_name
            rows.append(f"images/{prefix}{i},{label}")
        shutil.copyfile(data / "images" / f"{prefix}0.jpg", data / "images" / f"{prefix}-exact.jpg")
        rows.append(f"images/{prefix}-exact,{class_name}")
        original_of[f"images/{prefix}-exact.jpg"] = f"images/{prefix}0.jpg"
        for n, (name, edit) in enumerate(EDITS.items(), 1):
            edit(data / "images" / f"{prefix}{n}.jpg", data / "images" / f"{prefix}-{name}.jpg")
            rows.append(f"images/{prefix}-{name},{class_name}")
            original_of[f"images/{prefix}-{name}.jpg"] = f"images/{prefix}{n}.jpg"
    shutil.copyfile(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), data / "images" / "person.jpg")
    fig = Figure()
    fig.subplots().plot([1, 3, 2, 5])
    fig.savefig(data / "images" / "chart.png")
    rows += ["images/person,cats", "images/chart,dogs"]
    (data / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")

    copied_from = {}
    for prefix in "cd":
        for n, (name, edit) in enumerate(EDITS.items(), 20):
            copied_from[f"{prefix}-{name}.jpg"] = f"images/{prefix}{n}.jpg"
            edit(data / "images" / f"{prefix}{n}.jpg", against / f"{prefix}-{name}.jpg")
    unrelated = [p.name for p in copy(photos(reference_data, "cats", 3, folder="validation")
                                      + photos(reference_data, "dogs", 3, folder="validation"), against)]
    return data, against, original_of, copied_from, unrelated


@pytest.fixture(scope="module")
def audited(messy, shared_weights, tmp_path_factory):
    """`catdog audit --json --out DIR --fail-on leaks`: its exit code, its JSON and the output folder."""
    data, against, *_ = messy
    out = tmp_path_factory.mktemp("out")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["audit", "--data", str(data), "--labels", str(data / "labels.csv"), "--against", str(against),
                     "--weights", str(shared_weights), "--out", str(out), "--json", "--fail-on", "leaks"])
    return code, json.loads(stdout.getvalue()), out


def test_the_json_has_the_issues_keys_and_names_files_by_the_folders_given(messy, audited):
    data, against, *_ = messy
    code, result, out = audited
    assert list(result)[:3] == ["duplicates", "label_issues", "outliers"]
    assert json.loads((out / "audit.json").read_text()) == result
    for group in result["duplicates"]:
        assert set(group) >= {"kind", "paths", "splits", "leak"}
        assert all(p.startswith(f"{data}/images/") or p.startswith(f"{against}/") for p in group["paths"])
    assert set(result["label_issues"][0]) == {"path", "label", "suggested", "score", "confident"}
    assert all(set(outlier) == {"path", "score"} and outlier["score"] >= 1.5 for outlier in result["outliers"])


def test_every_planted_copy_is_found_and_nothing_else(messy, audited):
    data, against, original_of, copied_from, unrelated = messy
    _, result, _ = audited
    found = {frozenset(group["paths"]) for group in result["duplicates"]}
    planted = {frozenset({f"{data}/{copy}", f"{data}/{original}"}) for copy, original in original_of.items()}
    planted |= {frozenset({f"{against}/{copy}", f"{data}/{original}"}) for copy, original in copied_from.items()}
    assert found == planted  # recall and precision 1 on these copies
    kinds = {frozenset(group["paths"]): group["kind"] for group in result["duplicates"]}
    assert kinds[frozenset({f"{data}/images/c-exact.jpg", f"{data}/images/c0.jpg"})] == "exact"
    assert kinds[frozenset({f"{data}/images/d-reencode.jpg", f"{data}/images/d1.jpg"})] == "near"
    for group in result["duplicates"]:
        if any(p.startswith(f"{against}/") for p in group["paths"]):
            assert group["leak"] and "against" in group["splits"]
        elif "crop" not in "".join(group["paths"]):  # found by the hash at scan time: kept in one split
            assert not group["leak"] and len(set(group["splits"])) == 1


def test_flipped_labels_lead_the_label_issues_with_their_true_class_suggested(messy, audited):
    """Among 90 photos, 3 of the 4 flipped labels at least are in the first 8 (the reference data's 5 % flipped:
    benchmarks/audit.md)."""
    data, *_ = messy
    _, result, _ = audited
    top = {issue["path"]: issue for issue in result["label_issues"][:2 * len(FLIPPED)]}
    found = [image_id for image_id in FLIPPED if f"{data}/images/{image_id}.jpg" in top]
    assert len(found) >= 3
    for image_id in found:
        issue = top[f"{data}/images/{image_id}.jpg"]
        assert issue["suggested"] == {"c": "cats", "d": "dogs"}[image_id[0]] != issue["label"]
        assert 0.5 < issue["score"] <= 1
    scores = [issue["score"] for issue in result["label_issues"]]
    assert scores == sorted(scores, reverse=True)
    assert any(issue["confident"] for issue in result["label_issues"])


def test_images_of_neither_class_are_the_most_unusual(messy, shared_weights):
    from catdog.audit.features import backbone_features
    from catdog.audit.issues import outlier_scores

    data, *_ = messy
    files = sorted((data / "images").iterdir())
    scores = outlier_scores(backbone_features(files, weights=shared_weights))
    most_unusual = [files[i].name for i in scores.argsort()[::-1][:5]]
    assert "chart.png" in most_unusual and "person.jpg" in most_unusual


def test_fail_on_leaks_exits_1_and_the_page_shows_every_group_and_suspect(audited):
    code, result, out = audited
    assert code == 1
    page = (out / "audit.html").read_text()
    shown = sum(len(g["paths"]) for g in result["duplicates"]) + len(result["label_issues"]) + len(result["outliers"])
    assert page.count('src="data:image/jpeg;base64,') == shown
    assert "labelled dogs, looks like cats" in page


def test_a_clean_folder_passes_fail_on_and_an_audit_is_replaced_only_by_an_audit(reference_data, shared_weights,
                                                                                tmp_path, capsys):
    data = tmp_path / "clean"
    for class_name in ("cats", "dogs"):
        copy(photos(reference_data, class_name, 12, start=100), data / class_name)
    out = tmp_path / "out"
    out.mkdir()
    (out / "audit.json").write_text('{"mine": true}')
    code = main(["audit", "--data", str(data), "--weights", str(shared_weights), "--out", str(out)])
    one_line_error(capsys, code, f"{out / 'audit.json'} exists and is not an audit written by catdog")
    (out / "audit.json").unlink()
    for _ in range(2):  # the second run replaces the first's files
        assert main(["audit", "--data", str(data), "--weights", str(shared_weights), "--out", str(out),
                     "--fail-on", "leaks"]) == 0
    text = capsys.readouterr().out
    assert "duplicates: 0 groups, 0 across splits or folders (leaks)" in text
    assert sorted(p.name for p in out.iterdir()) == ["audit.html", "audit.json"]


def test_random_weights_are_refused_in_one_line(tiny_dataset, capsys):
    one_line_error(capsys, main(["audit", "--data", str(tiny_dataset), "--weights", "none"]),
                   "--weights none: comparing images needs the backbone's pretrained weights")


def test_an_against_folder_that_is_not_there_is_a_one_line_error(tiny_dataset, tmp_path, capsys):
    one_line_error(capsys, main(["audit", "--data", str(tiny_dataset), "--against", str(tmp_path / "nowhere")]),
                   f"--against: {tmp_path / 'nowhere'} is not a folder")
