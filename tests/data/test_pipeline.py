"""catdog.data.pipeline and catdog.data.load: batches, labels, shuffling, caching, and a file gone bad."""

from __future__ import annotations

import numpy as np
import pytest

from catdog import data
from catdog.data.images import load_images
from catdog.data.pipeline import make_dataset
from catdog.data.splits import Manifest
from catdog.errors import CatdogError

from conftest import write_image

SIZE = 24


def collect(dataset):
    images, labels = zip(*((x.numpy(), y.numpy()) for x, y in dataset), strict=True)
    return np.concatenate(images), np.concatenate(labels)


def test_load_gives_batches_of_float_images_and_int_labels(tiny_dataset):
    loaded = data.load(tiny_dataset, image_size=SIZE, batch_size=5, seed=3)
    assert loaded.class_names == ["cats", "dogs"] == loaded.train.class_names
    for name in ("train", "validation", "test"):
        dataset = getattr(loaded, name)
        x, y = next(iter(dataset))
        assert x.dtype == "float32" and x.shape[1:] == (SIZE, SIZE, 3) and y.dtype == "int32"
        images, labels = collect(dataset)
        assert len(labels) == sum(loaded.manifest.counts()[name].values())
        assert images.min() >= 0 and images.max() <= 255
        # cats are red and dogs blue in the tiny data set: each label must go with its own image
        red, blue = images[..., 0].mean(axis=(1, 2)), images[..., 2].mean(axis=(1, 2))
        assert np.array_equal(labels == 0, red > blue)


def test_training_split_is_reshuffled_every_epoch_the_same_way_for_a_seed(tiny_dataset):
    def epochs(seed):
        train = data.load(tiny_dataset, image_size=8, batch_size=4, seed=seed).train
        return [collect(train)[0].mean(axis=(1, 2, 3)).tolist() for _ in range(2)]

    first, second = epochs(seed=1)
    assert first != second and sorted(first) == sorted(second)
    assert epochs(seed=1) == [first, second]


def test_validation_and_test_keep_their_order(tiny_dataset):
    loaded = data.load(tiny_dataset, image_size=8, batch_size=4)
    paths, labels = loaded.manifest.files("test")
    images, got = collect(loaded.test)
    np.testing.assert_array_equal(got, labels)
    np.testing.assert_array_equal(images, load_images(paths, 8))  # the pipeline decodes as prediction does


@pytest.mark.parametrize("cache", [True, False])
def test_a_file_corrupted_after_scanning_is_dropped_not_fatal(tiny_dataset, cache):
    loaded = data.load(tiny_dataset, image_size=8, batch_size=4, cache=cache)
    paths, _ = loaded.manifest.files("train")
    with open(paths[0], "r+b") as f:
        f.write(b"garbage" * 10)
    (tiny_dataset / loaded.manifest.rows[1].path).unlink()
    images, labels = collect(loaded.train)
    assert len(labels) == len(paths) - 2


def test_a_png_named_jpg_decodes_by_content(tmp_path):
    path = write_image(tmp_path / "photo.jpg", fmt="PNG", color=(0, 200, 0))
    images, labels = collect(make_dataset([str(path)], [1], 8, 4, shuffle=False))
    assert labels.tolist() == [1] and images[0, ..., 1].mean() > 150


def test_reusing_a_manifest_reproduces_the_split_without_rescanning(tiny_dataset, tmp_path):
    first = data.load(tiny_dataset, image_size=8, seed=11)
    manifest = Manifest.read(first.manifest.write(tmp_path / "splits.csv"), tiny_dataset)
    write_image(tiny_dataset / "cats" / "added-later.jpg")
    again = data.load(tiny_dataset, image_size=8, seed=99, manifest=manifest)
    assert again.manifest.rows == first.manifest.rows
    assert again.manifest.root == tiny_dataset


def test_a_manifest_naming_missing_files_is_a_clear_error(tiny_dataset, tmp_path):
    manifest = data.scan_and_split(tiny_dataset)[1]
    (tiny_dataset / manifest.rows[0].path).unlink()
    with pytest.raises(CatdogError, match=f"1 files of the manifest are missing from {tiny_dataset}"):
        data.load(tiny_dataset, manifest=manifest)


def test_data_folder_comes_from_the_argument_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CATDOG_DATA", str(tmp_path / "from-env"))
    assert data.resolve_data_dir(tmp_path / "given") == tmp_path / "given"
    assert data.resolve_data_dir(None) == tmp_path / "from-env"


def test_without_either_the_cached_download_is_used(monkeypatch, tmp_path):
    monkeypatch.delenv("CATDOG_DATA", raising=False)
    monkeypatch.setenv("CATDOG_HOME", str(tmp_path))
    (tmp_path / "cats_and_dogs_filtered").mkdir()
    assert data.resolve_data_dir(None) == tmp_path / "cats_and_dogs_filtered"
