"""An upstream that leaks: it echoes the request's secrets back and issues its own.

Like many sandboxes (and httpbin), every answer is a gzip-compressed JSON document
holding the request's Authorization, X-Api-Key and Cookie headers, its raw query and
its (decoded) body, plus an access token and a provider key of its own; it also sets a
session cookie. A stdlib threaded server on 127.0.0.1, port 0, over TLS with the
session's trustme CA (or plain HTTP), that counts the TCP connections it accepts.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import json
import socket
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

ISSUED_TOKEN = "issued-access-token-Vu83Jd0Lq5"
"""An access token the upstream hands out in every response body."""
ISSUED_KEY = "sk_test_IssuedByUpstream0a9B8c7D6e"
"""A provider-shaped key in every response body (under a harmless name)."""
ISSUED_SESSION = "issued-session-Rb61Tk2Hw4"
"""The value of the session cookie the upstream sets."""
ISSUED = (ISSUED_TOKEN, ISSUED_KEY, ISSUED_SESSION)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "leaky/1.0"
    sys_version = ""
    timeout = 15
    server: _Server

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _echo(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            with contextlib.suppress(OSError, EOFError):  # claims gzip but is not: as is
                body = gzip.decompress(body)
        with self.server.lock:
            self.server.requests += 1
        reply = gzip.compress(json.dumps({
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "authorization": self.headers.get("Authorization"),
            "x_api_key": self.headers.get("X-Api-Key"),
            "cookie": self.headers.get("Cookie"),
            "content_type": self.headers.get("Content-Type"),
            "body": body.decode("utf-8", "replace"),
            "access_token": ISSUED_TOKEN,
            "account": {"publishable": ISSUED_KEY},
        }).encode(), mtime=0)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Set-Cookie", f"session={ISSUED_SESSION}; Path=/; HttpOnly; Secure")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = do_PUT = _echo


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(self, tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = 0
        self.open_sockets: set[socket.socket] = set()
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        with self.lock:
            self.connections += 1
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self.lock:
            self.open_sockets.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client going away mid-handshake is not the test's business


class SecretUpstream:
    """The leaky upstream; ``stop()`` closes it (idempotent)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._server = _Server(tls)
        self.scheme = "https" if tls else "http"
        host, port = self._server.server_address[:2]
        self.host, self.port = str(host), int(port)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.running = True

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        with self._server.lock:
            return self._server.connections

    @property
    def requests(self) -> int:
        with self._server.lock:
            return self._server.requests

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        self._server.shutdown()
        with self._server.lock:
            socks = list(self._server.open_sockets)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join(10)
