"""Downloading the seed data set: verified, extracted safely, and in place all at once.

The archive is downloaded into a temporary folder beside the destination, checked
against its recorded size and sha256, checked entry by entry (no absolute paths, no
`..`, no links, every CRC right), extracted, and only then moved into place. An
interrupted or refused download leaves nothing that looks like a data set.
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
from pathlib import Path, PurePosixPath, PureWindowsPath

from catdog import config, files
from catdog.errors import CatdogError

CHUNK_BYTES = 1 << 20

logger = logging.getLogger(__name__)


def fetch(
    dest: str | Path | None = None,
    *,
    url: str = config.SEED_DATASET_URL,
    size: int | None = config.SEED_DATASET_BYTES,
    sha256: str | None = config.SEED_DATASET_SHA256,
    name: str = config.SEED_DATASET_NAME,
) -> Path:
    """Download and extract the data set into `dest` (default: `config.cache_dir()`); return its folder.

    The archive at `url` must hold a top folder `name` and match `size` and `sha256`.
    Without a `sha256`, an archive of exactly `size` bytes whose entries pass their CRC
    checks is accepted with a warning that shows its sha256; with neither, it is refused.
    An existing `dest/name` is returned as it is.
    """
    dest = Path(dest).expanduser() if dest is not None else config.cache_dir()
    target = dest / name
    if target.is_dir():
        logger.info(f"{target} is already there")
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix=".catdog-download-", dir=dest) as work,
          files.atomic_path(target) as staging):
        archive = Path(work) / "archive.zip"
        digest = _download(url, archive, size)
        _verify(url, archive.stat().st_size, digest, size, sha256)
        extracted = Path(work) / "extracted"
        _extract(url, archive, extracted)
        if not (extracted / name).is_dir():
            raise CatdogError(f"the archive from {url} has no {name}/ folder at its top")
        os.replace(extracted / name, staging)
    logger.info(f"extracted to {target}")
    return target


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
        raise CatdogError(f"could not download {url} (HTTP {e.code} {e.reason})") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise CatdogError(f"could not download {url} ({reason}); check the network, or pass --data DIR") from None
    if total and sys.stderr.isatty():
        print(file=sys.stderr)
    return digest.hexdigest()


def _verify(url: str, actual_size: int, digest: str, size: int | None, sha256: str | None) -> None:
    if size is not None and actual_size != size:
        raise CatdogError(f"the download from {url} is {actual_size} bytes, not the expected {size}; try again")
    if sha256 is None:
        if size is None:
            raise CatdogError(
                f"the download from {url} cannot be verified: no size or sha256 is recorded for it; its sha256 "
                f"is {digest}: if you trust that, pass it with --sha256"
            )
        logger.warning(
            f"no sha256 is recorded for {url}; accepted on its exact size ({size} bytes) and the zip's own "
            f"checksums. Its sha256 is {digest}"
        )
        return
    if digest != sha256.lower():
        raise CatdogError(f"the download from {url} has sha256 {digest}, not the expected {sha256}; it was discarded")


def _extract(url: str, archive: Path, dest: Path) -> None:
    """Extract the zip `archive` into `dest`, refusing it whole if any entry could land outside."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                if problem := _unsafe(member):
                    raise CatdogError(
                        f"the archive from {url} is unsafe: its entry {member.filename!r} is {problem}; "
                        "nothing was extracted"
                    )
            if corrupt := zf.testzip():
                raise CatdogError(f"the archive from {url} is corrupt: its entry {corrupt!r} fails its CRC check")
            zf.extractall(dest)
    except zipfile.BadZipFile as e:
        raise CatdogError(f"the download from {url} is not a valid zip archive ({e})") from None


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
