"""The scan cache: a second scan of an unchanged folder reads no image, a changed file is read again."""

from __future__ import annotations

import os

import pytest

import catdog.data.scan_cache as scan_cache
from catdog.data.scan import scan
from catdog.errors import CatdogError

from conftest import write_image


@pytest.fixture
def counted(monkeypatch):
    """Counts the images `inspect_image` reads."""
    reads = []
    real = scan_cache.inspect_image

    def inspect(path, max_pixels, **options):
        reads.append(os.fspath(path))
        return real(path, max_pixels, **options)

    monkeypatch.setattr(scan_cache, "inspect_image", inspect)
    return reads


def test_a_second_scan_reads_only_what_changed(tiny_dataset, counted, tmp_path, monkeypatch):
    monkeypatch.setenv("CATDOG_HOME", str(tmp_path / "home"))
    first = scan(tiny_dataset)
    assert len(counted) == 24
    counted.clear()

    again = scan(tiny_dataset)
    assert counted == [] and again.images == first.images and again.skipped == first.skipped
    # The perceptual hashes that group duplicates come from the cache as they were computed.
    assert [i.phash for i in again.images] == [i.phash for i in first.images]
    assert all(isinstance(i.phash, int) for i in again.images)

    changed = tiny_dataset / "cats" / "cats.3.jpg"
    changed.write_bytes(b"no longer a photo")
    write_image(tiny_dataset / "dogs" / "new.jpg")
    third = scan(tiny_dataset)
    assert sorted(counted) == sorted([str(changed), str(tiny_dataset / "dogs" / "new.jpg")])
    assert dict(third.skipped)["cats/cats.3.jpg"] == "not an image"
    assert len(third.images) == 24

    # The cache lives in catdog's own folder, never in the data folder.
    assert scan_cache.database(tiny_dataset).is_relative_to(tmp_path / "home")
    assert not [p for p in tiny_dataset.rglob("*") if p.suffix == ".sqlite"]


def test_a_scan_that_needs_hashes_reads_files_cached_without_them(tiny_dataset, counted, tmp_path, monkeypatch):
    monkeypatch.setenv("CATDOG_HOME", str(tmp_path / "home"))
    scan(tiny_dataset, find_duplicates=False)
    counted.clear()
    assert all(image.phash is not None for image in scan(tiny_dataset).images)
    assert len(counted) == 24


def test_a_different_pixel_limit_checks_again(tiny_dataset, counted, tmp_path, monkeypatch):
    monkeypatch.setenv("CATDOG_HOME", str(tmp_path / "home"))
    scan(tiny_dataset)
    counted.clear()
    with pytest.raises(CatdogError, match="has no usable images"):  # every image is larger than 100 pixels
        scan(tiny_dataset, max_pixels=100)
    assert len(counted) == 24


def test_a_damaged_or_unwritable_cache_only_costs_time(tiny_dataset, counted, tmp_path, monkeypatch):
    monkeypatch.setenv("CATDOG_HOME", str(tmp_path / "home"))
    first = scan(tiny_dataset)
    scan_cache.database(tiny_dataset).write_bytes(b"this is not a database")
    assert scan(tiny_dataset).images == first.images

    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv("CATDOG_HOME", str(blocked))
    counted.clear()
    assert scan(tiny_dataset).images == first.images and len(counted) == 24
