"""What a person watching the terminal sees while catdog works: progress bars, and numbers in
one format.

A long loop (checking images, computing features, scoring a split, an epoch) shows a bar
(tqdm's) on stderr while it runs, and the message logged when it ends says what it did and how
long it took. Bars are drawn only where stderr is a terminal, and not after `set_quiet()` (the
CLI's `--quiet`): in a log file or a CI job, each step is one line.

    >>> with progress("checking images", total=len(paths)) as bar:
    ...     for path in paths:
    ...         check(path)
    ...         bar.update()
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from tqdm import tqdm

_quiet = False


def set_quiet(quiet: bool = True) -> None:
    """Draw no progress bars from now on (`quiet`), or draw them again where stderr is a terminal."""
    global _quiet
    _quiet = quiet


def bars_shown() -> bool:
    """Whether progress bars are drawn: stderr is a terminal, and quiet is off."""
    return not _quiet and sys.stderr.isatty()


def progress(what: str, iterable: Iterable | None = None, *, total: int | None = None, unit: str = "image") -> tqdm:
    """A progress bar titled `what`, over `iterable` or updated by hand up to `total` (None:
    unknown), that disappears when it is closed; a silent stand-in where bars are not shown."""
    shown = bars_shown()
    sized = shown and _columns() > 0  # a terminal that reports no size (some pseudo-terminals) gets 80 columns
    return tqdm(iterable, desc=what, total=total, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=sized,
                ncols=None if sized else 80, disable=not shown, mininterval=0.25)


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 0


def percent(share: float) -> str:
    """A share as catdog writes every accuracy and rate: a percentage with one decimal (`98.5 %`)."""
    return f"{100 * share:.1f} %"


def duration(seconds: float) -> str:
    """A duration in words a person reads at a glance: `0.4 s`, `12 s`, `3 min 05 s`, `1 h 02 min`."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
