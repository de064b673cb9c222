"""Downloading the reference data set (the tutorial's `cats_and_dogs_filtered`): verified, extracted
safely, and in place all at once.

The archive is downloaded into a temporary folder beside the destination, checked
against its recorded size and sha256, checked entry by entry (no absolute paths, no
`..`, no links, not too many entries nor too many bytes declared), extracted with a
running count of the bytes written (and every CRC checked), checked against the pinned
digest of the data set's contents, and only then moved into place. An interrupted or
refused download leaves nothing that looks like a data set.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath

from catdog import environment, files
from catdog.data.images import inspect_image
from catdog.errors import BadImageError, CatdogError

CHUNK_BYTES = 1 << 20

# The reference tutorial's data set.
DATASET_NAME = "cats_and_dogs_filtered"
DATASET_URL = "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"
DATASET_BYTES = 68_606_236  # the size every published download log of it shows
# Not found in any public record this project could check (its machines have no network).
# Without it, `catdog data fetch` verifies the archive by its exact size and by its contents
# (DATASET_CONTENT_SHA256, below); pass `--sha256` to pin the archive itself.
DATASET_SHA256: str | None = None
# The reference file set: the photographs of the shared copy (../shared/data/cats_and_dogs_filtered),
# {split}/{class}/{stem}.{n}.jpg for these numbers, classes and stems, less the files that copy lacks
# (the published archive has train/cats/cat.459.jpg; if present it must be a readable JPEG).
# 2,999 files, 68,548,710 bytes. `reference_files()` lists them.
DATASET_NUMBERS = {"train": range(0, 1000), "validation": range(2000, 2500)}
DATASET_STEMS = {"cats": "cat", "dogs": "dog"}
DATASET_NOT_IN_REFERENCE = ("train/cats/cat.459.jpg",)
# The sha256 of the lines "<sha256 of the file>  <path>\n" of the reference files, by path (relative to the
# data set folder, sorted), computed from the shared copy. Same as what its folder gives for
#   find train validation -type f | LC_ALL=C sort | xargs sha256sum | sha256sum
# (`content_digest`; tests/data/test_fetch.py recomputes it). A download must hold every
# reference file with these bytes; files beyond the set are allowed and named in the log.
DATASET_CONTENT_SHA256: str | None = "60f7563e90014d3361fced4fdab33229b2034d6f77ebcff4f515010f256468e3"
# Caps on extraction (declared sizes checked first, then the bytes actually written). JPEGs barely
# compress: the archive is 68.6 MB and the files 68.5 MB, so 150 MB leaves twice that and still refuses
# the 228 KB zip that expanded to 200 MB. The archive has about 3,000 entries.
DATASET_MAX_EXTRACTED_BYTES = 150_000_000
DATASET_MAX_ENTRIES = 10_000

logger = logging.getLogger(__name__)


def fetch(
    dest: str | Path | None = None,
    *,
    url: str = DATASET_URL,
    size: int | None = DATASET_BYTES,
    sha256: str | None = DATASET_SHA256,
    content_sha256: str | None = DATASET_CONTENT_SHA256,
    reference: Iterable[str] | None = None,
    max_bytes: int = DATASET_MAX_EXTRACTED_BYTES,
    max_entries: int = DATASET_MAX_ENTRIES,
    name: str = DATASET_NAME,
) -> Path:
    """Download and extract the data set into `dest` (default: `catdog.environment.cache_dir()`); return its folder.

    The archive at `url` must hold a top folder `name` and match `size` and `sha256`; it may
    have at most `max_entries` entries and expand to at most `max_bytes`. With a
    `content_sha256`, the folder must hold every file of `reference` (paths inside `name`;
    default: `reference_files()`) with the bytes that digest was made from (see
    `content_digest`); other files are allowed, and named in the log. An archive with
    neither `sha256` nor `content_sha256` is accepted on its exact `size` and its entries'
    CRC checks with a warning that shows its sha256; with nothing to check, it is refused.
    An existing `dest/name` is returned as it is.
    """
    dest = Path(dest).expanduser() if dest is not None else environment.cache_dir()
    target = dest / name
    if target.is_dir():
        logger.info(f"{target} is already there")
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix=".catdog-download-", dir=dest) as work,
          files.atomic_path(target, files.NEW_FOLDER) as staging):
        archive = Path(work) / "archive.zip"
        digest = _download(url, archive, size)
        _verify(url, archive.stat().st_size, digest, size, sha256, content_sha256)
        extracted = Path(work) / "extracted"
        hashes = _extract(url, archive, extracted, max_bytes, max_entries)
        if not (extracted / name).is_dir():
            raise CatdogError(f"the archive from {url} has no {name}/ folder at its top")
        if content_sha256 is not None:
            reference = reference_files() if reference is None else sorted(set(reference))
            _verify_content(url, extracted, name, hashes, reference, content_sha256)
            logger.info(f"the download from {url} is verified by content: it holds the {len(reference)} files of "
                        f"the reference data set with the pinned digest. Its own sha256 is {digest}")
        elif sha256 is None:
            logger.warning(
                f"no sha256 is recorded for {url}; accepted on its exact size ({size} bytes) and the zip's own "
                f"checksums. Its sha256 is {digest}"
            )
        os.replace(extracted / name, staging)
    logger.info(f"extracted to {target}")
    return target


def reference_files() -> list[str]:
    """The reference data set's files (paths inside its folder, sorted): the pinned digest's files."""
    paths = (
        f"{split}/{class_name}/{stem}.{n}.jpg"
        for split, numbers in DATASET_NUMBERS.items()
        for class_name, stem in DATASET_STEMS.items()
        for n in numbers
    )
    return sorted(set(paths) - set(DATASET_NOT_IN_REFERENCE))


def content_digest(folder: str | Path, paths: Iterable[str]) -> str:
    """The digest of the files `paths` (relative to `folder`): the sha256 of their `sha256sum` lines, sorted by path.

    That is, the sha256 of "<sha256 of the file>  <path>\\n" for each path in sorted order; the
    value pinned in `DATASET_CONTENT_SHA256` for `reference_files()`.
    """
    folder = Path(folder)
    return _digest_of({path: _file_sha256(folder / path) for path in paths})


def _digest_of(hashes: dict[str, str]) -> str:
    lines = "".join(f"{hashes[path]}  {path}\n" for path in sorted(hashes))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, path: Path, size: int | None) -> str:
    """Save `url` to `path`, showing progress on stderr; return the sha256 of what was saved."""
    digest = hashlib.sha256()
    done = 0
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as out:
            total = int(response.headers.get("Content-Length") or size or 0)
            logger.info(f"downloading {url} ({total / 1e6:.1f} MB)" if total else f"downloading {url}")
            while chunk := response.read(CHUNK_BYTES):
                done += len(chunk)
                if size is not None and done > size:
                    raise CatdogError(f"the download from {url} is larger than the expected {size} bytes")
                digest.update(chunk)
                out.write(chunk)
                if total and sys.stderr.isatty():
                    print(f"\r{done / total:6.1%}", end="", file=sys.stderr, flush=True)
    except urllib.error.HTTPError as e:
        raise CatdogError(f"could not download {url} (HTTP {e.code} {e.reason})") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise CatdogError(f"could not download {url} ({reason}); check the network, or pass --data DIR") from e
    if total and sys.stderr.isatty():
        print(file=sys.stderr)
    return digest.hexdigest()


def _verify(url: str, actual_size: int, digest: str, size: int | None, sha256: str | None,
            content_sha256: str | None) -> None:
    if size is not None and actual_size != size:
        raise CatdogError(f"the download from {url} is {actual_size} bytes, not the expected {size}; try again")
    if sha256 is None:
        if size is None and content_sha256 is None:
            raise CatdogError(
                f"the download from {url} cannot be verified: no size, sha256 or content digest is recorded for it; "
                f"its sha256 is {digest}: if you trust that, pass it with --sha256"
            )
        return
    if digest != sha256.lower():
        raise CatdogError(f"the download from {url} has sha256 {digest}, not the expected {sha256}; it was discarded")


def _verify_content(url: str, root: Path, name: str, hashes: dict[str, str], reference: list[str],
                    content_sha256: str) -> None:
    """Check the extracted `root/name` against the digest of `reference`; log the files beyond it.

    `hashes` holds the sha256 of every extracted file, by path relative to `root`.
    """
    found = {}
    for path in reference:
        if (digest := hashes.get(f"{name}/{path}")) is None:
            raise CatdogError(f"the archive from {url} lacks {name}/{path}, a file of the reference data set; "
                              "nothing was moved into place")
        found[path] = digest
    if (actual := _digest_of(found)) != content_sha256.lower():
        raise CatdogError(
            f"the files of the archive from {url} differ from the reference data set (content digest {actual}, "
            f"not the pinned {content_sha256}; it covers all {len(reference)} files at once, so it cannot say "
            "which); nothing was moved into place"
        )
    for path in DATASET_NOT_IN_REFERENCE:
        if f"{name}/{path}" in hashes and (problem := _not_a_jpeg(root / name / path)):
            raise CatdogError(f"the archive from {url} holds {name}/{path}, which is not a readable JPEG "
                              f"({problem}); nothing was moved into place")
    expected = {f"{name}/{path}" for path in reference}
    if extra := sorted(set(hashes) - expected):
        logger.info(f"the archive from {url} holds {len(extra)} file(s) beyond the reference data set, not "
                    f"covered by its digest: {', '.join(extra)}")


def _not_a_jpeg(path: Path) -> str | None:
    try:
        fmt = inspect_image(path).format
    except BadImageError as e:
        return e.reason
    return None if fmt == "JPEG" else f"a {fmt} image"


def _extract(url: str, archive: Path, dest: Path, max_bytes: int, max_entries: int) -> dict[str, str]:
    """Extract the zip `archive` into `dest`, refusing it whole if any entry could land outside.

    Refuses an archive of more than `max_entries` entries or declared sizes over `max_bytes`
    before extracting anything, and stops once the bytes actually written pass `max_bytes`.
    Returns the sha256 of each file written, by its path relative to `dest`.
    """
    hashes: dict[str, str] = {}
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            _check_declared(url, members, max_bytes, max_entries)
            written = 0
            for member in members:
                path = PurePosixPath(*[part for part in member.filename.split("/") if part not in ("", ".")])
                target = dest.joinpath(path)
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with zf.open(member) as source, open(target, "wb") as out:
                    while chunk := _read(url, member, source):
                        written += len(chunk)
                        if written > max_bytes:
                            raise CatdogError(_too_large(url, max_bytes))
                        digest.update(chunk)
                        out.write(chunk)
                hashes[path.as_posix()] = digest.hexdigest()
    except zipfile.BadZipFile as e:
        raise CatdogError(f"the download from {url} is not a valid zip archive ({e})") from e
    except (NotImplementedError, RuntimeError, OSError) as e:  # compression, encryption, the disk
        problem = f"could not be extracted ({e}); nothing was moved into place"
        raise CatdogError(f"the archive from {url} {problem}") from e
    return hashes


def _check_declared(url: str, members: list[zipfile.ZipInfo], max_bytes: int, max_entries: int) -> None:
    """Refuse the archive, before anything is extracted, for what its central directory declares."""
    if len(members) > max_entries:
        raise CatdogError(f"the archive from {url} has more than {max_entries} entries; refused")
    for member in members:
        if problem := _unsafe(member):
            raise CatdogError(
                f"the archive from {url} is unsafe: its entry {member.filename!r} is {problem}; nothing was extracted"
            )
    if sum(member.file_size for member in members) > max_bytes:
        raise CatdogError(_too_large(url, max_bytes))


def _too_large(url: str, max_bytes: int) -> str:
    return f"the archive from {url} expands to more than {max_bytes} bytes; refused"


def _read(url: str, member: zipfile.ZipInfo, source) -> bytes:
    """The next chunk of `member` (its CRC is checked after the last one)."""
    try:
        return source.read(CHUNK_BYTES)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        problem = "fails its CRC check" if "CRC" in str(e) else f"cannot be read ({e})"
        raise CatdogError(f"the archive from {url} is corrupt: its entry {member.filename!r} {problem}") from e


def _unsafe(member: zipfile.ZipInfo) -> str | None:
    """Why extracting `member` could write outside the destination, if it could.

    Zip archives have no hard links; symbolic links are marked in the Unix mode bits.
    """
    name = member.filename
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "a path with '..'"
    if stat.S_ISLNK(member.external_attr >> 16):
        return "a symbolic link"
    return None
