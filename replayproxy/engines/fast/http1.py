"""HTTP/1.1 on the wire for the fast engine: request heads parsed, bodies framed,
responses assembled. Functions over bytes; no sockets.

The bytes sent are the ones the mitm engine sends for the same response (mitmproxy's
HTTP/1 server: the recorded head as it was, a chunked body sent as one chunk, HTTP/2
recordings sent as HTTP/1.1 with the standard reason), so both engines answer alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http import HTTPStatus

from replayproxy.engines.reasons import reason_for
from replayproxy.model import Headers, Request, Response

__all__ = [
    "MAX_BODY",
    "MAX_HEAD",
    "Head",
    "HttpError",
    "assemble",
    "connection_close",
    "parse_head",
    "read_chunked",
    "own_reason",
    "reason_for",
    "set_header",
]

MAX_HEAD = 64 * 1024
"""Largest request head (request line and headers) accepted; larger gets 431."""
MAX_BODY = 256 * 1024 * 1024
"""Largest request body accepted; larger gets 413."""

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_VERSION = re.compile(rb"HTTP/\d\.\d")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")

def own_reason(status: int) -> str:
    """The reason phrase of the engine's own refusals (400, 413, 431, 505)."""
    return "Payload Too Large" if status == 413 else HTTPStatus(status).phrase


class HttpError(Exception):
    """A request the engine refuses: answered ``status`` with ``message``, then closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True, eq=False)
class Head:
    """A parsed request head and how its body is framed."""

    method: str
    target: str
    version: str
    headers: Headers
    length: int
    """The body's Content-Length; -1: chunked."""
    close: bool
    """The client asked to close the connection after this request."""
    expect_continue: bool
    requests: dict[bytes, Request] = field(default_factory=dict)
    """The fast path: the requests built from this head, by body (see ``server``)."""


def _tokens(headers: Headers, name: str) -> list[str]:
    return [t.strip().lower() for k, v in headers if k.lower() == name for t in v.split(",")]


def connection_close(version: str, headers: Headers) -> bool:
    """Whether a message asks to close the connection after it (RFC 9112 9.3), as
    mitmproxy reads it."""
    tokens = _tokens(headers, "connection")
    if "close" in tokens:
        return True
    if "keep-alive" in tokens:
        return False
    return version not in ("HTTP/1.1", "HTTP/2.0")


def parse_head(raw: bytes) -> Head:
    """Parse a request head (without the blank line that ends it).

    Raises:
        HttpError: 400 for a malformed request line or header, 505 for a version other
            than HTTP/1.x, 413 for a Content-Length over ``MAX_BODY``.
    """
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _TARGET.fullmatch(parts[1]) \
            or not _VERSION.fullmatch(parts[2]):
        raise HttpError(400, f"malformed request line {lines[0][:100]!r}")
    if not parts[2].startswith(b"HTTP/1."):
        raise HttpError(505, f"HTTP version {parts[2].decode()} is not supported: use HTTP/1.1")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            raise HttpError(400, f"malformed header line {line[:100]!r}")
        headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
    hs = tuple(headers)
    version = parts[2].decode()
    length = 0
    codings = _tokens(hs, "transfer-encoding")
    lengths = {v.strip() for k, v in hs if k.lower() == "content-length"}
    if codings:
        if codings[-1] != "chunked" or lengths:
            raise HttpError(400, "unsupported Transfer-Encoding (or given with "
                            "Content-Length): send a chunked body or a Content-Length")
        length = -1
    elif lengths:
        given = lengths.pop()
        if lengths or not given.isdigit() or not given.isascii():
            raise HttpError(400, f"invalid Content-Length {given!r}")
        length = int(given)
        if length > MAX_BODY:
            raise HttpError(413, f"request body of {length} bytes is over the limit of "
                            f"{MAX_BODY} bytes")
    expect = any(k.lower() == "expect" and v.lower() == "100-continue" for k, v in hs)
    return Head(parts[0].decode("latin-1"), parts[1].decode("latin-1"), version, hs, length,
                connection_close(version, hs), expect)


def read_chunked(buf: bytes | bytearray, pos: int) -> tuple[bytes, int] | None:
    """A chunked body starting at ``pos`` of ``buf``: (the body, where it ends), or None
    if it has not all arrived yet. Trailers are read and dropped.

    Raises:
        HttpError: 400 for bad framing, 413 for a body over ``MAX_BODY``.
    """
    parts: list[bytes] = []
    total = 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if len(buf) - pos > 4096:
                raise HttpError(400, "malformed chunk size line")
            return None
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size_text):
            raise HttpError(400, f"malformed chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            if buf[eol + 2:eol + 4] == b"\r\n":
                return b"".join(parts), eol + 4
            end = buf.find(b"\r\n\r\n", eol)
            if end < 0:
                if len(buf) - eol > MAX_HEAD:
                    raise HttpError(431, "request trailers too large")
                return None
            return b"".join(parts), end + 4
        total += size
        if total > MAX_BODY:
            raise HttpError(413, f"request body over the limit of {MAX_BODY} bytes")
        start = eol + 2
        stop = start + size
        if len(buf) < stop + 2:
            return None
        if buf[stop:stop + 2] != b"\r\n":
            raise HttpError(400, "malformed chunk: no CRLF after its data")
        parts.append(bytes(buf[start:stop]))
        pos = stop + 2


def set_header(headers: list[tuple[str, str]], name: str, value: str | None) -> None:
    """Set (or, with None, remove) header ``name`` as mitmproxy's ``headers[name] =
    value`` does: the first occurrence keeps its place and case, others go; a new one
    is appended as ``name``."""
    wanted = name.lower()
    out: list[tuple[str, str]] = []
    done = value is None
    for k, v in headers:
        if k.lower() == wanted:
            if not done:
                assert value is not None
                out.append((k, value))
                done = True
        else:
            out.append((k, v))
    if not done:
        assert value is not None
        out.append((name, value))
    headers[:] = out


def _eof_framed(method: str, response: Response) -> bool:
    """Whether the response body would be read until the connection closes."""
    if method == "HEAD" or 100 <= response.status <= 199 or response.status in (204, 304):
        return False
    codings = _tokens(response.headers, "transfer-encoding")
    if codings:
        return codings[-1] != "chunked"
    return not any(k.lower() == "content-length" for k, _ in response.headers)


def assemble(response: Response, method: str = "GET") -> tuple[bytes, bool]:
    """The bytes of ``response`` as mitmproxy's HTTP/1 server sends them to a client
    that asked with ``method``, and whether the connection closes after it."""
    version, reason = response.http_version, response.reason
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        version, reason = "HTTP/1.1", reason_for(response.status)
    head = [f"{version} {response.status} {reason}\r\n".encode("latin-1")]
    head += [f"{k}: {v}\r\n".encode("latin-1") for k, v in response.headers]
    head.append(b"\r\n")
    body = response.body
    if "chunked" in ",".join(_tokens(response.headers, "transfer-encoding")):
        body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + \
            (b"0\r\n\r\n" if method != "HEAD" else b"")
    close = _eof_framed(method, response) or connection_close(version, response.headers)
    return b"".join(head) + body, close
