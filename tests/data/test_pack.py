"""Packed data sets: `catdog data pack`, then training, evaluation and summaries from the pack,
local and at a URL (TensorFlow's in-memory `ram://` file system stands in for gs://)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from catdog.cli import main
from catdog.data import load, summary
from catdog.data.pack import open_pack
from catdog.runs import folder

from conftest import one_line_error, train, write_image


@pytest.fixture(scope="module")
def packed(tmp_path_factory, reference_data):
    """Real photos, 10 per class, and their pack in 2 shards per split."""
    root = tmp_path_factory.mktemp("photos")
    for name in ("cats", "dogs"):
        (root / name).mkdir()
        for n in range(10):
            (root / name / f"{n}.jpg").symlink_to(reference_data / "train" / name / f"{name[:-1]}.{n}.jpg")
    (root / "dogs" / "broken.jpg").write_bytes(b"not a photo")
    out = tmp_path_factory.mktemp("packs") / "pack"
    assert main(["data", "pack", "--data", str(root), "--out", str(out), "--shards", "2"]) == 0
    return root, out


def test_a_pack_holds_the_split_and_gives_the_same_pixels(packed):
    root, out = packed
    names = sorted(p.name for p in out.iterdir())
    assert names == ["catdog-pack.json", "splits.csv", "test-00000-of-00002.tfrecord", "test-00001-of-00002.tfrecord",
                     "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
                     "validation-00000-of-00002.tfrecord", "validation-00001-of-00002.tfrecord"]
    meta = json.loads((out / "catdog-pack.json").read_text())
    assert meta["splits"]["train"]["count"] == 12 and meta["skipped"] == [["dogs/broken.jpg", "not an image"]]
    assert summary(out) | {"root": None} == summary(root) | {"root": None, "layout": "packed"}

    import keras

    # The pack's split was made when it was packed (default seed 42); load the folder with that seed,
    # after setting the global seed as training does.
    keras.utils.set_random_seed(42)
    from_folder = load(root, image_size=48, batch_size=32, seed=42)
    keras.utils.set_random_seed(42)
    from_pack = load(out, image_size=48, batch_size=32, seed=42)
    for split in ("train", "validation", "test"):
        (a, la), (b, lb) = (next(getattr(d, split).as_numpy_iterator()) for d in (from_folder, from_pack))
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_training_from_a_pack_matches_training_from_the_folder(packed, tmp_path):
    root, out = packed
    settings = dict(epochs=2, image_size=32, batch_size=4, seed=42)  # the pack's split: seed 42
    from_folder = train("scratch", root, out=tmp_path / "folder", **settings)
    from_pack = train("scratch", out, out=tmp_path / "pack", **settings)
    one, two = (folder.read_history(run / "history.csv") for run in (from_folder, from_pack))
    for a, b in zip(one, two, strict=True):  # the same images, in the same order, shuffled the same way
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["val_accuracy"] == b["val_accuracy"]
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (from_folder, from_pack)]
    assert metrics[0]["accuracy"] == metrics[1]["accuracy"] and metrics[0]["n"] == metrics[1]["n"] == 4
    assert json.loads((from_pack / "config.json").read_text())["data"] == str(out.resolve())
    assert main(["evaluate", str(from_pack), "--json"]) == 0  # evaluates on the pack's test shards


def test_a_pack_at_a_url_is_read_with_tensorflows_file_systems(packed, tmp_path):
    import tensorflow as tf

    _, out = packed
    url = "ram://catdog-test/pack"
    tf.io.gfile.makedirs(url)
    for path in out.iterdir():
        tf.io.gfile.copy(str(path), f"{url}/{path.name}", overwrite=True)
    assert open_pack(url).count("train") == 12
    run = train("scratch", url, out=tmp_path / "remote", epochs=1, image_size=32, batch_size=4)
    assert json.loads((run / "config.json").read_text())["data"] == url
    assert (run / "metrics.json").is_file()


def test_a_url_that_is_not_a_pack_is_one_line(tmp_path, capsys):
    one_line_error(capsys, main(["data", "info", "--data", "ram://nothing/here"]),
                   "is not a catdog pack; data at a URL must be packed first")


def test_packing_never_replaces_what_is_not_a_pack(packed, tmp_path, capsys):
    root, _ = packed
    theirs = tmp_path / "mine"
    write_image(theirs / "holiday.jpg")
    one_line_error(capsys, main(["data", "pack", "--data", str(root), "--out", str(theirs)]),
                   "is not a pack written by catdog")
    assert [p.name for p in theirs.iterdir()] == ["holiday.jpg"]
