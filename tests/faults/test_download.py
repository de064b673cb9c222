"""Faults in a download of the data set: zip bombs, too many entries, tampered or incomplete contents.

Each archive is built here and served by an HTTP server on 127.0.0.1 (no network). Small caps, and a
reference set of four tiny photographs with its own digest, are passed to fetch() in place of the seed
data set's, so every case runs in well under a second (but one, which builds the reported 200 MB bomb).
"""

from __future__ import annotations

import io
import logging
import re
import struct
import zipfile
from pathlib import Path

import pytest

from catdog.data import fetch as fetch_module
from catdog.data.fetch import CHUNK_BYTES, DATASET_MAX_EXTRACTED_BYTES, content_digest, fetch
from catdog.errors import CatdogError

from conftest import write_image

NAME = "cats_and_dogs_filtered"
REFERENCE = ["train/cats/cat.0.jpg", "train/dogs/dog.0.jpg", "validation/cats/cat.2000.jpg",
             "validation/dogs/dog.2000.jpg"]


@pytest.fixture
def photos(tmp_path) -> dict[str, bytes]:
    """The reference files' bytes: a tiny distinct JPEG each."""
    folder = tmp_path / "reference"
    for seed, path in enumerate(REFERENCE):
        write_image(folder / path, size=(8, 8), seed=seed)
    return {path: (folder / path).read_bytes() for path in REFERENCE}


@pytest.fixture
def bytes_read(monkeypatch) -> list[int]:
    """[bytes read out of zip members so far]: counts what extraction decompresses."""
    total = [0]
    original = zipfile.ZipFile.open

    def counting_open(self, *args, **kwargs):
        member = original(self, *args, **kwargs)
        read = member.read

        def counted(n=-1):
            data = read(n)
            total[0] += len(data)
            return data

        member.read = counted
        return member

    monkeypatch.setattr(zipfile.ZipFile, "open", counting_open)
    return total


def zip_of(entries: dict[str, bytes]) -> bytes:
    """A zip of `entries` (names as given), deflated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def data_set(photos: dict[str, bytes], **extra: bytes) -> dict[str, bytes]:
    """The entries of an archive of the data set: NAME/<reference file>, then NAME/<extra>."""
    return {f"{NAME}/{path}": data for path, data in {**photos, **extra}.items()}


def get(server, tmp_path, archive: bytes, photos: dict[str, bytes], **arguments) -> Path:
    """fetch() the served `archive` into tmp_path/cache, checked by the digest of the original `photos`."""
    folder, base = server
    (folder / "data.zip").write_bytes(archive)
    reference = tmp_path / "reference-copy"
    for path, data in photos.items():
        (reference / path).parent.mkdir(parents=True, exist_ok=True)
        (reference / path).write_bytes(data)
    checks = {"size": len(archive), "sha256": None, "reference": list(photos),
              "content_sha256": content_digest(reference, photos)}
    return fetch(tmp_path / "cache", url=f"{base}/data.zip", **checks | arguments)


def refused(server, tmp_path, archive: bytes, photos: dict[str, bytes], match: str, **arguments) -> str:
    """Check that fetching `archive` fails with a one-line CatdogError matching `match`, leaving nothing."""
    with pytest.raises(CatdogError, match=match) as raised:
        get(server, tmp_path, archive, photos, **arguments)
    assert "\n" not in str(raised.value)
    assert list((tmp_path / "cache").iterdir()) == []  # no data set, no temporary files
    return str(raised.value)


def test_a_zip_bomb_is_refused_before_anything_is_extracted(server, tmp_path, photos, bytes_read):
    bomb = data_set(photos, **{f"padding/zeros.{i}.bin": bytes(4_000_000) for i in range(5)})
    archive = zip_of(bomb)
    assert len(archive) < 100_000 and sum(map(len, bomb.values())) > 200 * len(archive)
    url = f"{server[1]}/data.zip"
    message = refused(server, tmp_path, archive, photos, "expands to more than", max_bytes=1_000_000)
    assert message == f"the archive from {url} expands to more than 1000000 bytes; refused"
    assert bytes_read[0] == 0  # refused on the declared sizes, before any member was read


def test_the_reported_bomb_is_refused_by_the_default_cap(server, tmp_path, photos, bytes_read):
    """The issue's case: a zip of about 200 KB that expanded to 200 MB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in data_set(photos).items():
            zf.writestr(name, data)
        with zf.open(f"{NAME}/zeros.bin", "w", force_zip64=True) as out:
            for _ in range(200):
                out.write(bytes(1_000_000))
    archive = buffer.getvalue()
    assert len(archive) < 250_000
    refused(server, tmp_path, archive, photos,
            f"expands to more than {DATASET_MAX_EXTRACTED_BYTES} bytes; refused$")
    assert bytes_read[0] == 0


def test_the_running_count_stops_a_bomb_the_declared_sizes_let_through(server, tmp_path, photos, bytes_read,
                                                                       monkeypatch):
    """With the early check trusting whatever the headers say, the count of bytes written still stops it."""
    monkeypatch.setattr(fetch_module, "_check_declared", lambda *args: None)
    archive = zip_of(data_set(photos, **{"zeros.bin": bytes(8_000_000)}))
    refused(server, tmp_path, archive, photos, "expands to more than 1000000 bytes; refused$", max_bytes=1_000_000)
    assert bytes_read[0] <= 1_000_000 + CHUNK_BYTES  # it stopped within a chunk of the cap


def understate(archive: bytes, name: str, size: int) -> bytes:
    """`archive` with the uncompressed size of its entry `name` set to `size` in both of its headers."""
    data = bytearray(archive)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        local = zf.getinfo(name).header_offset
        central = data.index(name.encode(), zf.start_dir) - 46
    assert data[local:local + 4] == b"PK\x03\x04" and data[central:central + 4] == b"PK\x01\x02"
    struct.pack_into("<I", data, local + 22, size)
    struct.pack_into("<I", data, central + 24, size)
    return bytes(data)


def test_headers_that_understate_the_sizes_are_refused(server, tmp_path, photos, bytes_read):
    """Headers declaring 1,000 bytes for 2 MB entries pass the early check; extraction never goes past them."""
    lying = [f"{NAME}/zeros.{i}.bin" for i in range(3)]
    archive = zip_of(data_set(photos) | {name: bytes(2_000_000) for name in lying})
    for name in lying:
        archive = understate(archive, name, 1_000)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        declared = sum(info.file_size for info in zf.infolist())
    assert declared < 100_000
    refused(server, tmp_path, archive, photos, f"is corrupt: its entry '{lying[0]}' fails its CRC check",
            max_bytes=100_000)
    assert bytes_read[0] <= declared  # nothing beyond the declared sizes was decompressed


def test_too_many_entries_are_refused_before_anything_is_extracted(server, tmp_path, photos, bytes_read):
    archive = zip_of(data_set(photos, **{f"notes/{i}.txt": b"" for i in range(30)}))
    url = f"{server[1]}/data.zip"
    message = refused(server, tmp_path, archive, photos, "has more than 20 entries", max_entries=20)
    assert message == f"the archive from {url} has more than 20 entries; refused"
    assert bytes_read[0] == 0
    assert get(server, tmp_path, archive, photos, max_entries=34).is_dir()  # 34 entries: within the cap


def test_tampered_content_is_refused(server, tmp_path, photos):
    tampered = dict(photos)
    jpeg = bytearray(tampered["validation/cats/cat.2000.jpg"])
    jpeg[len(jpeg) // 2] ^= 0x01  # one bit of the image data; the zip's own CRC is made for the tampered bytes
    tampered["validation/cats/cat.2000.jpg"] = bytes(jpeg)
    refused(server, tmp_path, zip_of(data_set(tampered)), photos,
            r"^the files of the archive from \S+ differ from the reference data set \(content digest [0-9a-f]{64}, "
            r"not the pinned [0-9a-f]{64}; .*\); nothing was moved into place$")


def test_a_missing_reference_file_is_refused_and_the_first_one_named(server, tmp_path, photos):
    incomplete = {path: data for path, data in photos.items() if "dog" not in path}
    refused(server, tmp_path, zip_of(data_set(incomplete)), photos,
            f"lacks {re.escape(NAME)}/train/dogs/dog.0.jpg, a file of the reference data set; nothing was moved")


def test_files_beyond_the_reference_set_are_accepted_and_named_in_the_log(server, tmp_path, photos, caplog):
    caplog.set_level("INFO", logger="catdog")
    cat_459 = write_image(tmp_path / "cat.459.jpg", size=(8, 8), seed=459).read_bytes()
    archive = zip_of(data_set(photos, **{"vectorize.py": b"print('hello')\n", "train/cats/cat.459.jpg": cat_459})
                     | {"README.txt": b"outside the data set folder"})
    folder = get(server, tmp_path, archive, photos)
    assert (folder / "vectorize.py").is_file() and (folder / "train/cats/cat.459.jpg").is_file()
    assert f"3 file(s) beyond the reference data set, not covered by its digest: README.txt, {NAME}/train/cats/" \
           f"cat.459.jpg, {NAME}/vectorize.py" in caplog.text
    assert "is verified by content: it holds the 4 files of the reference data set" in caplog.text
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.parametrize("kind", ["text", "truncated JPEG", "PNG"])
def test_a_cat_459_that_is_not_a_readable_jpeg_is_refused(server, tmp_path, photos, kind):
    jpeg = write_image(tmp_path / "cat.459.jpg", size=(32, 32)).read_bytes()
    data = {"text": b"not a photo", "truncated JPEG": jpeg[: len(jpeg) // 2],
            "PNG": write_image(tmp_path / "cat.459.png", size=(8, 8)).read_bytes()}[kind]
    archive = zip_of(data_set(photos, **{"train/cats/cat.459.jpg": data}))
    refused(server, tmp_path, archive, photos,
            f"holds {NAME}/train/cats/cat.459.jpg, which is not a readable JPEG \\(.+\\); nothing was moved")
