"""Readable views of cassettes: one line per interaction, bodies decoded and pretty.

Used by ``replayproxy cassette ls`` and ``replayproxy cassette show``. gRPC bodies are
shown message by message (see ``replayproxy.grpc_wire``), trailers after the body.
``render_text`` is the text git shows for a cassette (``replayproxy cassette text``, a
textconv driver).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from replayproxy.codec import decode_body
from replayproxy.grpc_wire import (
    Descriptors,
    is_grpc,
    message_coding,
    render_frames,
    status_of,
)
from replayproxy.model import Headers, Interaction, WebSocketLog, WebSocketMessage, header_value
from replayproxy.safetext import escape_controls
from replayproxy.streams import describe_chunks

__all__ = ["close_text", "decode_body", "format_size", "render_body", "render_interaction",
           "render_text", "render_websocket", "shorten_message", "summary_line"]


def format_size(n: int) -> str:
    """``512 B``, ``1.5 KB``, ``5.0 MB`` (powers of 1024)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def render_body(body: bytes, headers: Headers, max_chars: int = 4000,
                digest: bool = False) -> str:
    """Return the body for people: JSON pretty-printed, text as text, else a summary
    (with the start of its SHA-256 when ``digest``, so a changed binary body shows)."""
    if not body:
        return ""
    content_type = (header_value(headers, "content-type") or "").lower()
    decoded = decode_body(body, headers)
    if decoded is None:
        encoding = header_value(headers, "content-encoding")
        return f"<{format_size(len(body))}, undecodable {encoding}{_digest(body, digest)}>"
    text: str | None = None
    if "json" in content_type or decoded[:1] in (b"{", b"["):
        try:
            text = json.dumps(json.loads(decoded), indent=2, ensure_ascii=False, sort_keys=False)
        except ValueError:
            text = None
    if text is None:
        try:
            candidate = decoded.decode("utf-8")
        except UnicodeDecodeError:
            candidate = None
        if candidate is not None and (
            content_type.startswith("text/")
            or all(c.isprintable() or c in "\r\n\t" for c in candidate[:2000])
        ):
            text = candidate
    if text is None:
        return f"<binary, {format_size(len(decoded))}, {content_type or 'no content-type'}" \
               f"{_digest(decoded, digest)}>"
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n… ({len(text) - max_chars} more characters)"
    return text


def _digest(data: bytes, wanted: bool) -> str:
    return f", sha256 {hashlib.sha256(data).hexdigest()[:16]}" if wanted else ""


def shorten_message(message: WebSocketMessage, limit: int = 60) -> str:
    """A WebSocket message on one line: text as a JSON string (control characters
    escaped), binary as its size and its first bytes in hex; cut to ``limit``."""
    if message.is_text:
        try:
            text = json.dumps(message.content.decode("utf-8"), ensure_ascii=False)
        except UnicodeDecodeError:
            text = repr(message.content)
    else:
        text = f"<{len(message.content)} bytes> {message.content[:16].hex()}"
    return text if len(text) <= limit else text[:max(limit - 1, 1)] + "…"


def close_text(log: WebSocketLog) -> str:
    """How a recorded WebSocket ended, in words."""
    if not log.closed_by:
        return "still open when the recording stopped"
    if log.close_code is None:
        return f"dropped by the {log.closed_by} (no close frame)"
    reason = f" {json.dumps(log.close_reason, ensure_ascii=False)}" if log.close_reason else ""
    return f"closed by the {log.closed_by}, code {log.close_code}{reason}"


def render_websocket(log: WebSocketLog, max_chars: int = 4000) -> Iterator[str]:
    """Lines listing a WebSocket's messages: number, time from the 101, direction, type,
    content shortened (at most ``max_chars``, 200 by default)."""
    count = len(log.messages)
    yield f"  websocket: {count} message{'' if count == 1 else 's'}, {close_text(log)}"
    limit = min(max_chars, 200)
    for n, m in enumerate(log.messages, 1):
        side = "client" if m.from_client else "server"
        kind = "text  " if m.is_text else "binary"
        yield f"    {n:>3} +{m.at:7.3f}s {side} {kind} {shorten_message(m, limit)}"


def summary_line(number: int, it: Interaction) -> str:
    """``#3  POST https://api/v1/charges -> 201 Created  req 120 B  resp 2.1 KB gzip``"""
    q, r = it.request, it.response
    encoding = header_value(r.headers, "content-encoding")
    extra = f" {encoding}" if encoding else ""
    if it.chunks:
        extra += f"  streamed {len(it.chunks)} chunk{'' if len(it.chunks) == 1 else 's'}"
    if it.cut:
        extra += "  CUT"
    if it.websocket is not None:
        count = len(it.websocket.messages)
        extra += f"  websocket {count} message{'' if count == 1 else 's'}"
    return escape_controls(
        f"#{number:<3} {q.method} {q.url} -> {r.status} {r.reason}".rstrip()
        + f"  req {format_size(len(q.body))}  resp {format_size(len(r.body))}{extra}"
    )


def _when(timestamp: float) -> str:
    """``2026-11-28 15:45:18 UTC``; a time no calendar date fits shown as the number."""
    try:
        return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"at {timestamp!r} s since the epoch (not a calendar date)"


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def render_interaction(number: int, it: Interaction, max_chars: int = 4000,
                       descriptors: Descriptors | None = None,
                       safe: Callable[[str], str] = str, digest: bool = False,
                       timing: bool = True) -> Iterator[str]:
    """Yield the lines of a detailed view of one interaction; gRPC messages as frames,
    decoded with ``descriptors`` when given; ``safe`` makes the lines of WebSocket
    messages fit for a terminal; ``digest``: a binary body with the start of its SHA-256;
    ``timing``: with when it was recorded and how fast. Control characters from the
    traffic (terminal escape sequences) are shown as ``\\xNN``."""
    q, r = it.request, it.response
    yield summary_line(number, it)
    if timing:
        when = _when(it.recorded_at)
        yield escape_controls(
            f"  recorded {when}, first byte {it.ttfb * 1000:.1f} ms, "
            f"total {it.duration * 1000:.1f} ms, {q.http_version}"
        )
    else:
        yield escape_controls(f"  {q.http_version}")
    if it.chunks or it.cut:
        yield f"  {describe_chunks(it.chunks, it.cut)}"
    for title, headers, body in (("request", q.headers, q.body), ("response", r.headers, r.body)):
        yield f"  {title} headers:"
        for k, v in headers:
            yield escape_controls(f"    {k}: {v}")
        if is_grpc(headers) and body:
            rendered = render_frames(body, q.path, response=title == "response",
                                     descriptors=descriptors, coding=message_coding(headers))
        else:
            rendered = render_body(body, headers, max_chars, digest)
        if rendered:
            yield f"  {title} body:"
            yield _indent(escape_controls(rendered.replace("\r\n", "\n"), lines=True))
    if r.trailers:
        yield "  response trailers:"
        for k, v in r.trailers:
            yield escape_controls(f"    {k}: {v}")
    status = status_of((*r.headers, *r.trailers)) if is_grpc(r.headers) else None
    if status is not None:
        yield f"  gRPC status: {status}"
    if it.websocket is not None:
        yield from map(safe, render_websocket(it.websocket, max_chars))


def render_text(interactions: Iterable[Interaction]) -> Iterator[str]:
    """The text of a whole cassette for git (a ``textconv`` driver): every interaction in
    full, bodies not cut, binary bodies by size and digest; no file path (git hands the
    old side over as a temporary file) and no times of recording (not content: a review
    shows what the API answered)."""
    items = list(interactions)
    yield f"# replayproxy cassette: {len(items)} interaction{'' if len(items) == 1 else 's'}"
    for n, it in enumerate(items, 1):
        yield ""
        yield from render_interaction(n, it, sys.maxsize, digest=True, timing=False)
