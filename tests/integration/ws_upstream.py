"""A WebSocket upstream (the ``websockets`` package) and the clients the WebSocket tests
drive: the ``websockets`` client through the proxy, and a raw-socket one (wsproto)
for a plain-http upgrade and for garbage frames."""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import wsproto
import wsproto.events as ev
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve

TICK_GAP = 0.3
"""Seconds between the two server messages answering a subscription."""


def _handler(conn: ServerConnection) -> None:
    """The upstream's side: it speaks first, answers each message, closes on "bye"."""
    conn.send("welcome")
    for message in conn:
        if isinstance(message, bytes):
            conn.send(message[::-1])
        elif message == "bye":
            conn.close(4000, "see you")
            return
        else:
            try:
                doc = json.loads(message)
            except ValueError:
                conn.send(f"echo:{message}")
                continue
            conn.send(json.dumps({"ack": doc.get("n")}))
            time.sleep(TICK_GAP)
            conn.send(f"tick {doc.get('n')}")


def _subprotocol(_conn: ServerConnection, offered: Any) -> Any:
    """``feed.v1`` when the client offers it, else none."""
    return "feed.v1" if "feed.v1" in offered else None


class WsUpstream:
    """A WebSocket server on 127.0.0.1 (TLS with ``context``), counting handshakes."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self.handshakes = 0
        self._lock = threading.Lock()

        def count(_conn: ServerConnection, _request: Any) -> None:
            with self._lock:
                self.handshakes += 1

        self._server = serve(_handler, "127.0.0.1", 0, ssl=context, process_request=count,
                             select_subprotocol=_subprotocol)
        self.port = int(self._server.socket.getsockname()[1])
        self.scheme = "wss" if context is not None else "ws"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.running = True

    @property
    def base_url(self) -> str:
        """The URL a reverse proxy is given (http/https)."""
        return f"{'https' if self.scheme == 'wss' else 'http'}://127.0.0.1:{self.port}"

    def url(self, path: str = "/ws") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.running:
            self.running = False
            self._server.shutdown()
            self._thread.join(10)


@dataclass
class Seen:
    """What a client observed: messages received in order, and how the socket closed."""

    received: list[str | bytes] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    """When each message arrived (``time.monotonic()``)."""
    close_code: int | None = None
    close_reason: str = ""
    subprotocol: str | None = None
    extensions: str | None = None


def client_context(ca_bundle: os.PathLike[str] | str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_bundle))


def converse(url: str, *, proxy: str | None, ca_bundle: os.PathLike[str] | str | None,
             sends: list[str | bytes] | None = None, replies: list[int] | None = None,
             subprotocols: list[str] | None = None) -> Seen:
    """Connect, read the greeting, then for each message send it and read as many replies
    as ``replies`` says, then read until the server closes."""
    sends = sends if sends is not None else ['{"op": "sub", "n": 1}', b"\x01\x02\x03", "bye"]
    replies = replies if replies is not None else [2, 1, 0]
    seen = Seen()
    ssl_ctx = client_context(ca_bundle) if url.startswith("wss:") and ca_bundle else None
    with connect(url, proxy=proxy, ssl=ssl_ctx, open_timeout=5, close_timeout=3,
                 subprotocols=subprotocols, ping_interval=None) as ws:  # type: ignore[arg-type]
        seen.subprotocol = ws.subprotocol
        seen.extensions = ws.response.headers.get("Sec-WebSocket-Extensions") \
            if ws.response else None
        def receive() -> None:
            seen.received.append(ws.recv(timeout=5))
            seen.times.append(time.monotonic())

        try:
            receive()
            for message, count in zip(sends, replies, strict=True):
                ws.send(message)
                for _ in range(count):
                    receive()
            for _ in range(10):
                receive()
        except ConnectionClosed as e:
            if e.rcvd is not None:
                seen.close_code, seen.close_reason = e.rcvd.code, e.rcvd.reason
    return seen


class RawClient:
    """A WebSocket client on a bare socket (wsproto), for a plain-http upgrade through a
    forward proxy (absolute-form target) and for sending garbage after the handshake."""

    def __init__(self, address: tuple[str, int], target: str, host: str) -> None:
        self.sock = socket.create_connection(address, timeout=5)
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(ev.Request(host=host, target=target)))
        self.accepted = False
        self.closed: ev.CloseConnection | None = None
        self.received: list[str | bytes] = []
        deadline = time.monotonic() + 5
        while not self.accepted and self.closed is None and time.monotonic() < deadline:
            self._pump()

    def _pump(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, OSError):
            data = b""
        self.ws.receive_data(data or None)
        parts: list[Any] = []
        for event in self.ws.events():
            if isinstance(event, ev.AcceptConnection):
                self.accepted = True
            elif isinstance(event, ev.RejectConnection):
                self.closed = ev.CloseConnection(event.status_code)
            elif isinstance(event, ev.Message):
                parts.append(event.data)
                if event.message_finished:
                    self.received.append(type(event.data)().join(parts))
                    parts = []
            elif isinstance(event, ev.CloseConnection):
                self.closed = event
                if self.ws.state is wsproto.connection.ConnectionState.REMOTE_CLOSING:
                    self.sock.sendall(self.ws.send(event.response()))
        return bool(data)

    def send(self, message: str | bytes) -> None:
        event = ev.TextMessage(message) if isinstance(message, str) else ev.BytesMessage(message)
        self.sock.sendall(self.ws.send(event))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, count: int) -> list[str | bytes]:
        """Read until ``count`` messages in all arrived, or the connection closed."""
        deadline = time.monotonic() + 5
        while len(self.received) < count and self.closed is None \
                and time.monotonic() < deadline:
            if not self._pump():
                break
        return self.received

    def wait_closed(self) -> ev.CloseConnection | None:
        deadline = time.monotonic() + 5
        while self.closed is None and time.monotonic() < deadline:
            if not self._pump():
                break
        return self.closed

    def close(self) -> None:
        self.sock.close()
