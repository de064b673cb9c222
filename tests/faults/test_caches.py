"""Faults: a scan cache that cannot go stale (issue 24, item 8).

A file whose bytes change while its size and modification time are put back (`cp -p`, rsync,
backup restores, `touch -r` do it) is checked again, and a damaged cache database is moved
aside and rebuilt with a warning, so that later scans are fast again.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest

import catdog.data.scan_cache as scan_cache
from catdog.data.scan import scan

from conftest import write_image


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CATDOG_HOME", str(tmp_path / "home"))
    root = tmp_path / "photos"
    for name, colour in (("cats", (200, 40, 30)), ("dogs", (30, 40, 200))):
        for i in range(3):
            write_image(root / name / f"{i}.png", color=colour, seed=i)
    return root


def overwrite_keeping_size_and_time(path: Path, contents: bytes) -> None:
    """New bytes of the same length, with the modification time put back as `touch -r` does."""
    before = path.stat()
    assert len(contents) == before.st_size
    path.write_bytes(contents)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns


def test_a_file_changed_behind_its_modification_time_is_checked_again(folder):
    photo = folder / "cats" / "0.png"
    assert scan(folder).skipped == []
    good = photo.read_bytes()

    overwrite_keeping_size_and_time(photo, b"\0" * len(good))
    assert dict(scan(folder).skipped) == {"cats/0.png": "not an image"}

    overwrite_keeping_size_and_time(photo, good)  # repaired: usable again, and trained on
    found = scan(folder)
    assert found.skipped == [] and "cats/0.png" in [image.path for image in found.images]


def test_a_file_replaced_by_another_of_the_same_size_and_time_is_checked_again(folder, tmp_path):
    photo = folder / "dogs" / "1.png"
    scan(folder)
    replacement = tmp_path / "replacement"
    replacement.write_bytes(b"x" * photo.stat().st_size)
    before = photo.stat()
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(replacement, photo)  # as rsync does: a new file (another inode) moved into place
    assert dict(scan(folder).skipped) == {"dogs/1.png": "not an image"}


def test_a_damaged_cache_is_moved_aside_and_rebuilt_with_a_warning(folder, monkeypatch, caplog):
    first = scan(folder)
    database = scan_cache.database(folder)
    database.write_bytes(b"this is not a database" * 100)

    with caplog.at_level(logging.WARNING, logger="catdog"):
        assert scan(folder).images == first.images
    assert "was damaged" in caplog.text and "started a new one" in caplog.text
    assert database.with_name(database.name + ".damaged").read_bytes() == b"this is not a database" * 100
    with sqlite3.connect(database) as connection:  # the new one holds every file again
        assert connection.execute("SELECT COUNT(*) FROM checked_v3").fetchone()[0] == 6

    reads = []
    monkeypatch.setattr(scan_cache, "inspect_image", lambda *args, **kwargs: reads.append(args) or pytest.fail())
    assert scan(folder).images == first.images and reads == []  # fast again: nothing read
