"""Readable views of cassettes: one line per interaction, bodies decoded and pretty.

Used by ``replayproxy cassette ls`` and ``replayproxy cassette show``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

from replayproxy.codec import decode_body
from replayproxy.model import Headers, Interaction, header_value
from replayproxy.streams import describe_chunks

__all__ = ["decode_body", "format_size", "render_body", "render_interaction", "summary_line"]


def format_size(n: int) -> str:
    """``512 B``, ``1.5 KB``, ``5.0 MB`` (powers of 1024)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def render_body(body: bytes, headers: Headers, max_chars: int = 4000) -> str:
    """Return the body for people: JSON pretty-printed, text as text, else a summary."""
    if not body:
        return ""
    content_type = (header_value(headers, "content-type") or "").lower()
    decoded = decode_body(body, headers)
    if decoded is None:
        encoding = header_value(headers, "content-encoding")
        return f"<{format_size(len(body))}, undecodable {encoding}>"
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
        return f"<binary, {format_size(len(decoded))}, {content_type or 'no content-type'}>"
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n… ({len(text) - max_chars} more characters)"
    return text


def summary_line(number: int, it: Interaction) -> str:
    """``#3  POST https://api/v1/charges -> 201 Created  req 120 B  resp 2.1 KB gzip``"""
    q, r = it.request, it.response
    encoding = header_value(r.headers, "content-encoding")
    extra = f" {encoding}" if encoding else ""
    if it.chunks:
        extra += f"  streamed {len(it.chunks)} chunk{'' if len(it.chunks) == 1 else 's'}"
    if it.cut:
        extra += "  CUT"
    return (
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


def render_interaction(number: int, it: Interaction, max_chars: int = 4000) -> Iterator[str]:
    """Yield the lines of a detailed view of one interaction."""
    q, r = it.request, it.response
    yield summary_line(number, it)
    when = _when(it.recorded_at)
    yield (
        f"  recorded {when}, first byte {it.ttfb * 1000:.1f} ms, "
        f"total {it.duration * 1000:.1f} ms, {q.http_version}"
    )
    if it.chunks or it.cut:
        yield f"  {describe_chunks(it.chunks, it.cut)}"
    for title, headers, body in (("request", q.headers, q.body), ("response", r.headers, r.body)):
        yield f"  {title} headers:"
        for k, v in headers:
            yield f"    {k}: {v}"
        rendered = render_body(body, headers, max_chars)
        if rendered:
            yield f"  {title} body:"
            yield _indent(rendered)
