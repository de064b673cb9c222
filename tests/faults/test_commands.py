"""Faults: the bad inputs of the newer commands (issue 24, items 4 to 7 and 11, and the smaller ones):
Ray at an address where no cluster answers, `--out` targets that cannot be written, image sizes no
machine holds, label checks at chance, ids with dots, long lists of skipped files, one column
used twice, empty --against folders and /explain with many files. One line, never a traceback,
and nothing written by a command that fails."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catdog.cli import main

from conftest import REPO, live_server, one_line_error, write_image

SHARED_WEIGHTS_OPTION = "--weights"


def catdog(*args: str, timeout: float, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """`catdog ARGS` in a new process, killed after `timeout` s; the result and the seconds it took."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "catdog", *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})})
    return result, time.monotonic() - started


def last_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("catdog: error: "), result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in last, last
    return last


# Item 4: Ray at an address where no cluster answers -------------------------------------------------

@pytest.fixture(scope="module")
def exported_run(tmp_path_factory) -> Path:
    """A tiny run with its ONNX export, so that `--engine ray` goes as far as connecting."""
    from conftest import write_tiny_run

    run = write_tiny_run(tmp_path_factory.mktemp("ray") / "run")
    assert main(["export", str(run), "--format", "onnx"]) == 0
    return run


@pytest.fixture
def silent_port():
    """A port of 127.0.0.1 that accepts connections and never says anything."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


def test_ray_at_an_address_where_no_cluster_answers_is_one_line_within_the_timeout(exported_run, tmp_path,
                                                                                   silent_port, monkeypatch):
    pytest.importorskip("ray")
    photo = write_image(tmp_path / "cat.png")
    # No cluster for `auto` to find, whatever else runs on this machine.
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    env = {"RAY_TMPDIR": str(tmp_path / "ray")}
    for address, timeout, message in (
            ("127.0.0.1:1", [], "cannot connect to the Ray cluster at 127.0.0.1:1 (Connection refused)"),
            ("auto", [], "cannot connect to the Ray cluster at auto"),
            (f"ray://127.0.0.1:{silent_port}", ["--timeout", "3"], "did not answer within 3 s")):
        result, seconds = catdog("predict", str(exported_run), str(photo), "--engine", "ray", "--address", address,
                                 *timeout, "--out", str(tmp_path / "p.jsonl"), timeout=120, env=env)
        last_line_error(result, message)
        assert seconds < 60, f"{address}: {seconds:.0f} s"
        assert not (tmp_path / "p.jsonl").exists()


# Item 5: tracebacks ---------------------------------------------------------------------------------

def test_an_out_that_is_a_file_is_refused_before_the_audit_or_the_explaining(tiny_run, tmp_path, capsys,
                                                                              monkeypatch):
    import catdog.audit

    monkeypatch.setattr(catdog.audit, "backbone_features", lambda *a, **k: pytest.fail("the audit ran"))
    taken = tmp_path / "taken"
    taken.write_text("mine")
    data = tmp_path / "data"
    for name in ("cats", "dogs"):
        for i in range(3):
            write_image(data / name / f"{i}.png", seed=i)
    one_line_error(capsys, main(["audit", "--data", str(data), "--out", str(taken)]),
                   f"{taken} is a file, but a folder is to be written there")
    # Checked before the run is even opened.
    one_line_error(capsys, main(["explain", str(tmp_path / "no-such-run"), str(data), "--out", str(taken)]),
                   f"{taken} is a file, but a folder is to be written there")
    assert taken.read_text() == "mine"


def test_an_image_size_whose_weights_no_memory_holds_is_one_line(tiny_dataset, tmp_path, capsys):
    started = time.monotonic()
    code = main(["train", "--model", "scratch", "--data", str(tiny_dataset), "--image-size", "100000",
                 "--epochs", "1", "--out", str(tmp_path / "run")])
    one_line_error(capsys, code, "--image-size 100000 needs about", "at most about")
    assert time.monotonic() - started < 60 and not (tmp_path / "run").exists()


def test_the_memory_check_counts_the_parameters():
    import keras

    from catdog.training.memory import training_bytes

    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(1_000_000)(inputs)  # 5 million parameters, 1 million activations per image
    model = keras.Model(inputs, outputs)
    assert training_bytes(model, batch_size=1) >= model.count_params() * 4 * 4


# Item 6: label checks relative to chance ---------------------------------------------------------------

@pytest.mark.slow
def test_labels_are_not_judged_at_chance_and_the_folds_run_are_reported(reference_data, shared_weights, tmp_path,
                                                                         capsys):
    data = tmp_path / "two"
    for name in ("cats", "dogs"):
        (data / name).mkdir(parents=True)
        for n in (0, 1):
            (data / name / f"{name[:-1]}.{n}.jpg").symlink_to(reference_data / "train" / name / f"{name[:-1]}.{n}.jpg")
    code = main(["audit", "--data", str(data), SHARED_WEIGHTS_OPTION, str(shared_weights), "--json",
                 "--fail-on", "label-issues"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["label_issues"] == []
    methods = result["methods"]
    assert methods["out_of_fold_accuracy"] == 0.5 and methods["label_check_accuracy_needed"] == 0.75
    assert "2-fold" in methods["label_issues"]
    assert any(w.startswith("labels not judged") and "2 folds" in w for w in result["warnings"])


def test_the_accuracy_needed_to_judge_labels_is_halfway_from_chance():
    from catdog.audit.issues import label_check_accuracy

    assert label_check_accuracy(2) == 0.75 and label_check_accuracy(10) == pytest.approx(0.55)
    assert label_check_accuracy(120) == pytest.approx(1 / 120 + (1 - 1 / 120) / 2)


# Item 7: a failing predict leaves no --out file ----------------------------------------------------------

@pytest.mark.parametrize("name", ["p.jsonl", "p.parquet"])
def test_a_predict_that_fails_leaves_no_out_file(tiny_run, tmp_path, capsys, name):
    (tmp_path / "empty").mkdir()
    one_line_error(capsys, main(["predict", str(tiny_run), str(tmp_path / "empty"), "--out", str(tmp_path / name)]),
                   "no image files found")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_a_predict_out_that_cannot_be_written_is_refused_before_the_model_loads(tmp_path, capsys):
    (tmp_path / "mine.jsonl").write_text("my notes\n")
    one_line_error(capsys, main(["predict", str(tmp_path / "no-such-run"), str(tmp_path), "--out",
                                 str(tmp_path / "mine.jsonl")]), "is not a predictions file written by catdog")
    assert (tmp_path / "mine.jsonl").read_text() == "my notes\n"


# Item 11: ids with a dot ------------------------------------------------------------------------------

def test_extensionless_ids_with_a_dot_name_their_files(tmp_path, capsys):
    root = tmp_path / "kaggle"
    rows = ["id,label"]
    for name in ("cat", "dog"):
        for i in range(4):
            write_image(root / "train" / f"{name}.{i}.jpg", seed=i)
            rows.append(f"train/{name}.{i},{name}s")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    assert main(["data", "info", "--data", str(root), "--labels", str(root / "labels.csv"), "--path-column", "id",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == ["cats", "dogs"] and report["skipped"] == []
    assert sum(sum(counts.values()) for counts in report["splits"].values()) == 8


# The smaller items ---------------------------------------------------------------------------------------

def test_a_long_list_of_skipped_files_is_summed_up_and_json_has_them_all(tmp_path, capsys):
    root = tmp_path / "data"
    rows = ["path,label"]
    for name in ("cats", "dogs"):
        for i in range(3):
            write_image(root / f"{name}{i}.png", seed=i)
            rows.append(f"{name}{i}.png,{name}")
    rows += [f"missing/{i}.jpg,cats" for i in range(5000)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    options = ["--data", str(root), "--labels", str(tmp_path / "labels.csv")]
    assert main(["data", "info", *options]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) < 50
    assert "... and 4,980 more (4,980 no such file); --json lists them all" in out
    assert main(["data", "info", *options, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["skipped"]) == 5000


def test_one_column_cannot_give_both_paths_and_labels(tmp_path, capsys):
    write_image(tmp_path / "data" / "a.png")
    (tmp_path / "labels.csv").write_text("path,label\na.png,cats\n")
    one_line_error(capsys, main(["data", "info", "--data", str(tmp_path / "data"), "--labels",
                                 str(tmp_path / "labels.csv"), "--path-column", "path", "--label-column", "path"]),
                   "one column cannot give both the paths and the labels")


def test_an_against_folder_without_a_usable_image_is_said_and_fails_the_leak_check(tmp_path, capsys, monkeypatch):
    import numpy as np

    import catdog.audit

    monkeypatch.setattr(catdog.audit, "backbone_features",
                        lambda files, **kwargs: np.random.default_rng(0).normal(size=(len(files), 8)))
    data = tmp_path / "data"
    for name, colour in (("cats", (200, 30, 30)), ("dogs", (30, 30, 200))):
        for i in range(4):
            write_image(data / name / f"{i}.png", color=colour, seed=i)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    (empty / "notes.jpg").write_text("not a photo")
    code = main(["audit", "--data", str(data), "--against", str(empty), "--fail-on", "leaks"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{empty} has no usable image (1 files skipped): nothing of it was compared with the data set" in err
    assert "so leaks into it could not be looked for" in err


def test_explain_on_the_server_takes_one_file_only(tiny_run, tmp_path):
    import httpx

    from catdog.deploy.serve.app import create_app

    photo = write_image(tmp_path / "cat.png").read_bytes()
    files = [("files", (f"{i}.png", photo, "image/png")) for i in range(3)]
    with live_server(create_app(tiny_run)) as url, httpx.Client(base_url=url, timeout=60) as client:
        response = client.post("/explain", files=files)
        assert response.status_code == 400
        assert response.json()["detail"] == "3 files sent, but this endpoint takes one image per request"
        one = client.post("/explain", files=files[:1])
        assert one.status_code == 200 and one.headers["content-type"] == "image/png"
