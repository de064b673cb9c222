"""Training on several devices: two logical CPU devices (`CATDOG_CPU_DEVICES=2`) under the mirrored
strategy, and two worker processes on 127.0.0.1 under the multi-worker strategy. Each in fresh
processes, since TensorFlow's devices and cluster are fixed when it starts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catdog.runs import folder

from conftest import REPO


def catdog(*args: str, env: dict | None = None) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "catdog", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment)


def finished(process: subprocess.Popen, timeout: float = 600) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out


@pytest.fixture(scope="module")
def photos(tmp_path_factory, reference_data) -> Path:
    """Real photos, 40 per class: 28 train, 6 validation, 6 test each."""
    root = tmp_path_factory.mktemp("photos")
    for name in ("cats", "dogs"):
        (root / name).mkdir()
        for n in range(40):
            (root / name / f"{n}.jpg").symlink_to(reference_data / "train" / name / f"{name[:-1]}.{n}.jpg")
    return root


@pytest.mark.slow
def test_two_replicas_train_as_one_device_does(photos, shared_weights, tmp_path):
    common = ["--model", "transfer", "--epochs", "5", "--image-size", "160", "--batch-size", "7",
              "--data", str(photos), "--weights", str(shared_weights)]
    finished(catdog("train", *common, "--strategy", "none", "--out", str(tmp_path / "one")))
    finished(catdog("train", *common, "--strategy", "mirrored", "--out", str(tmp_path / "two"),
                    env={"CATDOG_CPU_DEVICES": "2"}))

    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert (config["strategy"], config["replicas"], config["workers"]) == ("mirrored", 2, 1)
    assert config["devices"] == ["CPU:0", "CPU:1"]
    one, two = (folder.read_history(tmp_path / name / "history.csv") for name in ("one", "two"))
    # The same frozen features and global batch (7 divides the 56 training images, and splits into
    # 4 + 3 on the replicas): the head learns alike, not the same, since its dropout draws differ
    # across replicas and each replica's loss is the mean of its own 4 or 3 images. Over seeds 42 and
    # 1 to 4 (benchmarks/decisions.md), an epoch's validation loss differed by up to 0.23 and the test
    # accuracy by up to 4 images of 12; the mean validation loss of epochs 2 to 5 was at most 0.38
    # (chance: 0.69) and the two means differed by at most 0.07; test accuracy was at least 8 of 12.
    mean_loss = [sum(row["val_loss"] for row in history[1:]) / len(history[1:]) for history in (one, two)]
    assert max(mean_loss) <= 0.5 and abs(mean_loss[0] - mean_loss[1]) <= 0.15
    for name in ("one", "two"):
        assert json.loads((tmp_path / name / "metrics.json").read_text())["accuracy"] >= 7 / 12


@pytest.mark.slow
def test_finetune_is_interrupted_and_resumed_under_the_mirrored_strategy(photos, shared_weights, tmp_path):
    run = tmp_path / "finetune"
    two_devices = {"CATDOG_CPU_DEVICES": "2"}
    process = catdog("train", "--model", "finetune", "--epochs", "3", "--image-size", "96", "--batch-size", "8",
                     "--data", str(photos), "--weights", str(shared_weights), "--strategy", "mirrored",
                     "--out", str(run), env=two_devices)
    deadline = time.monotonic() + 300
    while len(folder.read_history(run / "history.csv")) < 1:  # Ctrl-C once the head's epoch is recorded
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert len(folder.read_history(run / "history.csv")) < 3

    finished(catdog("train", "--resume", str(run), "--strategy", "mirrored", env=two_devices))
    history = folder.read_history(run / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2, 3]
    config = json.loads((run / "config.json").read_text())
    assert config["replicas"] == 2 and config["stages"][1]["unfreeze_from"] == "block_11_expand_relu"
    assert (run / "metrics.json").is_file() and not (run / "checkpoint").exists()


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_loopback_train_one_model_and_only_the_chief_writes(photos, tmp_path):
    run = tmp_path / "together"
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    for index in range(2):
        (tmp_path / f"worker-{index}").mkdir()
    workers = [
        catdog("train", "--model", "scratch", "--epochs", "2", "--image-size", "32", "--batch-size", "8",
               "--data", str(photos), "--strategy", "multiworker", "--out", str(run),
               env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                    "TMPDIR": str(tmp_path / f"worker-{index}")})
        for index in range(2)
    ]
    outputs = [finished(worker, timeout=300) for worker in workers]
    assert [out.strip() for out in outputs] == [str(run), str(run)]

    config = json.loads((run / "config.json").read_text())
    assert (config["strategy"], config["workers"], config["replicas"]) == ("multiworker", 2, 2)
    assert {"model.keras", "metrics.json", "history.csv"} <= {p.name for p in run.iterdir()}
    assert len(folder.read_history(run / "history.csv")) == 2
    assert not list((tmp_path / "worker-1").iterdir())  # the other worker's copy was removed
