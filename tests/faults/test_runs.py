"""Faults: a run folder is written by one process at a time, and can always be completed with --resume.

Interruptions are real where they can be: a second process, a process killed with SIGKILL
in the middle of saving the model, a file system that is full.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from catdog.cli import main
from catdog.runs import Run, folder

from conftest import REPO, one_line_error, resume, train

OUTPUTS = {"model.keras", "metrics.json", "training.json", "accuracy.png", "loss.png", "confusion_matrix.png",
           "misclassified.png", "history.csv", "config.json", "splits.csv"}


def catdog(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, "-m", "catdog", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kwargs)


def complete(run: Path) -> None:
    """The run has every output, nothing temporary left, and no checkpoint."""
    names = {p.name for p in run.iterdir()}
    assert OUTPUTS <= names, OUTPUTS - names
    assert "checkpoint" not in names and not [n for n in names if n.endswith(".tmp")]


def wait_for(path: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_second_writer_is_refused_naming_the_process_and_a_dead_ones_lock_does_not_block(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--model", "scratch", "--epochs", "200", "--patience", "0", "--image-size", "32", "--data",
            str(tiny_dataset), "--out", str(run)]
    first = catdog(*args)
    try:
        wait_for(run / "history.csv")
        for second in (catdog(*args), catdog("train", "--resume", str(run)), catdog("evaluate", str(run))):
            out, err = second.communicate(timeout=120)
            assert second.returncode == 2, err
            last = err.strip().splitlines()[-1]
            assert last.startswith("catdog: error: ") and "Traceback" not in err, err
            assert f"is being written by process {first.pid} (" in last and last.endswith("wait for it to finish "
                                                                                        "or stop it")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The lock died with its process: the run resumes (its remaining 200 epochs are cut short by stopping it).
    assert folder.lock_holder(run) is None
    history = folder.read_history(run / "history.csv")
    assert history, "the killed run had finished at least one epoch"


def test_ctrl_c_during_the_final_evaluation_is_completed_by_resume(tiny_dataset, tmp_path, monkeypatch):
    run = tmp_path / "run"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("catdog.workflow.evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train("scratch", tiny_dataset, epochs=2, image_size=32, batch_size=8, out=run)
    # Training had ended, and the steps after it before the test scores were done.
    assert (run / "training.json").is_file() and (run / "calibration.json").is_file()
    assert not (run / "metrics.json").exists()
    calibrated = (run / "calibration.json").stat().st_mtime_ns
    monkeypatch.undo()

    resume(run)
    complete(run)
    assert (run / "calibration.json").stat().st_mtime_ns == calibrated  # done, so not done again
    assert len(folder.read_history(run / "history.csv")) == 2  # nothing trained again
    with pytest.raises(Exception, match="already finished its 2 epochs"):
        resume(run)


@pytest.mark.slow
def test_killed_while_saving_the_model_resume_rebuilds_it_and_sweeps_the_leftovers(tiny_dataset, tmp_path):
    """SIGKILL in the middle of writing model.keras, after epoch 2 (a new best) was recorded."""
    run = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        import catdog.training.callbacks as callbacks
        import catdog.training.checkpoints as checkpoints
        from catdog.runs import TrainSettings
        from catdog.workflow import train_run

        saves = []
        original = callbacks.save_model

        def save_then_die(model, path):
            saves.append(path)
            if len(saves) == 2:  # the second best epoch: die with a half-written temporary file
                tmp = Path(path).parent / ".model.keras.dying.tmp"
                tmp.mkdir()
                (tmp / "model.keras").write_bytes(b"PK half a zip")
                Path(path).unlink()  # as if the old one had been moved aside
                os.kill(os.getpid(), signal.SIGKILL)
            original(model, path)

        callbacks.save_model = checkpoints.save_model = save_then_die
        settings = TrainSettings.resolve("scratch", epochs=3, image_size=32, batch_size=8, learning_rate=1e-4)
        train_run(settings, {str(tiny_dataset)!r}, out={str(run)!r})
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    history = folder.read_history(run / "history.csv")
    assert not (run / "model.keras").exists() and (run / ".model.keras.dying.tmp").is_dir()

    assert main(["train", "--resume", str(run)]) == 0
    complete(run)
    history = folder.read_history(run / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2, 3]
    # model.keras is the best epoch's model: it scores the validation split as training measured it.
    from catdog.data import load
    from catdog.evaluation import score
    from catdog.models.inference import numpy_function

    best = folder.best_epoch(history)
    data = load(tiny_dataset, image_size=32, batch_size=8, manifest=Run.open(run).manifest())
    metrics, _ = score(numpy_function(Run.open(run).keras_model()), data.validation, data.class_names)
    assert metrics["accuracy"] == pytest.approx(best["val_accuracy"])
    assert metrics["loss"] == pytest.approx(best["val_loss"], rel=1e-3)


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "scratch", "--image-size", "1"], "--image-size 1"),
    (["--model", "transfer", "--weights", "none", "--image-size", "8"],
     "--image-size must be at least 32 px for backbone mobilenet_v2, got 8"),
    (["--model", "scratch", "--image-size", "10000"], "at most about"),
    (["--model", "scratch", "--learning-rate", "nan"], "argument --learning-rate: nan is not a finite number above 0"),
    (["--model", "scratch", "--learning-rate", "-1"], "argument --learning-rate: -1 is not a finite number above 0"),
])
def test_settings_that_cannot_work_are_refused_before_anything_is_written(tiny_dataset, tmp_path, capsys,
                                                                           args, message):
    run = tmp_path / "run"
    code = main(["train", "--data", str(tiny_dataset), "--out", str(run), "--epochs", "1", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err.strip().splitlines()[-1] and "Traceback" not in err, err
    assert not run.exists()
    # The same folder then takes a run that can work.
    assert main(["train", "--model", "scratch", "--data", str(tiny_dataset), "--out", str(run), "--epochs", "1",
                 "--image-size", "32"]) == 0


def test_the_library_names_its_own_parameters(tiny_dataset, tmp_path):
    from catdog.errors import ParameterError

    with pytest.raises(ParameterError, match="learning_rate must be a finite number above 0, got nan"):
        train("scratch", tiny_dataset, learning_rate=float("nan"), out=tmp_path / "run")
    with pytest.raises(ParameterError, match="image_size 10000 needs about .* GB .* at most about"):
        train("scratch", tiny_dataset, image_size=10_000, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_loss_that_becomes_nan_stops_training_and_keeps_the_best_epoch(tiny_dataset, tmp_path, caplog):
    import keras
    import numpy as np

    class Poison(keras.callbacks.Callback):
        """From epoch 3 on, the weights are NaN: every later loss is NaN."""

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                self.model.set_weights([np.full_like(w, np.nan) for w in self.model.get_weights()])

    run = train("scratch", tiny_dataset, epochs=5, image_size=32, batch_size=8, out=tmp_path / "run",
                callbacks=[Poison()])
    complete(run)
    history = folder.read_history(run / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2]
    outcome = json.loads((run / "training.json").read_text())
    assert outcome["stopped"].startswith("the training loss became nan in epoch 3")
    assert "training stopped; keeping the best of the 2 finished epochs" in caplog.text
    with pytest.raises(Exception, match="already finished"):
        resume(run)


def test_a_nan_loss_in_the_first_epoch_leaves_nothing_to_keep(tiny_dataset, tmp_path, capsys):
    code = main(["train", "--model", "scratch", "--data", str(tiny_dataset), "--out", str(tmp_path / "run"),
                 "--epochs", "2", "--image-size", "32", "--learning-rate", "1e38"])
    one_line_error(capsys, code, "no epoch finished, so there is no model to keep")


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MB tmpfs; skipped where this process may not mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip()})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_run_resumes_once_there_is_room(tiny_dataset, small_disk):
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 56 * 2**20)  # leaves about 8 MB: not enough for MobileNetV2's checkpoints
    run = small_disk / "run"
    process = catdog("train", "--model", "transfer", "--weights", "none", "--image-size", "32", "--epochs", "2",
                     "--data", str(tiny_dataset), "--out", str(run))
    out, err = process.communicate(timeout=300)
    assert process.returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"catdog: error: no space left on {small_disk} while writing {run}/checkpoint/")
    assert "Traceback" not in err

    filler.unlink()
    process = catdog("train", "--resume", str(run))
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    complete(run)
