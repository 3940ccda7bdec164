"""A hostile live API for the drift check: every answer carries fresh secrets everywhere.

``GET /v1/session`` (any query) answers 200 with JSON holding a fresh ``access_token``,
``accessToken``, ``clientSecret``, a JSON document inside a JSON string that holds
another ``access_token``, a provider-shaped key and a JWT under harmless names, and the
request's credentials echoed back (``Authorization``, the raw query, the body). Its
headers: ``Set-Cookie: session=…``, ``Location: …/callback?access_token=…``,
``X-Session-Token: …``. Every secret it hands out is kept in ``issued``, so a test can
search every output for each of them. ``drop`` names JSON keys left out of the answer
(a contract change). ``GET /v1/huge`` answers with a body of ``huge`` bytes.
``GET /v1/terminal`` answers with terminal escape sequences (``TERMINAL_ATTACK``) in a
header, a text body and a JSON body's string.

A stdlib threaded server on 127.0.0.1, port 0, over TLS with the session's trustme CA.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
from urllib.parse import urlsplit

from tests.integration.support import QuietHandler, Upstream

TERMINAL_ATTACK = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\x9b1A\r"
"""Sets the window title, clears the screen, turns red, moves the cursor (C1 CSI)."""


def _fresh(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


class _Handler(QuietHandler):
    server_version = "hostile/1.0"

    def _issue(self, value: str) -> str:
        with self.server.lock:
            self.server.issued.append(value)  # type: ignore[attr-defined]
        return value

    def _session(self, url_query: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        host = self.headers.get("Host", "localhost")
        nested_token = self._issue(_fresh("NESTEDat"))
        header_part = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
        claims = base64.urlsafe_b64encode(json.dumps(
            {"sub": _fresh("user"), "n": secrets.token_hex(6)}).encode()).rstrip(b"=")
        jwt = self._issue(f"{header_part.decode()}.{claims.decode()}."
                          f"{secrets.token_urlsafe(24)}")
        doc = {
            "object": "session",
            "access_token": self._issue(_fresh("JSONATsnake")),
            "accessToken": self._issue(_fresh("JSONATcamel")),
            "clientSecret": self._issue(_fresh("CLIENTsecret")),
            "payload": json.dumps({"access_token": nested_token, "scope": "read"}),
            "provider": {"publishable": self._issue(
                "sk_test_" + secrets.token_hex(14))},
            "profile": {"badge": jwt},
            "echo": {"authorization": self.headers.get("Authorization"),
                     "query": url_query, "body": body.decode("utf-8", "replace")},
        }
        for key in self.server.drop:  # type: ignore[attr-defined]
            doc.pop(key, None)
        reply = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", f"session={self._issue(_fresh('COOKIEsess'))}; "
                                       "Path=/; HttpOnly; Secure")
        self.send_header("Location", f"https://{host}/callback?state=ok&access_token="
                                     f"{self._issue(_fresh('LOCATIONat'))}")
        self.send_header("X-Session-Token", self._issue(_fresh("HEADERsess")))
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.server.count_request(self.command, url.path)
        if url.path == "/v1/session":
            self._session(url.query)
            return
        if url.path == "/v1/terminal":
            reply = f"before {TERMINAL_ATTACK} after\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("X-Note", TERMINAL_ATTACK.replace("\x9b", "")
                             .replace("\r", ""))  # latin-1, one line
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            return
        if url.path == "/v1/huge":
            size = self.server.huge  # type: ignore[attr-defined]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(b"x" * size)
            return
        reply = b'{"error": "no such route"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


class HostileApi(Upstream):
    """The hostile API; ``issued`` lists every secret it has handed out."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(tls, _Handler)
        self._server.issued = []  # type: ignore[attr-defined]
        self._server.drop = set()  # type: ignore[attr-defined]
        self._server.huge = 16  # type: ignore[attr-defined]
        self._lock: threading.Lock = self._server.lock

    @property
    def issued(self) -> list[str]:
        with self._lock:
            return list(self._server.issued)  # type: ignore[attr-defined]

    @property
    def drop(self) -> set[str]:
        return self._server.drop  # type: ignore[attr-defined]

    @drop.setter
    def drop(self, keys: set[str]) -> None:
        self._server.drop = set(keys)  # type: ignore[attr-defined]

    @property
    def huge(self) -> int:
        return int(self._server.huge)  # type: ignore[attr-defined]

    @huge.setter
    def huge(self, size: int) -> None:
        self._server.huge = size  # type: ignore[attr-defined]
