"""The server against hostile and broken clients: pixel bombs, slow and vanishing
connections, foreign Host headers, bad ports. Each test sends the bad input to a real
server (uvicorn configured as `catdog serve` configures it) and checks the answer, the
server's log, and that good requests are still served."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn

from catdog.deploy.predict import Predictor
from catdog.deploy.serve import app as serve_module
from catdog.deploy.serve.app import create_app
from catdog.deploy.serve.connections import Connections, LoopbackHostOnly, listening_socket, uvicorn_config
from catdog.deploy.serve.limits import Limits

from conftest import start_in_thread

PHOTO = Path("validation") / "cats" / "cat.2002.jpg"


@dataclass
class Server:
    port: int
    url: str
    records: list[logging.LogRecord] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Log records that are errors, or carry a traceback."""
        return [record.getMessage() for record in self.records if record.levelno >= logging.ERROR or record.exc_info]


class _Keep(logging.Handler):
    def __init__(self, records: list):
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def serving(app, connections: Connections | None = None) -> Iterator[Server]:
    """`app` served on a free port of 127.0.0.1 with `catdog serve`'s uvicorn configuration,
    in a background thread; every log record of uvicorn, asyncio and the app is kept."""
    sock = listening_socket("127.0.0.1", 0)
    # log_config=None: uvicorn leaves logging as it is (its own configuration would write to
    # the stderr of the moment, which pytest closes after the test)
    server = uvicorn.Server(uvicorn_config(app, connections or Connections(), log_level="warning", log_config=None))
    port = sock.getsockname()[1]
    result = Server(port, f"http://127.0.0.1:{port}")
    handler = _Keep(result.records)
    loggers = [logging.getLogger(name) for name in ("uvicorn", "asyncio", "catdog")]
    for logger in loggers:
        logger.addHandler(handler)
    thread = start_in_thread(server, sock)
    try:
        yield result
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        for logger in loggers:
            logger.removeHandler(handler)


def png(size: tuple[int, int], mode: str = "L") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(*files: tuple[str, bytes]) -> list:
    return [("files", (name, data, "application/octet-stream")) for name, data in files]


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection; fails after `timeout` s."""
    sock.settimeout(timeout)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def read_response(sock: socket.socket, timeout: float = 10) -> bytes:
    """One whole response (head and a body of its content-length), leaving the connection open."""
    sock.settimeout(timeout)
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def still_open(sock: socket.socket) -> bool:
    """Whether the server has neither sent anything nor closed the connection (right now)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def status_and_detail(response: bytes) -> tuple[int, str]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["detail"]


@pytest.fixture(scope="module")
def app(tiny_run):
    return create_app(tiny_run)


@pytest.fixture
def photo(reference_data) -> bytes:
    return (reference_data / PHOTO).read_bytes()


# 1. Pixels: per request, from the headers, and decoding bounded across requests.


def test_a_request_of_32_pixel_bombs_is_refused_from_their_headers_without_decoding(app, photo, monkeypatch):
    bomb = png((6000, 6000))  # 36 megapixels in 35 KB
    decoded = []
    monkeypatch.setattr(Predictor, "decode_uploads", lambda self, uploads: decoded.append(uploads))

    with serving(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        start = time.perf_counter()
        response = client.post("/predict", files=upload(*[(f"bomb{i}.png", bomb) for i in range(32)]))
        seconds = time.perf_counter() - start

    assert len(bomb) * 32 < 1.5 * 2**20
    assert response.status_code == 413
    assert response.json()["detail"] == ("the images have 1152000000 pixels in all, more than the server's limit "
                                         "of 100000000 per request: send fewer or smaller images")
    assert decoded == [] and seconds < 2, f"took {seconds:.1f} s"
    assert server.problems() == []


def test_the_request_pixel_limit_counts_all_images(tiny_run, photo):
    app = create_app(tiny_run, Limits(max_request_pixels=1_000_000))
    picture = png((600, 500))  # 300,000 pixels
    with serving(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        three = client.post("/predict", files=upload(*[(f"p{i}.png", picture) for i in range(3)]))
        four = client.post("/predict", files=upload(*[(f"p{i}.png", picture) for i in range(4)]))
    assert three.status_code == 200 and len(three.json()["predictions"]) == 3
    assert four.status_code == 413
    assert four.json()["detail"].startswith("the images have 1200000 pixels in all, more than the server's limit "
                                            "of 1000000 per request")


def test_a_bad_upload_is_named_before_anything_is_decoded(app, photo, monkeypatch):
    decoded = []
    monkeypatch.setattr(Predictor, "decode_uploads", lambda self, uploads: decoded.append(uploads))
    files = [("cat.jpg", photo), ("notes.txt", b"not an image"), ("bomb.png", png((8000, 8000), "1"))]
    with serving(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        not_image = client.post("/predict", files=upload(*files))
        bomb = client.post("/predict", files=upload(files[0], files[2]))
    assert not_image.status_code == 422 and not_image.json()["detail"] == "notes.txt: not an image"
    assert bomb.status_code == 422
    assert bomb.json()["detail"] == "bomb.png: too large: 8000x8000 pixels exceeds the 40000000-pixel limit"
    assert decoded == []


def test_uploads_decode_at_most_max_decoding_at_once_across_requests(tiny_run, photo, monkeypatch):
    lock, active, peak = threading.Lock(), [0], [0]
    decode_uploads = Predictor.decode_uploads

    def counting(self, uploads):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.05)
            return decode_uploads(self, uploads)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(Predictor, "decode_uploads", counting)
    app = create_app(tiny_run, Limits(max_decoding=2))
    with serving(app) as server:

        def send(i: int) -> httpx.Response:
            return httpx.post(server.url + "/predict", files=upload(*[(f"{i}-{j}.jpg", photo) for j in range(4)]),
                              timeout=60)

        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(send, range(6)))

    for i, response in enumerate(responses):
        assert response.status_code == 200
        assert [p["path"] for p in response.json()["predictions"]] == [f"{i}-{j}.jpg" for j in range(4)]
    assert peak[0] == 2


# 2. Slow and vanishing clients.


def test_slow_clients_are_closed_after_the_header_timeout_while_good_ones_are_served(app, photo, capsys):
    timeout = 6.0  # seconds; long enough for the good requests on a machine busy with other tests
    partial = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; bou"
    with serving(app, Connections(header_timeout_s=timeout)) as server:
        start = time.monotonic()
        slow = [connect(server.port) for _ in range(300)]
        for sock in slow[:280]:  # the last 20 send nothing at all
            sock.sendall(partial)
        keep_alive = connect(server.port)  # one good request, then the start of another
        keep_alive.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(keep_alive, timeout=timeout).startswith(b"HTTP/1.1 200")
        keep_alive.sendall(b"GET /health HTTP/1.1\r\nHo")

        with httpx.Client(base_url=server.url, timeout=30) as client:
            good_start = time.monotonic()
            health = client.get("/health")
            predicted = client.post("/predict", files=upload(("cat.jpg", photo)))
            good_seconds = time.monotonic() - good_start
        assert health.status_code == 200 and predicted.status_code == 200
        assert time.monotonic() - start < timeout and all(still_open(sock) for sock in slow)

        answers = [read_until_closed(sock, timeout + 5) for sock in [*slow, keep_alive]]
        closed_after = time.monotonic() - start
        for sock in [*slow, keep_alive]:
            sock.close()

    for answer in answers[:280] + answers[-1:]:
        assert status_and_detail(answer) == (408, f"request headers not complete after {timeout:g} s")
    assert set(answers[280:300]) == {b""}
    assert timeout <= closed_after < timeout + 3
    assert server.problems() == []
    with capsys.disabled():
        print(f"\n300 slow clients: good requests answered in {good_seconds:.2f} s while they hung; "
              f"all closed {closed_after:.1f} s after connecting (header timeout {timeout:g} s)")


def test_a_client_that_disconnects_mid_upload_leaves_no_traceback(app, photo, capfd):
    boundary = "catdogboundary"
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={boundary}"
            "\r\nContent-Length: 200000\r\n\r\n").encode()
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="cat.jpg"\r\n\r\n'.encode()
    with serving(app) as server:
        for size in (0, 1000, 50_000):
            sock = connect(server.port)
            sock.sendall(head + part + photo[:size])
            time.sleep(0.2)
            sock.close()
        time.sleep(0.3)
        response = httpx.post(server.url + "/predict", files=upload(("cat.jpg", photo)), timeout=30)

    assert response.status_code == 200
    assert server.problems() == []
    assert "Traceback" not in capfd.readouterr().err


def test_a_stalled_upload_gets_408_and_is_closed(tiny_run, photo):
    app = create_app(tiny_run, Limits(body_timeout_s=1))
    with serving(app) as server:
        sock = connect(server.port)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b"
                     b"\r\nContent-Length: 10000\r\n\r\n--b\r\n")
        start = time.monotonic()
        answer = read_until_closed(sock, 10)
        seconds = time.monotonic() - start
        sock.close()
        good = httpx.post(server.url + "/predict", files=upload(("cat.jpg", photo)), timeout=30)
    assert status_and_detail(answer) == (408, "upload stalled: nothing received for 1 s")
    assert 1 <= seconds < 3
    assert good.status_code == 200
    assert server.problems() == []


def test_a_body_trickling_in_after_the_answer_is_cut_off(app):
    """A 413 is sent at once; a client that then keeps sending its body a byte at a time is
    held to the header timeout (uvicorn's keep-alive timer stops at every byte)."""
    with serving(app, Connections(header_timeout_s=1)) as server:
        sock = connect(server.port)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b"
                     b"\r\nContent-Length: 999999999\r\n\r\n")
        answer = read_response(sock)
        start = time.monotonic()
        with contextlib.suppress(OSError):
            while time.monotonic() - start < 6:
                sock.sendall(b"x")
                time.sleep(0.2)
        seconds = time.monotonic() - start
        sock.close()
    assert status_and_detail(answer)[0] == 413
    assert seconds < 3, f"still open after {seconds:.1f} s"


def test_a_request_head_growing_past_16_kb_is_a_400_at_once(app):
    with serving(app) as server:
        sock = connect(server.port)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 20_000)
        start = time.monotonic()
        answer = read_until_closed(sock, 10)
        seconds = time.monotonic() - start
        sock.close()
    assert answer.startswith(b"HTTP/1.1 400") and seconds < 1
    assert [record.getMessage() for record in server.records] == ["Invalid HTTP request received."]
    assert server.problems() == []


def test_connections_over_max_open_are_refused_until_slots_free_up(app):
    with serving(app, Connections(max_open=10, header_timeout_s=1.5)) as server:
        idle = [connect(server.port) for _ in range(10)]
        time.sleep(0.2)
        extra = connect(server.port)
        refused = read_until_closed(extra, 5)
        extra.close()
        for sock in idle:
            read_until_closed(sock, 5)  # closed by the header timeout
            sock.close()
        response = httpx.get(server.url + "/health", timeout=10)
    assert status_and_detail(refused) == (503, "the server has 10 connections open: try again later")
    assert response.status_code == 200


# 3. Interactive docs off by default; Host must be a loopback name on a loopback address.


def asgi_get(app, url: str, headers: dict | None = None) -> httpx.Response:
    """GET `url` from `app` in process; the scope's server address is the URL's host and port."""

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            return await client.get(url, headers=headers)

    return asyncio.run(get())


def test_interactive_docs_are_off_unless_asked_for(app, tiny_run):
    for path in ("/docs", "/redoc"):
        assert asgi_get(app, "http://testserver" + path).status_code == 404
    assert asgi_get(app, "http://testserver/openapi.json").status_code == 200  # the schema itself loads nothing

    with_docs = create_app(tiny_run, docs=True)
    docs = asgi_get(with_docs, "http://testserver/docs")
    assert docs.status_code == 200 and "cdn.jsdelivr.net" in docs.text
    assert asgi_get(with_docs, "http://testserver/redoc").status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST:8000", "127.0.0.1:1", "[::1]:8000",
                                  "127.0.0.2", "localhost."])
def test_loopback_names_are_served(app, host):
    with serving(app) as server:
        assert httpx.get(server.url + "/health", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "192.168.1.10", "[2001:db8::1]:80",
                                  "localhost.evil.example", "127.0.0.1.evil.example", ""])
def test_other_hosts_are_refused_on_a_loopback_address(app, host):
    with serving(app) as server:
        response = httpx.get(server.url + "/health", headers={"Host": host})
        predict = httpx.post(server.url + "/predict", headers={"Host": host}, files=upload(("a.png", png((8, 8)))))
    assert response.status_code == 400 and predict.status_code == 400
    assert response.json()["detail"] == (f"Host {host!r} is not a loopback name: this server, on a loopback address, "
                                         "answers only requests for localhost, 127.0.0.1, [::1]")


def test_the_host_rule_follows_the_address_the_request_came_in_on():
    from starlette.responses import PlainTextResponse

    guarded = LoopbackHostOnly(PlainTextResponse("ok"))
    headers = {"Host": "evil.example"}
    assert asgi_get(guarded, "http://192.0.2.10:8000/", headers).status_code == 200
    assert asgi_get(guarded, "http://[::ffff:127.0.0.1]:8000/", headers).status_code == 400
    assert asgi_get(guarded, "http://[::1]:8000/", headers).status_code == 400
    assert asgi_get(guarded, "http://[::1]:8000/", {"Host": "[::1]:8000"}).status_code == 200


# 4. Ports.


@pytest.mark.parametrize("port, message", [
    ("99999", "argument --port: 99999 is not a port: ports are 0 to 65535"),
    ("-1", "argument --port: -1 is not a port: ports are 0 to 65535"),
    ("http", "argument --port: 'http' is not a whole number"),
])
def test_a_port_out_of_range_is_a_one_line_usage_error(tiny_run, capsys, port, message):
    from catdog.cli import main

    try:
        code = main(["serve", str(tiny_run), "--port", port])
    except SystemExit as e:  # argparse's own error(), where the CLI does not catch it
        code = e.code

    assert code == 2
    err = capsys.readouterr().err
    assert f"error: {message}" in err.splitlines()[-1]
    assert "Traceback" not in err


def test_a_port_in_use_is_a_one_line_error_before_the_model_loads(tiny_run, capsys, monkeypatch):
    from catdog.cli import main

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded although the port is taken")

    monkeypatch.setattr(serve_module, "create_app", must_not_load)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", str(tiny_run), "--port", str(port)])

    assert code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"loading {tiny_run}",
        f"catdog: error: --port {port} is in use on 127.0.0.1: stop what listens there, or choose another port",
    ]


def test_serve_checks_the_port_in_python_too(tiny_run):
    from catdog.errors import ParameterError

    with pytest.raises(ParameterError, match="port must be 0 to 65535, got 70000"):
        serve_module.serve(tiny_run, port=70000)


def test_the_command_line_options_reach_the_server(tiny_run, monkeypatch):
    from catdog.cli import main

    calls = []
    monkeypatch.setattr(serve_module, "serve", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert main(["serve", str(tiny_run), "--port", "0", "--docs", "--max-request-pixels", "5000"]) == 0
    assert main(["serve", str(tiny_run)]) == 0

    (_, with_options), (_, defaults) = calls
    assert with_options["port"] == 0 and with_options["docs"] is True
    assert with_options["limits"].max_request_pixels == 5000
    assert defaults["docs"] is False and defaults["limits"] == Limits()
