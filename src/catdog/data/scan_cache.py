"""Checking many files fast: in parallel, and only once per file while it does not change.

Every scan checks every image (catdog.data.images.inspect_image): it reads the whole file.
What it found is kept in a small SQLite database per data folder, in catdog's own cache
folder (`$CATDOG_HOME/scans`, else `~/.cache/catdog/scans`; never in the data folder),
keyed by the file's path, size and modification time, and by the pixel limit the check
used (with the perceptual hash, when a scan asks for it). A second scan of an unchanged
folder then only lists it and reads those records; a file that changed is checked again.
Checks run in a pool of threads, one per core: Pillow releases the GIL while it decodes,
so they use every core.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from catdog import environment
from catdog.data.images import ImageInfo, inspect_image
from catdog.errors import BadImageError
from catdog.terminal import progress

Result = ImageInfo | str  # what a check found: the image's details, or why it cannot be used

# The table's name carries its version: a cache written by an older catdog is not read.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS checked_v2 (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, max_pixels INTEGER,
    format TEXT, width INTEGER, height INTEGER, extension_mismatch INTEGER, reason TEXT,
    phash TEXT
)
"""


def database(root: Path) -> Path:
    """The cache file for the data folder `root`."""
    key = hashlib.sha256(os.fsencode(root.resolve())).hexdigest()[:24]
    return environment.scan_cache_dir() / f"{key}.sqlite"


def check_files(root: Path, paths: Sequence[Path], max_pixels: int, use_cache: bool = True, *,
                fingerprint: bool = False) -> list[Result]:
    """What `inspect_image` finds for each of `paths` (under `root`), with the perceptual hash
    if `fingerprint`: from the cache where the file has not changed (and the record has what
    is asked for), else by checking it (in parallel) and recording the result."""
    stats = [_stat(path) for path in paths]
    known: dict[str, Result] = {}
    connection = _open(root) if use_cache else None
    try:
        if connection is not None:
            known = _lookup(connection, root, paths, stats, max_pixels, fingerprint)
        missing = [i for i, path in enumerate(paths) if _key(root, path) not in known]
        # One thread per usable core: more only contend for the GIL that hashing holds
        # (benchmarks/decisions.md).
        with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
            checked = pool.map(lambda i: _check(paths[i], max_pixels, fingerprint), missing)
            found = dict(zip(missing, progress("checking images", checked, total=len(missing)), strict=True))
        if connection is not None and missing:
            _record(connection, root, [(paths[i], stats[i], found[i]) for i in missing], max_pixels)
    finally:
        if connection is not None:
            connection.close()
    return [found[i] if i in found else known[_key(root, path)] for i, path in enumerate(paths)]


def _check(path: Path, max_pixels: int, fingerprint: bool) -> Result:
    try:
        return inspect_image(path, max_pixels, fingerprint=fingerprint)
    except BadImageError as e:
        return e.reason


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def _key(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _open(root: Path) -> sqlite3.Connection | None:
    """The cache database, or None where it cannot be had (a read-only home): scans then check every file."""
    path = database(root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=30)
        connection.execute(_SCHEMA)
        return connection
    except (OSError, sqlite3.Error):
        return None


def _lookup(connection: sqlite3.Connection, root: Path, paths: Sequence[Path], stats, max_pixels: int,
            fingerprint: bool) -> dict[str, Result]:
    wanted = {_key(root, path): stat for path, stat in zip(paths, stats, strict=True) if stat is not None}
    known: dict[str, Result] = {}
    try:
        rows = connection.execute("SELECT path, size, mtime_ns, max_pixels, format, width, height, "
                                  "extension_mismatch, reason, phash FROM checked_v2")
        for key, size, mtime_ns, pixels, fmt, width, height, mismatch, reason, phash in rows:
            if wanted.get(key) != (size, mtime_ns) or pixels != max_pixels:
                continue
            if reason is not None:
                known[key] = reason
            elif phash is not None or not fingerprint:
                known[key] = ImageInfo(fmt, width, height, bool(mismatch), int(phash, 16) if phash else None)
    except sqlite3.Error:  # a damaged cache is no cache
        return {}
    return known


def _record(connection: sqlite3.Connection, root: Path, checked, max_pixels: int) -> None:
    rows = []
    for path, stat, result in checked:
        if stat is None:
            continue
        info = result if isinstance(result, ImageInfo) else None
        phash = f"{info.phash:016x}" if info and info.phash is not None else None  # 64 bits: over SQLite's int
        rows.append((_key(root, path), *stat, max_pixels, info and info.format, info and info.width,
                     info and info.height, info and int(info.extension_mismatch), None if info else result, phash))
    try:
        with connection:
            connection.executemany("INSERT OR REPLACE INTO checked_v2 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    except sqlite3.Error:  # a full or read-only disk: the scan is right, only not remembered
        pass
