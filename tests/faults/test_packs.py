"""Faults: packs that are damaged, incomplete or not packs at all (issue 24, items 1, 2, 3 and 5).

A pack is trusted only whole: `data info` reports a damaged one and `train` refuses it in one
line, naming the shard, within a bounded time, never training on part of it. Commands that
could hang on main run in a subprocess with a timeout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from catdog.cli import main
from catdog.errors import CatdogError

from conftest import REPO, one_line_error, write_image

# Generous: a healthy `catdog train` of one epoch on these images takes about 10 s here.
COMMAND_TIMEOUT_S = 120


def catdog(*args: str, timeout: float = COMMAND_TIMEOUT_S, env: dict | None = None) -> subprocess.CompletedProcess:
    """`catdog ARGS` in a new process of this source tree, killed after `timeout` seconds (a hang fails the test)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    environment.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user has it: catdog must keep TensorFlow quiet itself
    return subprocess.run([sys.executable, "-m", "catdog", *args], env=environment, capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("catdog: error: "), result.stderr
    for fragment in fragments:
        assert fragment in last, last
    return last


def write_small_set(root: Path, per_class: int = 12) -> Path:
    """A flat data set of two colours, small enough to pack and train on in seconds."""
    for name, colour in (("cats", (210, 60, 40)), ("dogs", (40, 80, 210))):
        for i in range(per_class):
            write_image(root / name / f"{name[:-1]}.{i}.jpg", size=(24, 24), color=colour, seed=i)
    return root


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return write_small_set(tmp_path_factory.mktemp("small") / "small")


@pytest.fixture(scope="module")
def pack(small, tmp_path_factory) -> Path:
    """`small` packed in two shards per split (shared: copy it before damaging it)."""
    out = tmp_path_factory.mktemp("packs") / "pack"
    assert main(["data", "pack", "--data", str(small), "--out", str(out), "--shards", "2"]) == 0
    return out


@pytest.fixture
def copy(pack, tmp_path) -> Path:
    return Path(shutil.copytree(pack, tmp_path / "copy"))


def train_args(data: Path, out: Path) -> list[str]:
    return ["train", "--model", "scratch", "--data", str(data), "--image-size", "32", "--epochs", "1",
            "--batch-size", "8", "--out", str(out)]


# Item 1 -------------------------------------------------------------------------------------------

def test_a_missing_shard_is_one_line_naming_it_for_train_and_info_without_hanging(copy, tmp_path):
    (copy / "train-00000-of-00002.tfrecord").unlink()
    assert_one_line_error(catdog(*train_args(copy, tmp_path / "run")), "train-00000-of-00002.tfrecord is missing")
    assert not (tmp_path / "run").exists()
    assert_one_line_error(catdog("data", "info", "--data", str(copy)), "train-00000-of-00002.tfrecord is missing")


def test_a_shard_lost_after_the_pack_was_opened_stops_training_naming_it(pack, tmp_path):
    """The pack is whole when opened, and a shard goes while training reads it: one line, no retry loop."""
    copied = Path(shutil.copytree(pack, tmp_path / "copy"))
    script = f"""
import sys
from pathlib import Path
from catdog.data import load
from catdog.errors import CatdogError
from catdog.runs import TrainSettings
from catdog.workflow import train_run

data = load({str(copied)!r}, image_size=32, batch_size=8)
Path({str(copied)!r}, "train-00001-of-00002.tfrecord").unlink()
settings = TrainSettings.resolve("scratch", epochs=1, image_size=32, batch_size=8)
try:
    train_run(settings, data, out={str(tmp_path / "run")!r})
except CatdogError as e:
    print(e)
    sys.exit(2)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stdout.strip() == (f"pack {copied} is damaged: shard train-00001-of-00002.tfrecord is missing; "
                                     "pack the data again (catdog data pack)")


# Item 2 -------------------------------------------------------------------------------------------

def cut_in_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def flip_a_byte(path: Path, at: float = 0.5) -> None:
    contents = bytearray(path.read_bytes())
    contents[int(len(contents) * at)] ^= 0xFF
    path.write_bytes(bytes(contents))


@pytest.mark.parametrize(("damage", "message"), [
    (cut_in_half, "shard train-00001-of-00002.tfrecord has"),
    (flip_a_byte, "shard train-00001-of-00002.tfrecord does not hold the bytes it was packed with"),
])
def test_a_damaged_shard_is_never_trained_on_in_part(copy, tmp_path, capsys, damage, message):
    damage(copy / "train-00001-of-00002.tfrecord")
    one_line_error(capsys, main(["data", "info", "--data", str(copy)]), message, "pack the data again")
    one_line_error(capsys, main(train_args(copy, tmp_path / "run")), message)
    assert not (tmp_path / "run" / "model.keras").exists()


def test_a_whole_pack_trains_on_every_image_it_lists(pack, tmp_path, capsys):
    assert main(train_args(pack, tmp_path / "run")) == 0
    listed = json.loads((pack / "catdog-pack.json").read_text())["splits"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["n"] == listed["test"]["count"]


# Item 3 -------------------------------------------------------------------------------------------

def test_pack_takes_the_data_options_of_every_other_command(small, tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in sorted(small.rglob("*.jpg")):
        shutil.copy(path, flat / path.name)
    names = sorted(path.name for path in flat.iterdir())
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(f"{name},{['even', 'odd'][i % 2]}\n"
                                                                   for i, name in enumerate(names)))
    labelled = ["--data", str(flat), "--labels", str(tmp_path / "labels.csv")]
    assert main(["data", "pack", *labelled, "--out", str(tmp_path / "p")]) == 0
    assert json.loads((tmp_path / "p" / "catdog-pack.json").read_text())["class_names"] == ["even", "odd"]

    (tmp_path / "ids.csv").write_text("file,class\n" + "".join(f"{name},{name[:3]}\n" for name in names))
    assert main(["data", "pack", "--data", str(flat), "--labels", str(tmp_path / "ids.csv"), "--path-column",
                 "file", "--label-column", "class", "--out", str(tmp_path / "q")]) == 0
    assert json.loads((tmp_path / "q" / "catdog-pack.json").read_text())["class_names"] == ["cat", "dog"]

    one_line_error(capsys, main(["data", "pack", "--data", str(small), "--min-images", "1000",
                                 "--out", str(tmp_path / "r")]), "--min-images=1000")
    assert not (tmp_path / "r").exists()


# Item 5: packs and URLs ------------------------------------------------------------------------------

def edit_description(pack: Path, edit) -> None:
    path = pack / "catdog-pack.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda meta: {k: v for k, v in meta.items() if k != "class_names"}, "class_names must list two or more"),
    (lambda meta: {**meta, "format_version": "1"}, "has no format_version (a whole number), found '1'"),
    (lambda meta: [meta], "catdog-pack.json does not hold an object"),
    (lambda meta: {**meta, "format_version": 1}, "was packed by an older catdog"),
    (lambda meta: {**meta, "format_version": 99}, "was packed by a newer catdog (format 99)"),
    (lambda meta: {**meta, "splits": {**meta["splits"], "train": {"count": 3, "shards": "x"}}},
     "splits.train.shards must list the split's shards"),
])
def test_a_mangled_pack_description_is_one_line(copy, tmp_path, capsys, edit, message):
    edit_description(copy, edit)
    for command in (["data", "info", "--data", str(copy)], train_args(copy, tmp_path / "run")):
        one_line_error(capsys, main(command), message)


@pytest.mark.parametrize(("url", "message"), [
    ("http://127.0.0.1:9/photos", "catdog cannot read http:// URLs here"),
    ("s3://catdog-no-such-bucket/photos", "catdog cannot read s3:// URLs here"),
    ("gs://catdog-no-such-bucket-24/photos", "gs://catdog-no-such-bucket-24/photos"),
])
def test_urls_tensorflow_cannot_read_are_one_line_naming_the_scheme(url, message, capsys):
    one_line_error(capsys, main(["data", "info", "--data", url]), message)


def test_packing_a_pack_is_one_line(pack, tmp_path, capsys):
    one_line_error(capsys, main(["data", "pack", "--data", str(pack), "--out", str(tmp_path / "again")]),
                   "is a pack already")
    assert not (tmp_path / "again").exists()


def test_commands_that_read_image_files_say_a_pack_is_not_a_folder(pack, tmp_path, capsys):
    one_line_error(capsys, main(["data", "show", "--data", str(pack), "--out", str(tmp_path / "s.png")]),
                   "is a pack; `catdog data show` draws image files")
    one_line_error(capsys, main(["audit", "--data", str(pack), "--weights", "none"]),
                   "is a pack; the audit reads image files")


# The smaller items -------------------------------------------------------------------------------------

def test_reading_a_pack_prints_nothing_of_tensorflows_start_up(pack):
    result = catdog("data", "info", "--data", str(pack))
    assert result.returncode == 0 and result.stderr == "", result.stderr


def temporary_folder(folder: Path, name: str, pid: int) -> Path:
    """A temporary folder as `catdog.files.atomic_path` names one for process `pid` of this machine."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())
    path = folder / f".{name}.{pid}@{host}.abc123xy.tmp"
    (path / name).mkdir(parents=True)
    return path


def test_what_a_killed_pack_left_behind_is_swept_by_the_next(small, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = temporary_folder(tmp_path, "pack", int(dead.stdout))
    (stale / "pack" / "train-00000-of-00001.tfrecord").write_bytes(b"half a shard")
    ours = temporary_folder(tmp_path, "other", os.getpid())  # a live process's: left alone
    assert main(["data", "pack", "--data", str(small), "--out", str(tmp_path / "pack")]) == 0
    assert not stale.exists() and ours.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["pack", ours.name])


def test_what_a_killed_export_left_in_the_run_is_swept_by_the_next(tiny_run, tmp_path):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = temporary_folder(run / "export", "model.onnx", int(dead.stdout))
    (stale / "model.onnx" / "model.onnx").write_bytes(b"half a model")
    assert main(["export", str(run), "--format", "onnx"]) == 0
    assert not stale.exists() and not [p for p in (run / "export").iterdir() if p.name.endswith(".tmp")]


def test_the_library_refuses_a_damaged_pack_too(copy):
    from catdog.data import load

    flip_a_byte(copy / "test-00000-of-00002.tfrecord")
    (copy / "validation-00001-of-00002.tfrecord").unlink()
    with pytest.raises(CatdogError, match="validation-00001-of-00002.tfrecord is missing"):
        load(copy, image_size=32)
