"""What a person sees on the terminal: `catdog run` in a real pseudo-terminal, and progress bars
drawn only on a terminal."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time

import pytest

from catdog import terminal

from conftest import REPO, write_image


def run_in_a_terminal(args: list[str], cwd, columns: int = 120, timeout: float = 600) -> tuple[int, str]:
    """Run `python -m catdog ARGS` with stdin, stdout and stderr on a pseudo-terminal of `columns`
    columns, as in a terminal window; return its exit code and everything it wrote."""
    controller, terminal_side = pty.openpty()
    fcntl.ioctl(terminal_side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, "-m", "catdog", *args], stdin=terminal_side, stdout=terminal_side,
                               stderr=terminal_side, cwd=cwd, env=env, close_fds=True)
    os.close(terminal_side)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(controller, 65536)
            except OSError as e:  # EIO: the other side is closed, the process has ended
                if e.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
    return code, b"".join(chunks).decode("utf-8", errors="replace")


def lines_of(transcript: str) -> list[str]:
    """The lines a terminal would keep: what is after the last carriage return of each line
    (progress bars redraw a line, then clear it), without the blank ones."""
    kept = [line.rsplit("\r", 1)[-1].rstrip() for line in transcript.replace("\r\n", "\n").split("\n")]
    return [line for line in kept if line.strip()]


@pytest.mark.slow
def test_catdog_run_in_a_terminal_names_each_model_and_ends_with_the_report(tmp_path):
    data = tmp_path / "photos"
    for label, color in (("cats", (210, 60, 40)), ("dogs", (40, 80, 210))):
        for i in range(12):
            write_image(data / label / f"{i}.jpg", color=color, seed=i)

    code, transcript = run_in_a_terminal(["run", "--data", "photos", "--models", "scratch,augmented", "--epochs", "2",
                                          "--image-size", "32", "--out", "exercise"], cwd=tmp_path)
    lines = lines_of(transcript)
    assert code == 0, transcript[-3000:]
    assert "Traceback" not in transcript

    # The data first, then each model announced, in order, with its number.
    starts = [next(i for i, line in enumerate(lines) if line.startswith(prefix))
              for prefix in ("data: 24 images of 2 classes (cats, dogs)", "model 1 of 2: scratch",
                             "model 2 of 2: augmented")]
    assert starts == sorted(starts)
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"] * 2
    # Progress bars were drawn on the terminal, and cleared: over the images checked, and each epoch's batches.
    assert re.search(r"\rchecking images: +\d+%\|", transcript)
    assert re.search(r"\repoch 1/2: +\d+%\|", transcript)

    # It ends with where the report is and the next commands, with the exercise's real folder.
    closing = lines[-8:]
    assert any(line.endswith("The report: exercise/report.html (open it in a web browser)") for line in closing)
    assert "  catdog serve exercise" in closing
    assert any(line.startswith("  catdog explain exercise ") and line.endswith(".jpg") for line in closing)
    assert (tmp_path / "exercise" / "report.html").is_file()


def test_progress_bars_are_drawn_only_on_a_terminal_and_not_when_quiet(capsys, monkeypatch):
    assert not terminal.bars_shown()  # pytest's captured stderr is no terminal
    with terminal.progress("counting", total=3) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert terminal.bars_shown()
    terminal.set_quiet()
    try:
        assert not terminal.bars_shown()
    finally:
        terminal.set_quiet(False)


def test_numbers_have_one_format():
    assert terminal.percent(0.985) == "98.5 %" and terminal.percent(1) == "100.0 %"
    assert [terminal.duration(s) for s in (0.42, 12.4, 185, 3725)] == ["0.4 s", "12 s", "3 min 05 s", "1 h 02 min"]
