"""Data bigger than memory: decoded images and frozen features over the memory budget go to the run's
cache folder, train to the same result as in memory, and are removed when the run is complete."""

from __future__ import annotations

import logging

import pytest

from catdog.runs import folder

from conftest import train


@pytest.mark.parametrize("preset", ["scratch", "transfer"])
def test_over_the_memory_budget_training_spills_to_disk_and_reaches_the_same_result(
        preset, tiny_dataset, tmp_path, monkeypatch, caplog):
    settings = dict(epochs=2, image_size=32, batch_size=8, seed=5, weights="none")
    in_memory = train(preset, tiny_dataset, out=tmp_path / "memory", **settings)

    monkeypatch.setenv("CATDOG_CACHE_MEMORY_MB", "0.001")  # 1 kB: every split is over it
    spilled_files = []
    import catdog.training.engine as engine

    original = engine.fit

    def fit_and_look(run, *args, **kwargs):
        original(run, *args, **kwargs)
        spilled_files.extend(sorted(p.name for p in (run / "cache").rglob("*") if p.is_file()))

    monkeypatch.setattr(engine, "fit", fit_and_look)
    with caplog.at_level(logging.INFO, logger="catdog"):
        on_disk = train(preset, tiny_dataset, out=tmp_path / "disk", **settings)

    assert any(name.startswith("train-32px") for name in spilled_files)  # tf.data's cache files
    assert "on disk in" in caplog.text
    if preset == "transfer":
        assert "features-train.npy" in spilled_files and "kept in " + str(tmp_path / "disk") in caplog.text
    assert not (on_disk / "cache").exists()  # removed with the run complete
    one, two = (folder.read_history(run / "history.csv") for run in (in_memory, on_disk))
    for a, b in zip(one, two, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["val_accuracy"] == b["val_accuracy"]
