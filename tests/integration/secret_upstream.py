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
import json
import ssl
from urllib.parse import urlsplit

from tests.integration.support import QuietHandler, Upstream

ISSUED_TOKEN = "issued-access-token-Vu83Jd0Lq5"
"""An access token the upstream hands out in every response body."""
ISSUED_KEY = "sk_test_IssuedByUpstream0a9B8c7D6e"
"""A provider-shaped key in every response body (under a harmless name)."""
ISSUED_SESSION = "issued-session-Rb61Tk2Hw4"
"""The value of the session cookie the upstream sets."""
ISSUED = (ISSUED_TOKEN, ISSUED_KEY, ISSUED_SESSION)


class _Handler(QuietHandler):
    server_version = "leaky/1.0"

    def _echo(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            with contextlib.suppress(OSError, EOFError):  # claims gzip but is not: as is
                body = gzip.decompress(body)
        self.server.count_request(self.command, url.path)
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


class SecretUpstream(Upstream):
    """The leaky upstream: ``Upstream`` with the echoing handler."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(tls, _Handler)

    @property
    def requests(self) -> int:
        """Requests answered so far."""
        return sum(self.hits(path, method) for method, path in self._paths())

    def _paths(self) -> list[tuple[str, str]]:
        with self._server.lock:
            return list(self._server.requests)
