"""A bounded load test: `catdog serve` in its own process, many concurrent clients, no failures."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow

REQUESTS = 500
CLIENTS = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tiny_run):
    """`catdog serve` on a free port of 127.0.0.1, in a child process; yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "catdog", "serve", str(tiny_run), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"catdog serve did not start: {process.communicate()[1].decode()[-2000:]}")
        time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=30)


def small_jpegs(n: int) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    jpegs = []
    for _ in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype="uint8")).save(buffer, format="JPEG")
        jpegs.append(buffer.getvalue())
    return jpegs


def test_many_concurrent_requests_all_succeed(server, capsys):
    jpegs = small_jpegs(8)
    local = threading.local()
    clients = []

    def request(i: int) -> tuple[float, int, list]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=server, timeout=60)
            clients.append(local.client)
        start = time.perf_counter()
        response = local.client.post("/predict", files=[("files", (f"{i}.jpg", jpegs[i % len(jpegs)], "image/jpeg"))])
        elapsed = time.perf_counter() - start
        return elapsed, response.status_code, response.json().get("predictions", [])

    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(request, range(REQUESTS)))
    wall = time.perf_counter() - start
    for client in clients:
        client.close()

    failures = [(i, status) for i, (_, status, _) in enumerate(results) if status != 200]
    assert failures == []
    for i, (_, _, predictions) in enumerate(results):
        assert [p["path"] for p in predictions] == [f"{i}.jpg"]
        assert set(predictions[0]["probabilities"]) == {"cats", "dogs"}
    p50, p95, p99 = np.percentile([elapsed for elapsed, _, _ in results], [50, 95, 99]) * 1000
    with capsys.disabled():
        print(
            f"\n{REQUESTS} requests from {CLIENTS} clients in {wall:.1f} s ({REQUESTS / wall:.0f} requests/s), "
            f"0 failed; latency p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms"
        )
