"""On a GPU machine: TensorFlow sees the GPUs, precision "auto" picks a mixed policy for them, and the
mirrored strategy trains on every one. Skipped where there is no GPU (as on the machines catdog is
developed on); run them with `pytest -m gpu` where there is."""

from __future__ import annotations

import json

import pytest

from catdog.environment import gpu_compute_capability, gpus

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gpus(), reason="no GPU: TensorFlow sees none here")]


def test_auto_precision_is_mixed_on_a_recent_gpu():
    from catdog.models import get_preset
    from catdog.runs.settings import resolve_precision

    capability = gpu_compute_capability()
    expected = "mixed_bfloat16" if capability >= (8, 0) else "mixed_float16" if capability >= (7, 0) else "float32"
    assert resolve_precision("auto", get_preset("transfer")) == expected


def test_mirrored_trains_on_every_gpu(tiny_dataset, tmp_path):
    from conftest import train

    run = train("scratch", tiny_dataset, epochs=2, image_size=32, batch_size=8, strategy="mirrored",
                out=tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    assert config["replicas"] == len(gpus()) and all(device.startswith("GPU") for device in config["devices"])
