"""What the server takes from a connection before the app sees a request, and the Host rule.

uvicorn (0.54) limits request heads (`h11_max_incomplete_event_size`), idle keep-alive
connections (`timeout_keep_alive`) and requests in flight (`limit_concurrency`, 503), but has
no deadline for a client that never finishes its headers, and accepts any number of
connections. `GuardedH11Protocol` adds both; `uvicorn_config` puts them together. The
`LoopbackHostOnly` middleware refuses foreign `Host` names on loopback connections.
"""

from __future__ import annotations

import asyncio
import errno
import http
import ipaddress
import json
import socket
from dataclasses import dataclass

import h11
import uvicorn
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from catdog.errors import CatdogError, ParameterError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class Connections:
    """What the server holds open for its clients (see `uvicorn_config`).

    `max_open` connections; one more is closed at once (uvicorn answers requests beyond it with
    503). `header_timeout_s`: seconds a connection has to send complete request headers, from
    connecting or from the end of the previous response. `keep_alive_s`: seconds an idle
    keep-alive connection stays open (uvicorn's default). `max_header_bytes`: the largest
    request head."""

    max_open: int = 512
    header_timeout_s: float = 10
    keep_alive_s: int = 5
    max_header_bytes: int = 16 * 1024


def _is_loopback_address(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _is_loopback_name(host_header: str) -> bool:
    """Whether a `Host` header (with or without a port) names this machine's loopback."""
    if host_header.startswith("["):
        name = host_header[1:].partition("]")[0]
    else:
        name = host_header.partition(":")[0]
    name = name.rstrip(".").lower()
    return name == "localhost" or _is_loopback_address(name)


class LoopbackHostOnly:
    """ASGI middleware: a request that arrives on a loopback address must name a loopback
    host (`localhost`, `127.0.0.1`, `[::1]`, any port) in its `Host` header, or get a 400.

    A web page from elsewhere can make a browser send requests to 127.0.0.1 under its own
    name (DNS rebinding); those carry that name in `Host`. Connections to other addresses
    (a server listening on 0.0.0.0, reached from another machine) are not checked.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] == "http" and server and _is_loopback_address(str(server[0])):
            host = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"host"), "")
            if not _is_loopback_name(host):
                detail = (f"Host {host!r} is not a loopback name: this server, on a loopback address, answers only "
                          f"requests for {', '.join(LOOPBACK_NAMES)}")
                await JSONResponse({"detail": detail}, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _raw_response(status: int, detail: str) -> bytes:
    """A whole HTTP/1.1 response with a JSON `detail`, closing the connection."""
    body = json.dumps({"detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with what uvicorn (0.54) lacks: a cap on open connections
    and a deadline for clients.

    One connection more than `max_open` is answered 503 and closed at once. A connection has
    `header_timeout_s` to send complete request headers, counted from connecting or from the
    end of the previous response (uvicorn's keep-alive timer stops at the first byte, and
    nothing else limits a client that never finishes its headers); it gets a 408 and is
    closed. The same deadline covers the rest of a request body after the response has been
    sent (a 413, say). While the app is reading a body, its own timeout applies.
    """

    max_open = Connections.max_open
    header_timeout_s: float = Connections.header_timeout_s

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if len(self.connections) > self.max_open:
            transport.write(_raw_response(503, f"the server has {self.max_open} connections open: try again later"))
            transport.close()
            return
        self._watch_client()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_client()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_client()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watching()
        super().connection_lost(exc)

    def _waiting_for_client(self) -> bool:
        their, ours = self.conn.their_state, self.conn.our_state
        return their is h11.IDLE or (their is h11.SEND_BODY and ours in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED))

    def _watch_client(self) -> None:
        if self.transport.is_closing() or not self._waiting_for_client():
            self._stop_watching()
        elif self._deadline is None:
            self._deadline = self.loop.call_later(self.header_timeout_s, self._client_too_slow)

    def _stop_watching(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _client_too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or not self._waiting_for_client():
            return
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            detail = f"request headers not complete after {self.header_timeout_s:g} s"
            self.transport.write(_raw_response(408, detail))
        self.transport.close()


def uvicorn_config(app: ASGIApp, connections: Connections = Connections(), **kwargs) -> uvicorn.Config:
    """uvicorn's configuration for `app` with `connections`' limits (`kwargs` go to uvicorn.Config).

    uvicorn's own settings: `timeout_keep_alive` (idle keep-alive connections), `limit_concurrency`
    (503 to requests once that many connections or requests are open: one more than `max_open`,
    so it only counts when requests outlive their connections) and `h11_max_incomplete_event_size`
    (a longer request head is a 400). The rest is `GuardedH11Protocol`'s.
    """
    protocol = type("CatdogH11Protocol", (GuardedH11Protocol,),
                    {"max_open": connections.max_open, "header_timeout_s": connections.header_timeout_s})
    return uvicorn.Config(
        app,
        http=protocol,
        limit_concurrency=connections.max_open + 1,
        timeout_keep_alive=connections.keep_alive_s,
        h11_max_incomplete_event_size=connections.max_header_bytes,
        **kwargs,
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on `host`:`port` (connections queue until uvicorn accepts them); a
    busy port or an address this machine does not have raises `CatdogError` (a
    `ParameterError` for `port`)."""
    if not 0 <= port <= 65535:
        raise ParameterError("port", f"{{name}} must be 0 to 65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as e:
        raise CatdogError(f"cannot listen on {host!r}: {e.strerror}") from e
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)  # uvicorn's backlog
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ParameterError("port", f"{{name}} {port} is in use on {host}: stop what listens there, "
                                         "or choose another port") from e
        raise CatdogError(f"cannot listen on {host} port {port}: {e.strerror or e}") from e
    return sock
