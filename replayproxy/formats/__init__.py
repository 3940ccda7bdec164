"""Other tools' recordings as replayproxy interactions: VCR.py YAML (``vcr``) and HAR (``har``).

``read_vcr(path)`` and ``read_har(path)`` give one ``Entry`` per recorded exchange: its
``Interaction`` (bodies as bytes, headers as ``(name, value)`` tuples, as replayproxy
records them), ready to import, plus what the model has no room for and a secret scan
must still see: the URL as the file wrote it (user info, fragment) and HAR's cookie
lists. A file that is not of the format raises ``CassetteError`` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from replayproxy.model import Headers, Interaction, Request

__all__ = ["Entry", "request_from_url"]

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


def request_from_url(method: str, url: str, headers: Headers, body: bytes,
                     http_version: str = "HTTP/1.1") -> Request:
    """A Request for ``url`` as another tool wrote it; a URL that does not parse gives
    empty parts (the entry is kept, so its headers and body are still seen)."""
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        return Request(method, "", "", 0, "", "", headers, body, http_version)
    return Request(method, parts.scheme, parts.hostname or "", port, parts.path or "/",
                   parts.query, headers, body, http_version)
