"""Other tools' recordings as replayproxy interactions: VCR.py YAML (``vcr``) and HAR (``har``).

``read_vcr(path)`` and ``read_har(path)`` give one ``Entry`` per recorded exchange: its
``Interaction`` (bodies as bytes, headers as ``(name, value)`` tuples, as replayproxy
records them), ready to import, plus what the model has no room for and a secret scan
must still see: the URL as the file wrote it (user info, fragment) and HAR's cookie
lists. A file that is not of the format raises ``CassetteError`` naming it; its
``syntax`` field is True when the file does not even parse (YAML, JSON), False when it
parses but is not of the format.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from replayproxy.codec import content_encodings, decode_body
from replayproxy.model import Headers, Interaction, Request

__all__ = ["Entry", "as_stored", "plain", "request_from_url", "status_code", "utf8"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Entry:
    """One exchange read from another tool's file."""

    number: int
    """Its position in the file, from 1 (malformed entries keep their number)."""
    interaction: Interaction
    url: str
    """The request URL exactly as the file has it."""
    cookies: tuple[tuple[str, str, str], ...] = ()
    """``(side, name, value)`` of cookie lists kept apart from the headers (HAR)."""
    problem: str = ""
    """Why the entry cannot be imported as it is (``entry #3 has no response``); the
    scanner still reads what it has."""


def request_from_url(method: str, url: str, headers: Headers, body: bytes,
                     http_version: str = "HTTP/1.1") -> Request:
    """A Request for ``url`` as another tool wrote it; a URL that does not parse gives
    empty parts (the entry is kept, so its headers and body are still seen)."""
    method, url, http_version = _storable(method), _storable(url), _storable(http_version)
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        return Request(method, "", "", 0, "", "", headers, body, http_version)
    return Request(method, parts.scheme, parts.hostname or "", port, parts.path or "/",
                   parts.query, headers, body, http_version)


PLAIN_LIMIT = 1 << 20
"""Characters of text made from one list or map of a file (see ``plain``)."""


def plain(value: Any) -> str:
    """A value of another tool's file as text: a string as it is (lone surrogates, which
    no cassette can store, replaced), a number as written, None as ``""``, bytes as
    Latin-1; a list or map, where the format wants text, as JSON-like text cut at
    ``PLAIN_LIMIT`` characters, so YAML aliases nested into a "billion laughs" cannot
    blow up (its parts are walked lazily, never all expanded)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, bool | int | float):
        return str(value) if not isinstance(value, int) or abs(value) < 10**100 \
            else f"<a {len(str(abs(value)))}-digit number>" if abs(value) < 10**4000 \
            else "<a huge number>"
    out: list[str] = []
    size = 0
    for part in _parts(value, 0):
        out.append(part)
        size += len(part)
        if size > PLAIN_LIMIT:
            out.append("…")
            break
    return _storable("".join(out))


def _parts(value: Any, depth: int) -> Iterator[str]:
    if depth > 50:
        yield "…"
    elif isinstance(value, list | tuple):
        yield "["
        for i, item in enumerate(value):
            yield ", " if i else ""
            yield from _parts(item, depth + 1)
        yield "]"
    elif isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ", " if i else ""
            yield from _parts(key, depth + 1)
            yield ": "
            yield from _parts(item, depth + 1)
        yield "}"
    else:
        yield plain(value)


def _storable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def utf8(value: Any) -> bytes:
    """A body of another tool's file as bytes: text UTF-8 encoded (surrogate escapes
    back to their bytes), bytes as they are, anything else as ``plain`` text."""
    if isinstance(value, bytes):
        return value
    text = value if isinstance(value, str) else plain(value)
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def status_code(raw: Any) -> int:
    """An HTTP status from another tool's file; 0 when it is not one (000 to 999)."""
    try:
        code = int(raw or 0)
    except (TypeError, ValueError, OverflowError):
        return 0
    return code if 0 <= code <= 999 else 0


def as_stored(headers: Headers, body: bytes) -> Headers:
    """Headers that describe ``body`` as another tool stored it: a ``Content-Encoding``
    the body is not in dropped (VCR.py keeps the header of a body urllib3 has already
    decoded; a HAR holds decoded bodies), and a ``Content-Length`` set to the body's
    length, so a client served the body reads it whole."""
    if content_encodings(headers) and decode_body(body, headers) is None:
        headers = tuple((k, v) for k, v in headers if k.lower() != "content-encoding")
    return tuple((k, str(len(body)) if k.lower() == "content-length" else v)
                 for k, v in headers)
