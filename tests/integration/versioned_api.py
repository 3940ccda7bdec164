"""A small payments-like API whose version can be switched while it runs (v1 → v2).

The drift tests record against v1, switch the same server to v2, and run the drift
check. Every answer needs ``Authorization: Bearer TOKEN`` (else 401), like a sandbox.

v2 changes, per endpoint:

- ``GET /v1/customers/cus_1``: ``email`` removed (breaking field_missing),
  ``balance`` from number to string (breaking type_changed), ``tier`` added
  (additive field_added); ``id``, ``request_id``, ``created`` are fresh on every call
  in both versions (noise).
- ``GET /v1/charges``: unchanged shape, fresh ids on every call (noise only: passes).
- ``GET /v1/legacy``: 200 in v1, 404 in v2 (breaking status_class_changed).
- ``POST /v1/charges``: unchanged; counted, so a test sees whether it was re-sent.
- ``HEAD /v1/ping``: unchanged, no body.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from tests.integration.support import QuietHandler, Upstream

TOKEN = "sk_test_DriftSandboxKey0123456789abcd"
"""The bearer token the API wants (what a test puts in $SANDBOX_KEY)."""


class _Handler(QuietHandler):
    server_version = "sandbox/1.0"

    def _json(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode() if doc is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Request-Id", f"req_{uuid.uuid4().hex[:16]}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.count_request(self.command, path)
        v2 = getattr(self.server, "version", "v1") == "v2"
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._json(401, {"error": {"type": "invalid_request_error",
                                       "message": "Invalid API key"}})
            return
        fresh = {"id": f"cus_{uuid.uuid4().hex[:14]}", "request_id": str(uuid.uuid4()),
                 "created": int(time.time()) + int(uuid.uuid4().int % 1000)}
        if self.command == "GET" and path == "/v1/customers/cus_1":
            doc: dict[str, Any] = {**fresh, "object": "customer", "name": "Ada Lovelace"}
            if v2:
                doc.update(balance="12.00", tier="gold")
            else:
                doc.update(balance=1200, email="ada@example.com")
            self._json(200, doc)
        elif self.command == "GET" and path == "/v1/charges":
            self._json(200, {"object": "list", "has_more": False, "data": [
                {"id": f"ch_{uuid.uuid4().hex[:14]}", "amount": 500 + i, "currency": "usd"}
                for i in range(3)]})
        elif self.command == "GET" and path == "/v1/legacy":
            if v2:
                self._json(404, {"error": {"type": "invalid_request_error",
                                           "message": "Unrecognized request URL"}})
            else:
                self._json(200, {"object": "legacy", "ok": True})
        elif self.command == "POST" and path == "/v1/charges":
            self._json(200, {"id": f"ch_{uuid.uuid4().hex[:14]}", "object": "charge",
                             "amount": 1200, "paid": True})
        elif self.command == "HEAD" and path == "/v1/ping":
            self._json(200, {"ok": True})
        else:
            self._json(404, {"error": {"message": f"no route {self.command} {path}"}})

    do_GET = do_POST = do_HEAD = _handle


class VersionedApi(Upstream):
    """The API on 127.0.0.1, port 0; ``version`` switches it between v1 and v2."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(tls, _Handler)
        self.version = "v1"

    @property
    def version(self) -> str:
        return str(getattr(self._server, "version", "v1"))

    @version.setter
    def version(self, value: str) -> None:
        self._server.version = value  # type: ignore[attr-defined]
