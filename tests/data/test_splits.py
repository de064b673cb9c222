"""catdog.data.splits: deterministic, stratified, disjoint splits, and the manifest."""

from __future__ import annotations

import pytest

from catdog.data.scan import scan
from catdog.data.splits import FLAT_TEST_FRACTION, FLAT_VALIDATION_FRACTION, SPLITS, Manifest, split
from catdog.errors import CatdogError

from conftest import write_image, write_split_layout


def assignment(manifest):
    return {row.path: row.split for row in manifest.rows}


def test_shared_data_gives_the_issues_counts(shared_scan):
    manifest = split(shared_scan, seed=42)
    assert manifest.counts() == {
        "train": {"cats": 999, "dogs": 1000},
        "validation": {"cats": 400, "dogs": 400},
        "test": {"cats": 100, "dogs": 100},
    }
    # train is train/, and validation and test both come from validation/
    assert all(row.path.startswith(f"{'train' if row.split == 'train' else 'validation'}/") for row in manifest.rows)


def test_splits_are_disjoint_and_cover_every_image(shared_scan):
    manifest = split(shared_scan, seed=42)
    paths = [row.path for row in manifest.rows]
    assert len(paths) == len(set(paths)) == 2999
    assert set(paths) == {image.path for image in shared_scan.images}


def test_same_seed_same_split_and_another_seed_another(shared_scan):
    first, again, other = split(shared_scan, seed=42), split(shared_scan, seed=42), split(shared_scan, seed=7)
    assert first.rows == again.rows
    assert assignment(first) != assignment(other)
    assert other.counts() == first.counts()  # still stratified, with the same sizes


def test_flat_layout_is_split_by_the_configured_fractions(tmp_path):
    for class_name, n in (("cats", 20), ("dogs", 40)):
        for i in range(n):
            write_image(tmp_path / class_name / f"{i}.png", size=(8, 8), seed=i)
    manifest = split(scan(tmp_path), seed=1)
    counts = manifest.counts()
    for class_name, n in (("cats", 20), ("dogs", 40)):
        test = round(n * FLAT_TEST_FRACTION)
        validation = round(n * FLAT_VALIDATION_FRACTION)
        assert counts["test"][class_name] == test
        assert counts["validation"][class_name] == validation
        assert counts["train"][class_name] == n - test - validation


def test_a_test_folder_is_used_as_it_is(tmp_path):
    manifest = split(scan(write_split_layout(tmp_path, n_validation=5, n_test=3)))
    assert manifest.counts() == {
        "train": {"cats": 4, "dogs": 4},
        "validation": {"cats": 5, "dogs": 5},
        "test": {"cats": 3, "dogs": 3},
    }
    assert all(row.path.startswith(f"{row.split}/") for row in manifest.rows)


def test_classes_too_small_for_three_splits_train_first(tmp_path):
    """1 image: training only; 2: training and validation; 3: one in each; larger classes as before."""
    sizes = {"one": 1, "two": 2, "three": 3, "many": 20}
    for n_class, (class_name, n) in enumerate(sizes.items()):
        for i in range(n):
            write_image(tmp_path / class_name / f"{i}.png", size=(16, 16), seed=100 * n_class + i)
    manifest = split(scan(tmp_path), seed=1)
    counts = manifest.counts()
    assert {name: [counts[s][name] for s in SPLITS] for name in sizes} == {
        "one": [1, 0, 0], "two": [1, 1, 0], "three": [1, 1, 1], "many": [14, 3, 3]}
    assert manifest.missing() == {"validation": ["one"], "test": ["one", "two"]}


def test_a_tiny_validation_folder_keeps_its_image_for_validation(tmp_path):
    write_split_layout(tmp_path, n_train=3, n_validation=1)
    manifest = split(scan(tmp_path))
    assert manifest.counts()["validation"] == {"cats": 1, "dogs": 1}
    assert manifest.missing()["test"] == ["cats", "dogs"]


def test_adding_files_keeps_the_order_of_the_others(tmp_path):
    """A file's place depends on its own hash, so new files do not reshuffle the old ones."""
    for i in range(10):
        write_image(tmp_path / "a" / f"{i}.png", size=(8, 8))
        write_image(tmp_path / "b" / f"{i}.png", size=(8, 8))
    before = split(scan(tmp_path), seed=3)
    write_image(tmp_path / "a" / "new.png", size=(8, 8))
    after = split(scan(tmp_path), seed=3)
    moved = {path for path, name in assignment(before).items() if assignment(after)[path] != name}
    assert len(moved) <= 2  # at most one file crosses each of the two cuts


def test_manifest_round_trip_and_files(tmp_path, tiny_dataset):
    manifest = split(scan(tiny_dataset), seed=5)
    path = manifest.write(tmp_path / "splits.csv")
    assert path.read_text().splitlines()[0] == "path,class,split"
    again = Manifest.read(path, tiny_dataset)
    assert again.rows == manifest.rows and again.class_names == ["cats", "dogs"]

    paths, labels = again.files("validation")
    assert labels.dtype == "int32" and len(paths) == len(labels) == 4
    for file, label in zip(paths, labels, strict=True):
        assert file.startswith(str(tiny_dataset)) and f"/{again.class_names[label]}/" in file


@pytest.mark.parametrize(
    "text, message",
    [
        ("file,label\n", "is not a catdog manifest"),
        ("path,class,split\ncats/a.jpg,cats,holdout\ndogs/b.jpg,dogs,train\n", "unknown split 'holdout'"),
        ("path,class,split\n../secret.jpg,cats,train\ndogs/b.jpg,dogs,train\n", "not a path inside the data folder"),
        ("path,class,split\ncats/a.jpg,cats\n", "expected 3 fields"),
        ("path,class,split\ncats/a.jpg,cats,train\n", "lists 1 classes"),
    ],
)
def test_bad_manifests_are_clear_errors(tmp_path, text, message):
    (tmp_path / "splits.csv").write_text(text)
    with pytest.raises(CatdogError, match=message):
        Manifest.read(tmp_path / "splits.csv", tmp_path)


def test_a_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(CatdogError, match="does not exist"):
        Manifest.read(tmp_path / "nope.csv", tmp_path)
