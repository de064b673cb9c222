"""Ctrl-C during training, never lost.

Python raises `KeyboardInterrupt` wherever the main thread is when the signal arrives; inside
a finalizer (a weakref callback the garbage collector runs, frequent while TensorFlow traces)
it prints "Exception ignored" and drops it. So while training, catdog's handler also records
the signal, and the run recorder raises it again at the next batch (`raise_pending`).
"""

from __future__ import annotations

import contextlib
import signal
import threading

_pending = False


@contextlib.contextmanager
def caught():
    """Record Ctrl-C (and raise `KeyboardInterrupt`, as Python does) while the block runs."""
    global _pending
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield
        return
    _pending = False
    previous = signal.signal(signal.SIGINT, _handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _pending = False


def _handle(signum, frame):
    global _pending
    _pending = True
    raise KeyboardInterrupt


def raise_pending() -> None:
    """Raise the `KeyboardInterrupt` of a Ctrl-C that Python dropped, if there was one."""
    if _pending:
        raise KeyboardInterrupt
