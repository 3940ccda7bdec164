"""The cassette model: plain, immutable values with no I/O.

Headers are kept as a tuple of ``(name, value)`` pairs in the order and case they
had on the wire, duplicates included. Header bytes are mapped to ``str`` with
Latin-1, which is lossless: ``value.encode("latin-1")`` gives back the exact bytes.
Bodies are the bytes exactly as sent on the wire (a gzip response stays gzip).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Chunks",
    "Headers",
    "Interaction",
    "RecordMode",
    "Request",
    "Response",
    "WebSocketLog",
    "WebSocketMessage",
    "format_url",
    "header_value",
    "is_websocket_upgrade",
]

Headers = tuple[tuple[str, str], ...]

Chunks = tuple[tuple[float, int], ...]
"""How a streamed response body arrived: ``(seconds from the start of the request, bytes)``
per piece, in order; the lengths add up to the body's length."""

_DEFAULT_PORTS = {"http": 80, "https": 443}


def format_url(scheme: str, host: str, port: int, path: str, query: str = "") -> str:
    """``scheme://host[:port]path[?query]``, the port only when not the scheme's default."""
    shown = f"[{host}]" if ":" in host else host
    netloc = shown if _DEFAULT_PORTS.get(scheme) == port else f"{shown}:{port}"
    return f"{scheme}://{netloc}{path}{f'?{query}' if query else ''}"


def header_value(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """Return the first value of header ``name`` (case-insensitive), or None."""
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def is_websocket_upgrade(headers: Iterable[tuple[str, str]]) -> bool:
    """True for the headers of a WebSocket handshake request (``Upgrade: websocket``)."""
    return any(k.lower() == "upgrade" and v.strip().lower() == "websocket"
               for k, v in headers)


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request as the client sent it.

    ``path`` has no query; ``query`` is the raw query string without ``?``.
    """

    method: str
    scheme: str
    host: str
    port: int
    path: str
    query: str = ""
    headers: Headers = ()
    body: bytes = b""
    http_version: str = "HTTP/1.1"

    @property
    def url(self) -> str:
        """The absolute URL, with the port only when it is not the scheme's default."""
        return format_url(self.scheme, self.host, self.port, self.path, self.query)


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response as the upstream sent it (body still content-encoded)."""

    status: int
    reason: str = ""
    headers: Headers = ()
    body: bytes = b""
    http_version: str = "HTTP/1.1"
    trailers: Headers = ()
    """Headers sent after the body (HTTP/2 and chunked HTTP/1.1; gRPC's ``grpc-status``)."""


@dataclass(frozen=True, slots=True)
class WebSocketMessage:
    """One WebSocket message, whole (fragments joined), as it crossed the proxy."""

    from_client: bool
    content: bytes
    """The payload: UTF-8 bytes for a text message."""
    is_text: bool = True
    at: float = 0.0
    """Seconds from the end of the handshake (the 101 response) to this message."""


@dataclass(frozen=True, slots=True)
class WebSocketLog:
    """What went over a WebSocket after its handshake, and how it ended."""

    messages: tuple[WebSocketMessage, ...] = ()
    close_code: int | None = None
    """The close code of the close frame; None when the connection dropped without one."""
    close_reason: str = ""
    closed_by: str = ""
    """``"client"`` or ``"server"``: who sent the close frame (or dropped); ``""`` unknown."""


@dataclass(frozen=True, slots=True)
class Interaction:
    """One request and its response, with when and how fast it happened.

    ``recorded_at`` is seconds since the epoch; ``ttfb`` (time to the first byte of
    the response) and ``duration`` (until the last byte) are seconds from the start
    of the request.

    The rest is kept only for what is not one request and one whole response:
    ``chunks`` when the body was streamed (each piece's arrival, replayed with that
    pacing), ``cut`` when the upstream broke the response off mid-way (why; the body
    holds what arrived, and replay breaks it off at the same point), ``websocket`` for
    the messages of an upgraded connection (the response is the 101).
    """

    request: Request
    response: Response
    recorded_at: float = 0.0
    ttfb: float = 0.0
    duration: float = 0.0
    chunks: Chunks = ()
    cut: str = ""
    websocket: WebSocketLog | None = None


class RecordMode(StrEnum):
    """When to record and when to replay; the meanings of VCR.py's record modes."""

    ONCE = "once"
    """Record if the cassette does not exist yet, otherwise replay only."""
    NEW_EPISODES = "new_episodes"
    """Replay what matches; send what does not upstream and append it."""
    ALL = "all"
    """Send everything upstream and record it; replay nothing."""
    NONE = "none"
    """Replay only; never contact an upstream."""

    @classmethod
    def parse(cls, value: str) -> RecordMode:
        """Return the mode named ``value``; raise ValueError listing the valid names."""
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown record mode {value!r}; use one of: {valid}") from None
