"""Multi-label data: tags read from CSV cells (delimiters, empty cells, the task detected or asked for),
split by iterative stratification, counted and described."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from catdog.cli import main
from catdog.data import Source, load, scan_and_split
from catdog.data.labels import LabelsFile, read_labels, split_labels
from catdog.data.splits import Manifest
from catdog.errors import ParameterError

from conftest import one_line_error, write_image


def tagged_folder(root: Path, cells: list[str], delimiter: str = " ") -> Path:
    """`root/images/i.jpg` for each cell, and `tags.csv` (`id,tags`, ids without extensions) giving
    each image its cell (tags joined by `delimiter`)."""
    for i in range(len(cells)):  # colours far apart, so that no two images look like copies of one photo
        write_image(root / "images" / f"{i}.jpg", size=(16, 16), color=((i * 53) % 256, (i * 97) % 256, (i * 29) % 256),
                    seed=i)
    rows = [f"images/{i},{cell}" for i, cell in enumerate(cells)]
    (root / "tags.csv").write_text("id,tags\n" + "\n".join(rows) + "\n")
    return root / "tags.csv"


def source(root: Path, labels: Path, **options) -> Source:
    return Source(root, LabelsFile(labels, "id", "tags", **options))


@pytest.mark.parametrize(("cell", "delimiter", "expected"), [
    ("cats dogs", " ", ("cats", "dogs")),
    (" dogs  cats ", " ", ("cats", "dogs")),
    ("cats|dogs|cats", "|", ("cats", "dogs")),
    ("golden retriever;pug", ";", ("golden retriever", "pug")),
    ("", " ", ()),
    ("  ", " ", ()),
])
def test_a_cell_holds_labels_separated_by_the_delimiter(cell, delimiter, expected):
    assert split_labels(cell, delimiter) == expected


def test_several_labels_in_a_row_make_the_data_set_multi_label_and_empty_cells_are_kept(tmp_path):
    labels = tagged_folder(tmp_path, ["cats", "cats dogs", "", "dogs", "dogs cats", ""])
    found, manifest = scan_and_split(source(tmp_path, labels))
    assert found.task == manifest.task == "multilabel" and found.class_names == ["cats", "dogs"]
    assert {image.path: image.labels for image in found.images}["images/2.jpg"] == ()  # kept, no tag
    assert len(found.images) == 6 and not found.skipped
    files = [f"images/{i}.jpg" for i in range(6)]
    said = read_labels(LabelsFile(labels, "id", "tags"), tmp_path, files).reason
    assert said.startswith("multi-label: 2 of 6 rows have several labels separated by ' '")


def test_one_label_per_row_stays_one_class_per_image_and_an_empty_cell_is_skipped(tmp_path):
    labels = tagged_folder(tmp_path, ["cats", "dogs", "", "cats", "dogs", "cats"])
    found, _ = scan_and_split(source(tmp_path, labels))
    assert found.task == "multiclass" and len(found.images) == 5
    assert dict(found.skipped)["images/2.jpg"] == "tags.csv, line 4: empty label"


def test_the_task_can_be_asked_for(tmp_path):
    labels = tagged_folder(tmp_path, ["cats", "dogs", "", "cats dogs", "dogs", "cats"])
    forced, _ = scan_and_split(source(tmp_path, labels, task="multilabel"))
    assert forced.task == "multilabel" and len(forced.images) == 6
    single, _ = scan_and_split(source(tmp_path, labels, task="multiclass"))
    assert single.task == "multiclass" and len(single.images) == 4
    reasons = dict(single.skipped)
    assert reasons["images/3.jpg"].startswith("tags.csv, line 5: 2 labels (cats, dogs) where each image has one class")
    # Class names with spaces: another delimiter keeps them whole.
    spaced = tagged_folder(tmp_path / "spaced", ["golden retriever", "pug", "golden retriever", "pug"])
    found, _ = scan_and_split(source(tmp_path / "spaced", spaced, delimiter=";"))
    assert found.task == "multiclass" and found.class_names == ["golden retriever", "pug"]


@pytest.mark.parametrize(("options", "message"), [
    ({"task": "both"}, "unknown task 'both'"),
    ({"delimiter": ""}, "label_delimiter must be a character"),
])
def test_impossible_labels_settings_name_the_setting(tmp_path, options, message):
    labels = tagged_folder(tmp_path, ["cats", "dogs"])
    with pytest.raises(ParameterError, match=message):
        scan_and_split(source(tmp_path, labels, **options))


def test_the_command_line_takes_the_delimiter_and_the_task(tmp_path, capsys):
    labels = tagged_folder(tmp_path, ["cats|dogs", "cats", "", "dogs", "cats|dogs", "dogs", "cats", ""], "|")
    base = ["data", "info", "--data", str(tmp_path), "--labels", str(labels), "--path-column", "id",
            "--label-column", "tags", "--json"]
    assert main([*base, "--label-delimiter", "|"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "multilabel" and report["classes"] == ["cats", "dogs"]
    assert sum(report["multilabel"]["without_tags"].values()) == 2
    assert main([*base, "--label-delimiter", "|", "--task", "multiclass"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "multiclass"
    one_line_error(capsys, main(["data", "info", "--data", str(tmp_path), "--task", "multilabel"]),
                   "give --labels FILE.csv too")


def kaggle_like(root: Path, n: int = 120, seed: int = 0) -> Path:
    """`n` images with tags drawn from five of very different frequencies, pairs and empty rows among them."""
    rng = np.random.default_rng(seed)
    frequencies = {"common": 0.5, "usual": 0.3, "sometimes": 0.15, "rare": 0.05}
    cells = []
    for i in range(n):
        tags = [tag for tag, p in frequencies.items() if rng.random() < p]
        cells.append(" ".join(tags + (["unique"] if i in (3, 50, 90) else [])))
    return tagged_folder(root, cells)


def test_every_tag_with_three_images_is_in_every_split_and_the_split_is_seeded(tmp_path):
    labels = kaggle_like(tmp_path)
    found, manifest = scan_and_split(source(tmp_path, labels), seed=7)
    counts = manifest.counts()
    totals = {tag: sum(counts[split][tag] for split in counts) for tag in manifest.class_names}
    assert totals["unique"] == 3
    for tag, total in totals.items():
        if total >= 3:
            assert all(counts[split][tag] >= 1 for split in counts), (tag, counts)
        # Each split gets its share of each tag: within two images of its fraction (rounded).
        for split, fraction in (("test", 0.15), ("validation", 0.15)):
            assert abs(counts[split][tag] - fraction * total) <= 2, (tag, split, counts)
    sizes = {split: sum(row.split == split for row in manifest.rows) for split in counts}
    for split, share in (("train", 0.7), ("validation", 0.15), ("test", 0.15)):  # of the 120 images
        assert abs(sizes[split] - share * 120) <= 2, sizes
    again = scan_and_split(source(tmp_path, labels), seed=7)[1]
    other = scan_and_split(source(tmp_path, labels), seed=8)[1]
    assert again.rows == manifest.rows and other.rows != manifest.rows


def test_the_manifest_records_the_tags_and_reads_back_the_same(tmp_path):
    labels = kaggle_like(tmp_path, n=40)
    _, manifest = scan_and_split(source(tmp_path, labels))
    path = manifest.write(tmp_path / "splits.csv")
    assert path.read_text().splitlines()[0] == "path,labels,split"
    assert Manifest.read(path, tmp_path) == manifest
    paths, y = manifest.files("train")
    assert y.shape == (len(paths), len(manifest.class_names)) and y.dtype == np.float32
    index = {name: i for i, name in enumerate(manifest.class_names)}
    for row, encoded in zip([row for row in manifest.rows if row.split == "train"], y, strict=True):
        assert sorted(np.flatnonzero(encoded)) == sorted(index[name] for name in row.labels)


def test_the_pipeline_gives_rows_of_tags(tmp_path):
    labels = kaggle_like(tmp_path, n=40)
    data = load(source(tmp_path, labels), image_size=16, batch_size=8)
    images, y = next(iter(data.train))
    assert data.task == "multilabel" and images.shape[1:] == (16, 16, 3) and y.shape[1] == len(data.class_names)
    assert y.dtype.name == "float32"


def test_data_info_describes_tags_and_scores_the_baseline(tmp_path, capsys):
    labels = kaggle_like(tmp_path)
    assert main(["data", "info", "--data", str(tmp_path), "--labels", str(labels), "--path-column", "id",
                 "--label-column", "tags"]) == 0
    out = capsys.readouterr().out
    assert "tags per image:" in out and "most often together: common + usual" in out
    # The most frequent tag set of the training split is none at all.
    assert "baseline (always no tag, the most frequent tags in train, scored on test): every tag right" in out


def test_a_review_refuses_tags_in_one_line(tmp_path, capsys):
    labels = tagged_folder(tmp_path, ["cats dogs", "cats", "", "dogs", "cats dogs", "dogs", "cats", ""])
    one_line_error(capsys, main(["review", "--data", str(tmp_path), "--labels", str(labels), "--path-column", "id",
                                 "--label-column", "tags", "--accept-suggestions", "--export",
                                 str(tmp_path / "fixed.csv")]), "several tags", "one class per image")
    assert not (tmp_path / "fixed.csv").exists()
