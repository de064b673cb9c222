"""catdog.data.fetch, against a local HTTP server serving zips built here (no network)."""

from __future__ import annotations

import hashlib
import io
import logging
import stat
import zipfile

import pytest

from catdog.data import fetch as fetch_module
from catdog.data.fetch import content_digest, fetch, reference_files
from catdog.errors import CatdogError

from conftest import write_image

NAME = "cats_and_dogs_filtered"


def build_zip(tmp_path, extra: dict[str, bytes] | None = None, symlink: str | None = None) -> bytes:
    """A zip of the split layout with one tiny image per class and folder, plus any `extra` entries."""
    image = write_image(tmp_path / "image.jpg", size=(8, 8)).read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{NAME}/README.txt", b"catdog-test-payload")
        for folder in ("train", "validation"):
            for class_name in ("cats", "dogs"):
                zf.writestr(f"{NAME}/{folder}/{class_name}/{class_name}.0.jpg", image)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
        if symlink:
            link = zipfile.ZipInfo(f"{NAME}/train/cats/link.jpg")
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(link, symlink)
    return buffer.getvalue()


def serve(server, archive: bytes) -> dict:
    """Serve `archive` and return fetch's arguments for it."""
    folder, base = server
    (folder / "data.zip").write_bytes(archive)
    return {"url": f"{base}/data.zip", "size": len(archive), "sha256": hashlib.sha256(archive).hexdigest(),
            "content_sha256": None}


def test_a_good_archive_is_verified_and_extracted(server, tmp_path, caplog):
    caplog.set_level("INFO", logger="catdog")
    dest = tmp_path / "cache"
    folder = fetch(dest, **serve(server, build_zip(tmp_path)))
    assert folder == dest / NAME
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg")) == [
        "train/cats/cats.0.jpg",
        "train/dogs/dogs.0.jpg",
        "validation/cats/cats.0.jpg",
        "validation/dogs/dogs.0.jpg",
    ]
    assert [p.name for p in dest.iterdir()] == [NAME]  # no temporary files left
    assert "downloading http://127.0.0.1" in caplog.text

    # already there: no second download
    (server[0] / "data.zip").unlink()
    assert fetch(dest, url=f"{server[1]}/data.zip") == folder


@pytest.mark.parametrize(
    "extra, symlink, problem",
    [
        ({f"{NAME}/../escaped.txt": b"x"}, None, "a path with '..'"),
        ({"/etc/escaped.txt": b"x"}, None, "an absolute path"),
        ({}, "/etc/passwd", "a symbolic link"),
    ],
)
def test_an_unsafe_archive_is_refused_whole(server, tmp_path, extra, symlink, problem):
    dest = tmp_path / "cache"
    with pytest.raises(CatdogError, match=f"unsafe: .* is {problem}; nothing was extracted"):
        fetch(dest, **serve(server, build_zip(tmp_path, extra, symlink)))
    assert list(dest.iterdir()) == []
    assert not list(tmp_path.rglob("escaped.txt"))


def test_a_wrong_checksum_is_refused_and_nothing_is_left(server, tmp_path):
    dest = tmp_path / "cache"
    arguments = serve(server, build_zip(tmp_path)) | {"sha256": "0" * 64}
    with pytest.raises(CatdogError, match="has sha256 [0-9a-f]{64}, not the expected 0{64}"):
        fetch(dest, **arguments)
    assert list(dest.iterdir()) == []


def test_a_wrong_size_is_refused(server, tmp_path):
    arguments = serve(server, build_zip(tmp_path))
    with pytest.raises(CatdogError, match="larger than the expected"):
        fetch(tmp_path / "cache", **arguments | {"size": arguments["size"] - 1})
    with pytest.raises(CatdogError, match=f"is {arguments['size']} bytes, not the expected"):
        fetch(tmp_path / "cache", **arguments | {"size": arguments["size"] + 1})
    assert list((tmp_path / "cache").iterdir()) == []


def test_without_a_recorded_checksum_the_exact_size_is_accepted_with_a_warning(server, tmp_path, caplog):
    arguments = serve(server, build_zip(tmp_path))
    target = fetch(tmp_path / "cache", **arguments | {"sha256": None})
    assert target.is_dir()
    assert f"no sha256 is recorded for {arguments['url']}" in caplog.text
    assert arguments["sha256"] in caplog.text


def test_an_archive_of_the_right_size_and_content_is_accepted_without_a_warning(server, tmp_path, caplog):
    caplog.set_level("INFO", logger="catdog")
    archive = build_zip(tmp_path)
    reference = [f"{folder}/{class_name}/{class_name}.0.jpg" for folder in ("train", "validation")
                 for class_name in ("cats", "dogs")]
    digest = content_digest(fetch(tmp_path / "first", **serve(server, archive)), reference)
    arguments = serve(server, archive) | {"sha256": None, "content_sha256": digest, "reference": reference}
    assert fetch(tmp_path / "cache", **arguments).is_dir()
    assert f"the download from {arguments['url']} is verified by content: it holds the 4 files" in caplog.text
    assert f"Its own sha256 is {hashlib.sha256(archive).hexdigest()}" in caplog.text
    assert f"beyond the reference data set, not covered by its digest: {NAME}/README.txt" in caplog.text
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_the_pinned_content_digest_is_that_of_the_shared_copy(reference_data):
    """The reference set is exactly the shared copy's files, and the pinned digest is theirs."""
    reference = reference_files()
    found = sorted(p.relative_to(reference_data).as_posix() for p in reference_data.rglob("*") if p.is_file())
    assert found == reference and len(reference) == 2999
    assert "train/cats/cat.459.jpg" not in reference
    assert content_digest(reference_data, reference) == fetch_module.DATASET_CONTENT_SHA256
    # the caps leave room for the real thing (2,999 files + cat.459.jpg, folders and a few extras)
    total = sum((reference_data / path).stat().st_size for path in reference)
    assert total * 2 < fetch_module.DATASET_MAX_EXTRACTED_BYTES
    assert len(reference) * 3 < fetch_module.DATASET_MAX_ENTRIES


def seed_zip(path, reference_data, changed: str | None = None):
    """A zip of the shared copy (as the published archive lays it out), with one byte of `changed` flipped."""
    with zipfile.ZipFile(path, "w") as zf:  # stored: JPEGs do not compress
        for relative in reference_files():
            data = bytearray((reference_data / relative).read_bytes())
            if relative == changed:
                data[len(data) // 2] ^= 0x01
            zf.writestr(f"{NAME}/{relative}", bytes(data))
        zf.writestr(f"{NAME}/vectorize.py", b"# an extra file, as the published archive has\n")
    return path


@pytest.mark.slow
def test_a_tampered_copy_of_the_seed_data_is_refused_by_the_pinned_digest(server, reference_data, tmp_path):
    folder, base = server
    dest = tmp_path / "cache"
    archive = seed_zip(folder / "data.zip", reference_data, changed="train/dogs/dog.500.jpg")
    with pytest.raises(CatdogError, match="differ from the reference data set .*; nothing was moved into place$"):
        fetch(dest, url=f"{base}/data.zip", size=archive.stat().st_size, sha256=None)  # the pinned content digest
    assert list(dest.iterdir()) == []

    seed_zip(archive, reference_data)  # the same without the change passes
    assert fetch(dest, url=f"{base}/data.zip", size=archive.stat().st_size, sha256=None) == dest / NAME


def test_with_neither_size_nor_checksum_the_download_is_refused_with_its_checksum(server, tmp_path):
    arguments = serve(server, build_zip(tmp_path))
    with pytest.raises(CatdogError, match=f"cannot be verified: .* its sha256 is {arguments['sha256']}"):
        fetch(tmp_path / "cache", **arguments | {"sha256": None, "size": None})
    assert list((tmp_path / "cache").iterdir()) == []


def test_an_entry_failing_its_crc_is_refused(server, tmp_path):
    archive = bytearray(build_zip(tmp_path))
    payload = archive.index(b"catdog-test-payload")  # stored uncompressed, so the bytes are there
    archive[payload] ^= 0xFF
    with pytest.raises(CatdogError, match="fails its CRC check"):
        fetch(tmp_path / "cache", **serve(server, bytes(archive)) | {"sha256": None})
    assert list((tmp_path / "cache").iterdir()) == []


def test_an_archive_without_the_data_folder_or_not_a_zip_is_refused(server, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("other/readme.txt", "hello")
    with pytest.raises(CatdogError, match=f"has no {NAME}/ folder"):
        fetch(tmp_path / "cache", **serve(server, buffer.getvalue()))
    with pytest.raises(CatdogError, match="not a valid zip archive"):
        fetch(tmp_path / "cache", **serve(server, b"PK but not really a zip"))
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_missing_address_is_a_clear_error(server, tmp_path):
    with pytest.raises(CatdogError, match=r"could not download .*/nothing.zip \(HTTP 404 "):
        fetch(tmp_path / "cache", url=f"{server[1]}/nothing.zip", size=None, sha256=None)
