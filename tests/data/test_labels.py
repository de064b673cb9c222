"""Labels from a CSV file (Kaggle-style ids without extensions), and small classes left out with --min-images."""

from __future__ import annotations

import json

import pytest

from catdog.cli import main
from catdog.data import Source, scan_and_split
from catdog.data.labels import LabelsFile
from catdog.data.scan import scan
from catdog.errors import CatdogError

from conftest import one_line_error, write_image
from messy import copy, photos


@pytest.fixture
def kaggle(reference_data, tmp_path):
    """A flat folder of photos named by hex ids, and `labels.csv` (`id,breed`) listing them without extensions
    (lines 2 to 17), then one row of each kind that cannot be used (lines 18 to 21), and a file no row names."""
    root = tmp_path / "kaggle"
    rows = []
    for class_name, breed in (("cats", "tabby"), ("dogs", "boxer")):
        for i, photo in enumerate(photos(reference_data, class_name, 8)):
            image_id = f"{breed[:2]}{i:030x}"
            copy([photo], root / "train", names=lambda _, image_id=image_id: f"{image_id}.jpg")
            rows.append(f"train/{image_id},{breed}")
    copy(photos(reference_data, "cats", 1, start=40), root / "train", names=lambda _: "x.jpg")
    copy(photos(reference_data, "cats", 1, start=31), root / "train", names=lambda _: "twin.jpg")
    write_image(root / "train" / "twin.png", size=(16, 16))
    rows += ["train/gone0001,tabby", "train/x.jpg,", ",boxer", "train/twin,tabby"]
    copy(photos(reference_data, "dogs", 1, start=20), root / "train", names=lambda _: "unlisted.jpg")
    labels = tmp_path / "labels.csv"
    labels.write_text("id,breed\n" + "\n".join(rows) + "\n")
    return root, labels


def test_a_csv_labels_a_flat_folder_by_ids_without_extensions(kaggle):
    root, labels = kaggle
    found = scan(root, labels=LabelsFile(labels, "id", "breed"))
    assert found.layout == "csv" and found.class_names == ["boxer", "tabby"]
    assert len(found.images) == 16
    assert all(image.path.startswith("train/") and image.path.endswith(".jpg") for image in found.images)
    skipped = dict(found.skipped)
    assert skipped["train/gone0001"] == "labels.csv, line 18: no such file, with or without an extension"
    assert skipped["train/x.jpg"] == "labels.csv, line 19: empty label"
    assert "labels.csv, line 20: not a path inside the data folder" in skipped.values()
    assert skipped["train/twin"].startswith("labels.csv, line 21: names 2 files (train/twin.jpg, train/twin.png)")
    assert skipped["train/unlisted.jpg"] == "not listed in labels.csv"
    assert skipped["train/twin.png"] == "not listed in labels.csv"


def test_data_info_takes_labels_and_their_columns(kaggle, capsys):
    root, labels = kaggle
    assert main(["data", "info", "--data", str(root), "--labels", str(labels), "--path-column", "id",
                 "--label-column", "breed", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layout"] == "csv" and report["classes"] == ["boxer", "tabby"]
    assert {split: sum(counts.values()) for split, counts in report["splits"].items()} == {
        "train": 12, "validation": 2, "test": 2}
    assert "train/unlisted.jpg" in {item["path"] for item in report["skipped"]}


def test_a_file_listed_twice_with_two_labels_is_skipped(reference_data, tmp_path):
    copy(photos(reference_data, "cats", 3), tmp_path / "images")
    names = sorted(p.name for p in (tmp_path / "images").iterdir())
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(
        f"images/{name},{label}\n" for name, label in zip(names, ["a", "b", "a"], strict=True))
        + f"images/{names[0]},b\n")
    found = scan(tmp_path, labels=LabelsFile(tmp_path / "labels.csv"))  # inside the data folder: not a file to label
    assert [image.path for image in found.images] == [f"images/{names[1]}", f"images/{names[2]}"]
    assert dict(found.skipped) == {f"images/{names[0]}": "labels.csv, line 5: listed again with other labels "
                                                         "(a, then b)"}


@pytest.mark.parametrize("header, message", [
    ("file,class", "has no column 'path' or 'label' (its header: file, class); name the columns with --path-column "
                   "and --label-column"),
    ("path,breed", "has no column 'label' (its header: path, breed); name the columns with --label-column"),
])
def test_a_csv_without_its_columns_is_a_one_line_error(tmp_path, capsys, make_image, header, message):
    make_image(tmp_path / "a.jpg")
    (tmp_path / "labels.csv").write_text(f"{header}\na.jpg,x\n")
    code = main(["data", "info", "--data", str(tmp_path), "--labels", str(tmp_path / "labels.csv")])
    one_line_error(capsys, code, message)


def test_label_options_need_their_file_and_it_must_exist(tmp_path, capsys, make_image):
    make_image(tmp_path / "a.jpg")
    one_line_error(capsys, main(["data", "info", "--data", str(tmp_path), "--path-column", "id"]),
                   "--path-column, --label-column, --label-delimiter and --task say how to read --labels; give "
                   "--labels FILE.csv too")
    one_line_error(capsys, main(["data", "info", "--data", str(tmp_path), "--labels", str(tmp_path / "no.csv")]),
                   f"labels file {tmp_path / 'no.csv'} does not exist")
    (tmp_path / "one.csv").write_text("path,label\na.jpg,cats\n")
    one_line_error(capsys, main(["data", "info", "--data", str(tmp_path), "--labels", str(tmp_path / "one.csv")]),
                   "gives 1 class to files of the data folder (cats); a classifier needs at least two")


def test_min_images_leaves_out_small_classes_with_a_warning(tmp_path, capsys):
    for n_class, (class_name, n) in enumerate((("a", 1), ("b", 2), ("c", 6), ("d", 9))):
        for i in range(n):
            write_image(tmp_path / class_name / f"{i}.png", size=(16, 16), seed=100 * n_class + i)
    found, manifest = scan_and_split(Source(tmp_path, min_images=3))
    assert found.class_names == manifest.class_names == ["c", "d"]
    assert found.warnings == ["class a left out: 1 usable images, fewer than min_images=3",
                              "class b left out: 2 usable images, fewer than min_images=3"]
    one_line_error(capsys, main(["data", "info", "--data", str(tmp_path), "--min-images", "7"]),
                   "only 1 classes have at least --min-images=7 usable images; a classifier needs at least two")


def test_without_min_images_a_labelled_class_with_no_usable_file_is_an_error(tmp_path, make_image):
    make_image(tmp_path / "a.jpg")
    make_image(tmp_path / "b.jpg", seed=1)
    (tmp_path / "c.jpg").write_bytes(b"")
    (tmp_path / "labels.csv").write_text("path,label\na.jpg,x\nb.jpg,y\nc.jpg,z\n")
    with pytest.raises(CatdogError, match="class z of .* has no usable images .*leave such classes out with"):
        scan(tmp_path, labels=LabelsFile(tmp_path / "labels.csv"))
    found = scan(tmp_path, labels=LabelsFile(tmp_path / "labels.csv"), min_images=1)
    assert found.class_names == ["x", "y"] and ("c.jpg", "empty file") in found.skipped


def test_evaluate_scores_a_folder_labelled_by_a_csv(tmp_path, capsys):
    from conftest import write_tiny_run

    run = write_tiny_run(tmp_path / "run")
    for i in range(6):
        write_image(tmp_path / "new" / f"{i:04x}.png", size=(24, 24), seed=i)
    (tmp_path / "new" / "labels.csv").write_text("id,animal\n" + "".join(f"{i:04x},{'cats' if i % 2 else 'dogs'}\n"
                                                                         for i in range(5)))
    assert main(["evaluate", str(run), "--data", str(tmp_path / "new"), "--labels", str(tmp_path / "new/labels.csv"),
                 "--path-column", "id", "--label-column", "animal", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 5
    assert {name: row["n"] for name, row in metrics["per_class"].items()} == {"cats": 2, "dogs": 3}
    one_line_error(capsys, main(["evaluate", str(run), "--labels", str(tmp_path / "new/labels.csv")]),
                   "--labels gives the classes of the images of --data; give --data DIR too")
