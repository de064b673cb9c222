"""Checking many files fast: in parallel, and only once per file while it does not change.

Every scan checks every image (catdog.data.images.inspect_image): it reads the whole file.
What it found is kept in a small SQLite database per data folder, in catdog's own cache
folder (`$CATDOG_HOME/scans`, else `~/.cache/catdog/scans`; never in the data folder),
keyed by the file's path, size, modification time, inode and status-change time (ctime), and
by the pixel limit the check used (with the perceptual hash, when a scan asks for it). A
second scan of an unchanged folder then only lists it and reads those records; a file that
changed is checked again. The modification time alone is not enough: `cp -p`, rsync, backup
restores and `touch -r` set it back after changing the content, but the system sets the
ctime of every write (and a file replaced by another is another inode). A damaged database is
moved aside (`<name>.damaged`) and a new one started, with a warning.
Checks run in a pool of threads, one per core: Pillow releases the GIL while it decodes,
so they use every core.
"""

from __future__ import annotations

import hashlib
import logging
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
Stat = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode: what changes with the content

# The table's name carries its version: a cache written by an older catdog is not read.
_TABLE = "checked_v3"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER, max_pixels INTEGER,
    format TEXT, width INTEGER, height INTEGER, extension_mismatch INTEGER, reason TEXT,
    phash TEXT
)
"""
DAMAGED_SUFFIX = ".damaged"

logger = logging.getLogger(__name__)


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
            try:
                known = _lookup(connection, root, paths, stats, max_pixels, fingerprint)
            except sqlite3.DatabaseError as e:  # damaged beyond its first page, or locked for too long
                connection.close()
                connection = _start_again(database(root), e)
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


def _stat(path: Path) -> Stat | None:
    try:
        status = path.stat()
    except OSError:
        return None
    inode = status.st_ino - (1 << 64) if status.st_ino >= 1 << 63 else status.st_ino  # as SQLite's signed integers
    return status.st_size, status.st_mtime_ns, status.st_ctime_ns, inode


def _key(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _open(root: Path) -> sqlite3.Connection | None:
    """The cache database, or None where it cannot be had (a read-only home, a database locked
    for longer than 30 s): scans then check every file. A damaged one is moved aside and a new
    one started (`_start_again`)."""
    path = database(root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=30)
    except (OSError, sqlite3.Error):
        return None
    try:
        connection.execute(_SCHEMA)
        return connection
    except sqlite3.DatabaseError as e:
        connection.close()
        return _start_again(path, e)


def _damaged(error: sqlite3.Error) -> bool:
    """Whether `error` says the database file is damaged (not only busy, or on a read-only disk)."""
    return isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError)


def _start_again(path: Path, error: sqlite3.Error) -> sqlite3.Connection | None:
    """Move the damaged database `path` aside and open a new one there (None if that fails too)."""
    if not _damaged(error):
        return None
    aside = path.with_name(path.name + DAMAGED_SUFFIX)
    try:
        os.replace(path, aside)
        connection = sqlite3.connect(path, timeout=30)
        connection.execute(_SCHEMA)
    except (OSError, sqlite3.Error):
        return None
    logger.warning(f"the scan cache {path} was damaged ({error}); moved it to {aside.name} and started a new one, "
                   "so this scan checks every file again")
    return connection


def _lookup(connection: sqlite3.Connection, root: Path, paths: Sequence[Path], stats, max_pixels: int,
            fingerprint: bool) -> dict[str, Result]:
    wanted = {_key(root, path): stat for path, stat in zip(paths, stats, strict=True) if stat is not None}
    known: dict[str, Result] = {}
    rows = connection.execute(f"SELECT path, size, mtime_ns, ctime_ns, inode, max_pixels, format, width, height, "
                              f"extension_mismatch, reason, phash FROM {_TABLE}")
    for key, size, mtime_ns, ctime_ns, inode, pixels, fmt, width, height, mismatch, reason, phash in rows:
        if wanted.get(key) != (size, mtime_ns, ctime_ns, inode) or pixels != max_pixels:
            continue
        if reason is not None:
            known[key] = reason
        elif phash is not None or not fingerprint:
            known[key] = ImageInfo(fmt, width, height, bool(mismatch), int(phash, 16) if phash else None)
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
            connection.executemany(f"INSERT OR REPLACE INTO {_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                   rows)
    except sqlite3.Error:  # a full or read-only disk: the scan is right, only not remembered
        pass
