"""The HTTP API: predictions, model description, and every kind of bad request."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from catdog.deploy.predict import Predictor
from catdog.deploy.serve import Batcher, Limits, create_app
from catdog.errors import CatdogError

from conftest import live_server


@pytest.fixture(scope="module")
def client(tiny_run):
    """An HTTP client for a real server on 127.0.0.1 with the default limits."""
    with live_server(create_app(tiny_run)) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def strict_client(tiny_run):
    """A server with small limits: 64 KB per request, 10,000 pixels per image, 2 files per request."""
    limits = Limits(max_upload_bytes=64 * 1024, max_pixels=10_000, max_files=2)
    with live_server(create_app(tiny_run, limits)) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture
def photos(seed_data) -> list[Path]:
    validation = seed_data / "validation"
    return [validation / "cats" / "cat.2002.jpg", validation / "dogs" / "dog.2002.jpg"]


def upload(*files: tuple[str, bytes]) -> list:
    return [("files", (name, data, "application/octet-stream")) for name, data in files]


def png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_model_describes_the_run(client, tiny_run):
    assert client.get("/model").json() == {
        "run": tiny_run.name,
        "preset": "tiny",
        "classes": ["cats", "dogs"],
        "image_size": 64,
        "runtime": "keras",
        "test_accuracy": 0.5,
    }


def test_page_is_self_contained(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'type="file"' in page and "multiple" in page
    assert "http://" not in page and "https://" not in page and "<script src" not in page


def test_predict_batches_several_files_like_catdog_predict(client, tiny_run, photos):
    response = client.post("/predict", files=upload(*((p.name, p.read_bytes()) for p in photos)))

    assert response.status_code == 200
    predictions = response.json()["predictions"]
    expected = list(Predictor(tiny_run).predict_paths(photos))
    assert [p["path"] for p in predictions] == ["cat.2002.jpg", "dog.2002.jpg"]
    for got, want in zip(predictions, expected, strict=True):
        assert set(got) == {"path", "label", "probability", "probabilities"}
        assert got["label"] == want["label"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)


@pytest.mark.parametrize(
    "request_kwargs, status, message",
    [
        ({}, 400, "no file sent"),
        ({"data": {"files": "not a file"}}, 400, "no file sent"),
        ({"files": [("image", ("cat.jpg", b"\xff\xd8\xff", "image/jpeg"))]}, 400, "no file sent"),
        ({"files": upload(("empty.jpg", b""))}, 422, "empty.jpg: empty file"),
        ({"files": upload(("notes.txt", b"plain text, honestly"))}, 422, "notes.txt: not an image"),
        ({"files": upload(("half.png", png((40, 40))[:60]))}, 422, "half.png: "),
    ],
)
def test_bad_requests_get_a_clear_error_and_the_server_keeps_serving(client, photos, request_kwargs, status, message):
    response = client.post("/predict", **request_kwargs)

    assert response.status_code == status
    assert message in response.json()["detail"]
    assert client.post("/predict", files=upload(("cat.jpg", photos[0].read_bytes()))).status_code == 200


def test_a_decompression_bomb_is_refused_before_decoding(client):
    bomb = png((8000, 8000), mode="1")  # 64 million pixels in a few kilobytes
    assert len(bomb) < 100_000

    response = client.post("/predict", files=upload(("bomb.png", bomb)))

    assert response.status_code == 422
    assert response.json()["detail"] == "bomb.png: too large: 8000x8000 pixels exceeds the 40000000-pixel limit"


def test_the_pixel_limit_is_configurable(strict_client):
    response = strict_client.post("/predict", files=upload(("big.png", png((101, 100)))))
    assert response.status_code == 422
    assert "exceeds the 10000-pixel limit" in response.json()["detail"]
    assert strict_client.post("/predict", files=upload(("small.png", png((100, 100))))).status_code == 200


def test_too_many_files(strict_client):
    response = strict_client.post("/predict", files=upload(*[("small.png", png((10, 10)))] * 3))
    assert response.status_code == 400
    assert "Maximum number of files is 2" in response.json()["detail"]


def test_an_upload_over_the_size_limit_is_refused(strict_client):
    response = strict_client.post("/predict", files=upload(("huge.png", b"\x89PNG" + bytes(70 * 1024))))
    assert response.status_code == 413
    assert response.json()["detail"] == "upload is larger than the server's limit of 0.0625 MB"


def test_the_size_limit_holds_without_a_content_length(strict_client):
    """A chunked upload that never says how big it is is cut off as it streams in."""
    boundary = "catdogboundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n\r\n'.encode()

    def body():
        yield head
        for _ in range(100):
            yield bytes(1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = strict_client.post(
        "/predict", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code == 413
    assert strict_client.post("/predict", files=upload(("small.png", png((10, 10))))).status_code == 200


def test_serve_reports_a_missing_run_before_listening(tmp_path, capsys):
    from catdog.cli import main

    assert main(["serve", str(tmp_path / "nope"), "--port", "1"]) == 2
    assert "catdog: error: run folder" in capsys.readouterr().err


def test_the_batcher_puts_waiting_requests_through_the_model_together(tiny_run):
    predictor = Predictor(tiny_run)
    predict_arrays = predictor.predict_arrays
    calls, release = [], threading.Event()

    def first_call_waits(pixels):
        calls.append(len(pixels))
        release.wait(timeout=10)  # hold the model until every request is queued
        return predict_arrays(pixels)

    predictor.predict_arrays = first_call_waits
    batcher = Batcher(predictor)
    rng = np.random.default_rng(0)
    requests = [rng.uniform(0, 255, (n, 64, 64, 3)).astype("float32") for n in (1, 2, 1, 3, 1)]

    async def send_all():
        answers = [asyncio.ensure_future(batcher.probabilities(pixels)) for pixels in requests]
        await asyncio.sleep(0.2)
        release.set()
        return await asyncio.gather(*answers)

    answers = asyncio.run(send_all())
    batcher.stop()

    assert sum(calls) == 8 and len(calls) <= 2
    for pixels, answer in zip(requests, answers, strict=True):
        np.testing.assert_allclose(answer, predict_arrays(pixels), atol=1e-6)


def test_a_failed_batch_fails_its_requests_and_the_batcher_goes_on(tiny_run):
    batcher = Batcher(Predictor(tiny_run))

    async def send(pixels):
        return await batcher.probabilities(pixels)

    with pytest.raises(CatdogError, match="expected images of shape"):
        asyncio.run(send(np.zeros((1, 32, 32, 3), dtype="float32")))
    assert asyncio.run(send(np.zeros((2, 64, 64, 3), dtype="float32"))).shape == (2, 2)
    batcher.stop()
    assert not batcher._worker.is_alive()
