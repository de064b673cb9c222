"""Writing files safely: atomically, only over what catdog may replace, with a clear error when the disk is full.

A reader sees the old file or the new one, never half of one (`atomic_path`). catdog
replaces only what it made itself, or a file of the same kind: a manifest over a
manifest, a catdog figure over a catdog figure (see `Kind`); a folder given where a file
is expected, or anything else at the target, is a one-line `CatdogError` and nothing is
touched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catdog.errors import CatdogError

# The Software tag catdog writes into its PNG figures, by which it knows them again.
PNG_SOFTWARE = "catdog"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Kind:
    """What may stand at a path catdog writes to: `matches(path)` says whether an existing
    entry there is one catdog may replace; `folder` whether the kind is a folder."""

    description: str
    matches: Callable[[Path], bool]
    folder: bool = False


def _is_file(path: Path) -> bool:
    return path.is_file()


def _catdog_png(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.format == "PNG" and str(image.info.get("Software", "")).startswith(PNG_SOFTWARE)
    except Exception:  # not an image Pillow reads: not ours
        return False


# Any regular file: for files inside folders catdog made (a run folder, an exercise folder).
OWN_FILE = Kind("a file", _is_file)
CATDOG_PNG = Kind("a PNG figure written by catdog", _catdog_png)
# A folder catdog writes files into (`--out` of explain and audit), which may hold other files.
INTO_FOLDER = Kind("a folder", lambda path: True, folder=True)
# A folder catdog creates whole (a downloaded data set): nothing may stand in its place.
NEW_FOLDER = Kind("free: catdog writes this folder only where nothing is", lambda path: False, folder=True)


def check_replaceable(path: str | os.PathLike, kind: Kind) -> None:
    """Raise `CatdogError` unless `path` is free, or holds something `kind` allows catdog to replace."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if path.is_symlink():
        raise CatdogError(f"{path} is a symbolic link; catdog does not write through links: choose another path")
    if path.is_dir() != kind.folder:
        want, found = ("folder", "file") if kind.folder else ("file", "folder")
        raise CatdogError(f"{path} is a {found}, but a {want} is to be written there: choose another path")
    if not kind.matches(path):
        raise CatdogError(f"{path} exists and is not {kind.description}: catdog will not replace it; "
                          "choose another path or move it away")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, kind: Kind = OWN_FILE) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds.

    What is at `path` already must be of `kind` (checked before and again after the block),
    else nothing is written. A folder is replaced by moving the old one aside first, then
    removing it once the new one is in place. A full disk while writing is a `CatdogError`
    naming the device and the file. The temporary folder is named after its process, so that
    one a killed process left behind is swept by the next write beside it (`sweep_stale`).
    """
    path = Path(path)
    check_replaceable(path, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path.parent)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_owner()}.", suffix=".tmp", dir=path.parent))
    tmp = tmp_dir / path.name
    try:
        with disk_full_is_an_error(path):
            yield tmp
            check_replaceable(path, kind)
            if kind.folder and path.is_dir():
                old = tmp_dir / ".replaced"
                os.replace(path, old)
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


@contextlib.contextmanager
def disk_full_is_an_error(path: str | os.PathLike) -> Iterator[None]:
    """Turn "no space left on device" while writing `path` into a one-line `CatdogError`."""
    try:
        yield
    except OSError as e:
        if e.errno != errno.ENOSPC and "errno = 28" not in str(e):  # h5py words it its own way
            raise
        raise CatdogError(f"no space left on {mount_point(path)} while writing {path}") from e


def mount_point(path: str | os.PathLike) -> Path:
    """The mount point of the file system `path` is (or would be) on."""
    path = Path(os.path.abspath(path))
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def require_free_space(path: str | os.PathLike, needed_bytes: int) -> None:
    """Refuse to start writing `path` if its file system has less than `needed_bytes` free.

    HDF5, under Keras' `.h5` and `.keras` files, can crash the process rather than raise
    when the disk fills mid-write, so catdog checks before it writes those.
    """
    folder = Path(path).parent
    free = shutil.disk_usage(folder if folder.exists() else mount_point(folder)).free
    if free < needed_bytes:
        raise CatdogError(f"no space left on {mount_point(path)} while writing {path} "
                          f"({needed_bytes / 1e6:.0f} MB needed, {free / 1e6:.0f} MB free)")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _owner() -> str:
    """This process, as the temporary folders of `atomic_path` name it: `<pid>@<host>`."""
    return f"{os.getpid()}@{_host()}"


# `.<name>.<pid>@<host>.<random>.tmp`, as `atomic_path` names its temporary folders.
_TEMPORARY = re.compile(r"\..*\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]+)\.[^.]+\.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary folders `atomic_path` left in `folder` when its process was killed:
    those of processes of this machine that no longer run (a folder on a disk that several
    machines share may hold another machine's, which are left alone)."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    host = _host()
    for entry in entries:
        found = _TEMPORARY.fullmatch(entry.name)
        if (found and found["host"] == host and not _alive(int(found["pid"])) and entry.is_dir()
                and not entry.is_symlink()):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def sweep_temporary(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary folders `atomic_path` leaves in `folder` when its process is killed."""
    removed = []
    for entry in Path(folder).glob(".*.tmp"):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def write_bytes(path: str | os.PathLike, data: bytes, kind: Kind = OWN_FILE) -> Path:
    with atomic_path(path, kind) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | os.PathLike, text: str, kind: Kind = OWN_FILE) -> Path:
    return write_bytes(path, text.encode("utf-8"), kind)


def write_json(path: str | os.PathLike, obj: Any, kind: Kind = OWN_FILE) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", kind)


def save_figure(fig, path: str | os.PathLike, kind: Kind = OWN_FILE, **kwargs) -> Path:
    """Save a matplotlib figure atomically as PNG (tagged as catdog's), then close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path, kind) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight", metadata={"Software": PNG_SOFTWARE}, **kwargs)
    plt.close(fig)
    return Path(path)
