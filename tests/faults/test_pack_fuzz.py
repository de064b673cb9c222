"""Fuzz: 200 randomly damaged packs (shards missing, cut short, with bytes flipped or added; descriptions and
manifests mangled) fed to `catdog data info`, and a sample of them to `catdog train` (issue 24).

Each ends in a one-line error or a complete, correct result, within a bounded time and without a
traceback; and no damage to a shard's bytes ever goes unnoticed. `data info` runs in this process
(a local pack is opened without TensorFlow: milliseconds each); the sample trains in one child process
that is killed if it hangs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from catdog.cli import main

from conftest import REPO, write_image

CASES = 200
TRAINED = 20
SEED = 24
SHARD_DAMAGES = ("missing shard", "shard cut short", "bytes flipped in a shard", "bytes added to a shard")
JUNK = (None, "", "x", -1, 2**40, 1.5, True, [], {}, [[1, 2]], "../../etc/passwd")


@dataclass(frozen=True)
class Case:
    number: int
    kind: str
    detail: str
    path: Path


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, dict]:
    """A pack of 12 tiny images per class, two shards per split, and its `data info --json`."""
    root = tmp_path_factory.mktemp("fuzz")
    for name, colour in (("cats", (210, 60, 40)), ("dogs", (40, 80, 210))):
        for i in range(12):
            write_image(root / "data" / name / f"{i}.png", size=(20, 20), color=colour, seed=i)
    assert main(["data", "pack", "--data", str(root / "data"), "--out", str(root / "pack"), "--shards", "2"]) == 0
    code, out, err = run_in_process(["data", "info", "--data", str(root / "pack"), "--json"])
    assert code == 0, err
    return root / "pack", json.loads(out)


def run_in_process(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def damage(pack: Path, rng: np.random.Generator) -> tuple[str, str]:
    """Damage the pack at `pack` in one random way; return (kind, what was done)."""
    shards = sorted(pack.glob("*.tfrecord"))
    shard = shards[rng.integers(len(shards))]
    kind = rng.choice([*SHARD_DAMAGES, "mangled description", "mangled manifest"], p=[.12, .12, .22, .06, .36, .12])
    contents = bytearray(shard.read_bytes())
    if kind == "missing shard":
        shard.unlink()
        return kind, shard.name
    if kind == "shard cut short":
        size = int(rng.integers(len(contents)))
        shard.write_bytes(contents[:size])
        return kind, f"{shard.name} to {size} of {len(contents)} bytes"
    if kind == "bytes flipped in a shard":
        places = rng.choice(len(contents), size=int(rng.integers(1, 5)), replace=False)
        for place in places:
            contents[place] ^= int(rng.integers(1, 256))
        shard.write_bytes(contents)
        return kind, f"{shard.name} at {sorted(places.tolist())}"
    if kind == "bytes added to a shard":
        shard.write_bytes(contents + rng.bytes(int(rng.integers(1, 64))))
        return kind, shard.name
    if kind == "mangled manifest":
        return kind, mangle_text(pack / "splits.csv", rng)
    return kind, mangle_description(pack / "catdog-pack.json", rng)


def mangle_text(path: Path, rng: np.random.Generator) -> str:
    text = bytearray(path.read_bytes())
    how = rng.integers(3)
    if how == 0:
        lines = bytes(text).split(b"\n")
        gone = int(rng.integers(len(lines)))
        path.write_bytes(b"\n".join(lines[:gone] + lines[gone + 1:]))
        return f"line {gone + 1} of {path.name} removed"
    if how == 1:
        cut = int(rng.integers(len(text)))
        path.write_bytes(text[:cut])
        return f"{path.name} cut at {cut}"
    place = int(rng.integers(len(text)))
    text[place] ^= int(rng.integers(1, 256))
    path.write_bytes(text)
    return f"{path.name}: byte {place} flipped"


def mangle_description(path: Path, rng: np.random.Generator) -> str:
    how = rng.integers(4)
    if how < 2:
        return mangle_text(path, rng)
    meta = json.loads(path.read_text())
    places = list(_places(meta))
    parent, key = places[int(rng.integers(len(places)))]
    if how == 2 and isinstance(parent, dict):
        del parent[key]
        done = f"{key!r} removed"
    else:
        parent[key] = JUNK[int(rng.integers(len(JUNK)))]
        done = f"{key!r} set to {parent[key]!r}"
    path.write_text(json.dumps(meta))
    return done


def _places(value, parent=None, key=None):
    """(container, key) of every value in a JSON tree."""
    if parent is not None:
        yield parent, key
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for child_key, child in children:
        yield from _places(child, value, child_key)


@pytest.fixture(scope="module")
def cases(pristine, tmp_path_factory) -> list[Case]:
    pack, _ = pristine
    root = tmp_path_factory.mktemp("damaged")
    rng = np.random.default_rng(SEED)
    made = []
    for number in range(CASES):
        copy = Path(shutil.copytree(pack, root / f"{number:03d}"))
        kind, detail = damage(copy, rng)
        made.append(Case(number, str(kind), detail, copy))
    return made


def judge(case: Case, code: int, out: str, err: str) -> str:
    """'error' or 'complete', after checking the one-line rule; fails the test otherwise."""
    where = f"case {case.number} ({case.kind}: {case.detail})"
    assert "Traceback" not in err and "Traceback" not in out, f"{where}:\n{err[-3000:]}"
    if code == 0:
        assert case.kind not in SHARD_DAMAGES, f"{where}: damage to a shard went unnoticed"
        return "complete"
    assert code == 2, f"{where}: exit {code}\n{err[-3000:]}"
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("catdog: error: "), f"{where}:\n{err[-3000:]}"
    assert not any("catdog: error" in line for line in lines[:-1]), f"{where}:\n{err[-3000:]}"
    if case.kind in SHARD_DAMAGES:
        assert Path(case.detail.split()[0]).name in lines[-1], f"{where}: the error does not name the shard"
    return "error"


def test_data_info_on_damaged_packs_is_one_line_or_complete(cases, pristine):
    _, expected = pristine
    outcomes = {}
    for case in cases:
        started = time.monotonic()
        code, out, err = run_in_process(["data", "info", "--data", str(case.path), "--json"])
        assert time.monotonic() - started < 30, f"case {case.number} took {time.monotonic() - started:.0f} s"
        outcomes[case.number] = judge(case, code, out, err)
        if code == 0:  # what a harmless mangling leaves is still the pack's whole description
            report = json.loads(out)
            assert report["splits"] == expected["splits"] and report["classes"] == expected["classes"], case
    kinds = {case.kind for case in cases}
    assert kinds >= {*SHARD_DAMAGES, "mangled description", "mangled manifest"}
    assert sum(outcome == "error" for outcome in outcomes.values()) > CASES // 2


TRAIN_SCRIPT = """
import contextlib, io, json, sys, time, traceback
from catdog.cli import main

for number, path, out in json.loads(sys.argv[1]):
    started = time.monotonic()
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(["train", "--model", "scratch", "--data", path, "--image-size", "32", "--epochs", "1",
                         "--batch-size", "8", "--out", out])
        except BaseException:
            code = -1
            traceback.print_exc()
    print(json.dumps({"number": number, "code": code, "out": stdout.getvalue(), "err": stderr.getvalue(),
                      "seconds": time.monotonic() - started}), flush=True)
"""


@pytest.mark.slow
def test_training_on_damaged_packs_is_one_line_or_a_complete_correct_run(cases, pristine, tmp_path):
    _, expected = pristine
    # Every kind; first those that get furthest: manglings `data info` finds harmless, and bytes changed in
    # place, which opening a pack for training (sizes, not checksums) lets through to the records' own checks.
    rng = np.random.default_rng(SEED)
    harmless = [case for case in cases if run_in_process(["data", "info", "--data", str(case.path)])[0] == 0]
    chosen = harmless[:3] + [case for case in cases if case.kind == "bytes flipped in a shard"][:3]
    for kind in (*SHARD_DAMAGES, "mangled description", "mangled manifest"):
        chosen += [case for case in cases if case.kind == kind and case not in chosen][:2]
    rest = [case for case in cases if case not in chosen]
    chosen += [rest[i] for i in rng.choice(len(rest), TRAINED - len(chosen), replace=False)]
    jobs = [(case.number, str(case.path), str(tmp_path / f"run-{case.number:03d}")) for case in chosen]
    result = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, json.dumps(jobs)], capture_output=True, text=True,
                            timeout=120 + 60 * len(jobs), env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [row["number"] for row in rows] == [case.number for case in chosen], result.stderr[-3000:]
    by_number = {case.number: case for case in chosen}
    for row in rows:
        case = by_number[row["number"]]
        assert row["seconds"] < 60, f"case {case.number} took {row['seconds']:.0f} s"
        if judge(case, row["code"], row["out"], row["err"]) == "complete":
            run = tmp_path / f"run-{case.number:03d}"
            metrics = json.loads((run / "metrics.json").read_text())
            assert metrics["n"] == sum(expected["splits"]["test"].values())
            assert len((run / "history.csv").read_text().splitlines()) == 2  # the header and the one epoch
