"""Helpers shared by the reference recipe and the benchmark driver.

Both sides are measured the same way: each model or command runs in its own child
process, timed from start to exit, and its peak resident memory is read from the
kernel's accounting of that one child (`os.wait4`), so one model's memory never hides
another's. Subsets are folders of symbolic links, so no image is ever copied.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEFAULT_DATA = SHARED / "data" / "cats_and_dogs_filtered"
DEFAULT_WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_no_top.h5"

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclass
class Measured:
    """How one child process went: exit status, wall time and peak resident memory."""

    returncode: int
    seconds: float
    peak_rss_bytes: int


def run_measured(command: Sequence[str], *, log: Path | None = None, stdout: Path | None = None,
                 env: Mapping[str, str] | None = None) -> Measured:
    """Run `command` to completion, timed, with its output in files or in ours.

    Its standard output goes to `stdout` if given, its messages (and its output
    otherwise) to `log`; either left out goes to our own stream.
    """
    with contextlib.ExitStack() as files:
        out = files.enter_context(open(stdout, "wb")) if stdout else None
        err = files.enter_context(open(log, "ab")) if log else None
        start = time.perf_counter()
        process = subprocess.Popen(list(command), stdout=out or err, stderr=err,
                                   env=dict(env) if env is not None else None)
        # wait4 rather than Popen.wait: it also returns this child's own resource usage.
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait for it again
    return Measured(process.returncode, seconds, usage.ru_maxrss * 1024)  # ru_maxrss is in KiB on Linux


def image_files(folder: Path) -> list[Path]:
    """The visible image files directly in `folder`, sorted by name."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def link_subset(source: Path, dest: Path, per_class: Mapping[str, int]) -> Path:
    """Mirror `source/<split>/<class>/` into `dest` with the first `per_class[split]` images of each class.

    `per_class` maps split folder names (as in the tutorial's layout: `train`, `validation`) to a
    count per class. Files are linked, not copied; the choice is deterministic.
    """
    for split, count in per_class.items():
        for class_dir in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            target = dest / split / class_dir.name
            target.mkdir(parents=True, exist_ok=True)
            for image in image_files(class_dir)[:count]:
                (target / image.name).symlink_to(image.resolve())
    return dest


def link_flat(images: Sequence[Path], dest: Path) -> Path:
    """A flat folder of links to `images`, named so that they cannot collide."""
    dest.mkdir(parents=True, exist_ok=True)
    for n, image in enumerate(images):
        (dest / f"{n:05d}-{image.name}").symlink_to(image.resolve())
    return dest
