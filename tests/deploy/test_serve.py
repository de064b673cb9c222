"""The HTTP API: predictions, model description, and every kind of bad request."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from catdog.deploy.predict import Predictor
from catdog.deploy.serve.app import create_app
from catdog.deploy.serve.batcher import Batcher
from catdog.deploy.serve.connections import Connections
from catdog.deploy.serve.limits import Limits
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
def photos(reference_data) -> list[Path]:
    validation = reference_data / "validation"
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
        "task": "multiclass",
        "thresholds": None,
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


def test_the_page_has_an_icon_and_names_unlike_images_as_the_command_line_does(client):
    from catdog.outputs import UNLIKE_TRAINING_IMAGES

    page = client.get("/").text
    assert 'rel="icon" href="favicon.svg"' in page
    for path in ("/favicon.svg", "/favicon.ico"):  # browsers ask for /favicon.ico when a page names no icon
        response = client.get(path)
        assert response.status_code == 200 and response.headers["content-type"] == "image/svg+xml"
        assert response.content.startswith(b"<svg")
    assert f'const UNLIKE = "{UNLIKE_TRAINING_IMAGES}";' in page


def test_predict_batches_several_files_like_catdog_predict(client, tiny_run, photos):
    response = client.post("/predict", files=upload(*((p.name, p.read_bytes()) for p in photos)))

    assert response.status_code == 200
    predictions = response.json()["predictions"]
    expected = list(Predictor(tiny_run).predict_paths(photos))
    assert [p["path"] for p in predictions] == ["cat.2002.jpg", "dog.2002.jpg"]
    for got, want in zip(predictions, expected, strict=True):
        assert set(got) == {"path", "label", "probability", "probabilities", "ood_score", "in_distribution"}
        assert got["label"] == want["label"] and got["in_distribution"] == want["in_distribution"]
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
    score_arrays = predictor.score_arrays
    calls, release = [], threading.Event()

    def first_call_waits(pixels):
        calls.append(len(pixels))
        release.wait(timeout=10)  # hold the model until every request is queued
        return score_arrays(pixels)

    predictor.score_arrays = first_call_waits
    batcher = Batcher(predictor)
    rng = np.random.default_rng(0)
    requests = [rng.uniform(0, 255, (n, 64, 64, 3)).astype("float32") for n in (1, 2, 1, 3, 1)]

    async def send_all():
        answers = [asyncio.ensure_future(batcher.scores(pixels)) for pixels in requests]
        await asyncio.sleep(0.2)
        release.set()
        return await asyncio.gather(*answers)

    answers = asyncio.run(send_all())
    batcher.stop()

    assert sum(calls) == 8 and len(calls) <= 2
    for pixels, answer in zip(requests, answers, strict=True):
        np.testing.assert_allclose(answer.probabilities, score_arrays(pixels).probabilities, atol=1e-6)


def test_a_failed_batch_fails_its_requests_and_the_batcher_goes_on(tiny_run):
    batcher = Batcher(Predictor(tiny_run))

    async def send(pixels):
        return await batcher.scores(pixels)

    with pytest.raises(CatdogError, match="expected images of shape"):
        asyncio.run(send(np.zeros((1, 32, 32, 3), dtype="float32")))
    assert asyncio.run(send(np.zeros((2, 64, 64, 3), dtype="float32"))).probabilities.shape == (2, 2)
    batcher.stop()
    assert not batcher._worker.is_alive()


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB (Linux)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


@contextlib.contextmanager
def catdog_serve(run: Path, *options: str) -> Iterator[tuple[subprocess.Popen, str, list[str]]]:
    """`catdog serve RUN --port 0` in its own process; yield it, its URL and its stderr lines so far."""
    process = subprocess.Popen([sys.executable, "-m", "catdog", "serve", str(run), "--port", "0", *options],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    lines: list[str] = []
    found: list[str] = []
    listening = threading.Event()

    def read_stderr() -> None:
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            if match := re.search(r" at (http://\S+)/ ", line):
                found.append(match.group(1))
                listening.set()
        listening.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        if not listening.wait(120) or not found:
            pytest.fail("catdog serve did not start:\n" + "\n".join(lines))
        yield process, found[0], lines
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(10)


def test_load_with_attacks_good_requests_all_succeed_and_memory_settles(tiny_run, reference_data, capsys):
    """Good clients predict real photos while others send pixel bombs, too many files, text,
    large but allowed images, 300 connections that never finish their headers, and uploads
    cut off half-way; every good request succeeds and the server's memory settles."""
    if not Path("/proc/self/status").exists():
        pytest.skip("reads memory from /proc")
    photos = sorted((reference_data / "validation" / "cats").glob("*.jpg"))[:8]
    photos += sorted((reference_data / "validation" / "dogs").glob("*.jpg"))[:8]
    big = png((6000, 6000), mode="L")  # 36 megapixels in 35 KB
    large_photo = png((6000, 6000))  # the same size in RGB
    results: dict[str, list[int]] = {}

    with catdog_serve(tiny_run) as (server, url, log):
        host, port = url.removeprefix("http://").split(":")
        with httpx.Client(base_url=url, timeout=60) as client:  # warm up, then measure
            for _ in range(3):
                assert client.post("/predict", files=upload(("cat.jpg", photos[0].read_bytes()))).status_code == 200
        before = rss_mb(server.pid)
        peak = [before]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.05):
                peak[0] = max(peak[0], rss_mb(server.pid))

        def good(i: int) -> int:
            pair = [photos[(2 * i) % len(photos)], photos[(2 * i + 1) % len(photos)]]
            files = upload(*((p.name, p.read_bytes()) for p in pair))
            response = httpx.post(url + "/predict", files=files, timeout=120)
            assert response.status_code == 200, response.text
            assert [p["path"] for p in response.json()["predictions"]] == [p.name for p in pair]
            return len(pair)

        def bad(kind: str, files: list) -> None:
            response = httpx.post(url + "/predict", files=files, timeout=120)
            results.setdefault(kind, []).append(response.status_code)

        def cut_off(i: int) -> None:
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n"
                             b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\nContent-Disposition: "
                             b'form-data; name="files"; filename="a.jpg"\r\n\r\n' + photos[i].read_bytes()[:5000])
                time.sleep(0.1)

        slow = [socket.create_connection((host, int(port)), timeout=10) for _ in range(300)]
        for sock in slow:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Never-Ends: ")
        slow_since = time.monotonic()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            attacks = [
                *(pool.submit(bad, "pixel bombs", upload(*[(f"b{j}.png", big) for j in range(32)])) for _ in range(3)),
                *(pool.submit(bad, "large", upload(("large.png", large_photo))) for _ in range(2)),
                *(pool.submit(bad, "too many files", upload(*[(f"{j}.png", png((8, 8))) for j in range(33)]))
                  for _ in range(2)),
                *(pool.submit(bad, "not images", upload(("notes.txt", b"plain text"))) for _ in range(2)),
                *(pool.submit(cut_off, i) for i in range(10)),
            ]
            goods = [pool.submit(good, i) for i in range(24)]
            images = sum(future.result() for future in goods)
            seconds = time.perf_counter() - start
            slow_waited = time.monotonic() - slow_since
            slow_answers = [sock.recv(65536) if select.select([sock], [], [], 0)[0] else None for sock in slow]
            for future in attacks:
                future.result()
        for sock in slow:
            sock.close()
        time.sleep(0.5)
        sampling.set()
        sampler.join()
        after = rss_mb(server.pid)
        assert httpx.get(url + "/health").status_code == 200

    assert results == {"pixel bombs": [413] * 3, "large": [200] * 2, "too many files": [400] * 2,
                       "not images": [422] * 2}
    # While the good requests ran, each slow connection was still waiting, or (on a machine
    # slow enough to take longer than the header timeout) had been answered 408.
    assert all(answer is None or answer.startswith(b"HTTP/1.1 408") for answer in slow_answers)
    if slow_waited < Connections().header_timeout_s - 1:
        assert slow_answers == [None] * 300
    assert not any("Traceback" in line or "ERROR" in line for line in log), "\n".join(log)
    # What stays: oneDNN's allocator keeps the largest decoded images (one per decoding slot) for reuse.
    retained = Limits().max_decoding * 6000 * 6000 * 3 / 2**20
    assert after - before < retained + 150, f"{before:.0f} MB before, {after:.0f} MB after"
    with capsys.disabled():
        print(f"\nserve under attack: {images / seconds:.1f} images/s ({images} images in 24 requests, all 200, "
              f"{seconds:.1f} s) beside 3 pixel-bomb requests (413), 2 of a 36 MP image (200), 2 with 33 files "
              f"(400), 2 not images (422), 10 cut off mid-upload and 300 unfinished headers held open")
        print(f"serve memory: {before:.0f} MB before, {peak[0]:.0f} MB at most, {after:.0f} MB after")
