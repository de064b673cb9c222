"""Batch prediction on Ray Data (a local Ray): the same rows as `catdog predict`, from folders, lists of
paths and URLs, written as JSON lines or one Parquet file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from catdog.cli import main

from conftest import one_line_error, write_tiny_run

pytest.importorskip("ray", reason="the ray extra is not installed")


@pytest.fixture(scope="module")
def photos(tmp_path_factory, reference_data):
    root = tmp_path_factory.mktemp("photos")
    for name in ("cats", "dogs"):
        (root / name).mkdir()
        for n in range(2000, 2012):
            (root / name / f"{n}.jpg").symlink_to(reference_data / "validation" / name / f"{name[:-1]}.{n}.jpg")
    (root / "dogs" / "notes.jpg").write_text("not a photo")
    return root


@pytest.mark.slow
def test_ray_gives_the_rows_catdog_predict_gives(photos, tmp_path, capsys):
    import pyarrow.parquet as pq

    run = write_tiny_run(tmp_path / "run", image_size=64)
    assert main(["predict", str(run), str(photos), "--json"]) == 0
    local = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(local) == 24

    listing = tmp_path / "paths.txt"
    listing.write_text("# some of them\n" + "".join(f"{photos / 'dogs' / f'{n}.jpg'}\n" for n in range(2000, 2012)))
    parquet, jsonl = tmp_path / "preds.parquet", tmp_path / "preds.jsonl"
    sources = [str(run), f"file://{photos / 'cats'}", str(listing), str(photos / "dogs" / "notes.jpg")]
    # Predicting never exports by itself: without a current ONNX export, it says how to make one.
    one_line_error(capsys, main(["predict", *sources, "--engine", "ray", "--out", str(parquet)]),
                   f"write it with `catdog export {run} --format onnx` (or add --export)")
    assert not (run / "export").exists() and not parquet.exists()

    assert main(["predict", *sources, "--engine", "ray", "--export", "--out", str(parquet)]) == 0
    err = capsys.readouterr().err
    assert f"skipping {photos / 'dogs' / 'notes.jpg'}: not an image" in err and "wrote 24 predictions" in err
    assert (run / "export" / "model.onnx").is_file()  # made first, as asked
    rows = pq.read_table(parquet).to_pylist()

    by_name = {row["path"].rsplit("/", 2)[-2] + "/" + row["path"].rsplit("/", 1)[-1]: row for row in local}
    assert [row["path"].rsplit("/", 1)[-1] for row in rows] == [row["path"].rsplit("/", 1)[-1] for row in local]
    for row in rows:
        expected = by_name[row["path"].rsplit("/", 2)[-2] + "/" + row["path"].rsplit("/", 1)[-1]]
        assert row["label"] == expected["label"] and set(row) == set(expected)
        np.testing.assert_allclose(list(row["probabilities"].values()), list(expected["probabilities"].values()),
                                   atol=1e-5)

    assert main(["predict", str(run), str(photos), "--engine", "ray", "--out", str(jsonl)]) == 0
    assert [json.loads(line)["path"] for line in jsonl.read_text().splitlines()] == [row["path"] for row in local]


def test_ray_is_an_extra_and_outputs_are_checked(tiny_run, tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    code = main(["predict", str(tiny_run), str(tmp_path), "--engine", "ray"])
    err = capsys.readouterr().err
    assert code == 2 and "the ray engine needs Ray: install it with pip install 'catdog[ray]'" in err
    monkeypatch.undo()

    theirs = tmp_path / "notes.jsonl"
    theirs.write_text("my notes\n")
    code = main(["predict", str(tiny_run), str(tmp_path), "--out", str(theirs)])
    assert code == 2 and "is not a predictions file written by catdog" in capsys.readouterr().err
    assert theirs.read_text() == "my notes\n"
