"""Streamed responses: which ones stream, how their pieces arrived, how to replay them.

While recording, a response the upstream sends incrementally reaches the client piece by
piece as it arrives, and is recorded as one interaction whose ``chunks`` say when each
piece came (seconds from the start of the request) and how long it was. A response is
streamed when ``should_stream`` says so:

- ``Content-Type: text/event-stream`` (Server-Sent Events), whatever its framing;
- no ``Content-Length``: chunked transfer (HTTP/1.1), a body sent until the connection
  closes (HTTP/1.0), an HTTP/2 or gRPC body whose length is not announced;
- a ``Content-Length`` above ``STREAM_ABOVE`` (1 MiB): a big body is passed on as it comes
  instead of being held whole.

Never a response without a body (``HEAD``, 1xx, 204, 304) or a protocol switch (101).

Pieces that arrive within ``MERGE_WITHIN`` of the previous one are counted as one chunk
(a big body read 64 KiB at a time is a few chunks, not thousands); events that are apart
in time stay apart. While a body streams it is spooled (``Spool``): in memory up to
``SPOOL_ABOVE``, in an anonymous temporary file beyond.

A stream can end early: ``cut`` holds why. ``upstream_cut`` marks one the upstream broke
off (replay sends what arrived with its pacing, then breaks the connection the same
way); ``CLIENT_CUT`` one the client left (an endless stream: replay sends what arrived,
then keeps the stream open until the client leaves).

Replay paces the pieces with ``schedule``: piece ``i`` is sent ``chunks[i].at * pace``
seconds after the request came in (``pace`` 1 is real time, 0 as fast as possible).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from replayproxy.model import Chunks, Headers, Interaction, header_value

__all__ = [
    "CLIENT_CUT",
    "MERGE_WITHIN",
    "SPOOL_ABOVE",
    "STREAM_ABOVE",
    "UPSTREAM_CUT",
    "BodyFile",
    "ChunkLog",
    "Send",
    "Spool",
    "broken_off",
    "client_cut",
    "describe_chunks",
    "parse_pace",
    "refit",
    "schedule",
    "should_stream",
    "upstream_cut",
]

STREAM_ABOVE = 1 << 20
"""A response announcing a body longer than this (bytes) is streamed."""
SPOOL_ABOVE = 1 << 20
"""A streamed body is kept in memory up to this many bytes, in a temporary file beyond."""
MERGE_WITHIN = 0.002
"""Pieces arriving within this many seconds of the previous one are one chunk."""
CLIENT_CUT = "the client closed the stream before it ended"
"""The ``cut`` of a stream the client left (the upstream had not ended it)."""
UPSTREAM_CUT = "the upstream broke the stream off: "
"""How the ``cut`` of a stream the upstream broke off starts (its error follows)."""


def should_stream(method: str, status: int, headers: Headers, *,
                  above: int = STREAM_ABOVE) -> bool:
    """Whether a response (status and headers, to ``method``) is streamed while recording
    (see the module's description)."""
    if method.upper() == "HEAD" or 100 <= status < 200 or status in (204, 304):
        return False
    content_type = (header_value(headers, "content-type") or "").lower()
    if content_type.split(";")[0].strip() == "text/event-stream":
        return True
    length = header_value(headers, "content-length")
    if length is None:
        return True
    try:
        return int(length) > above
    except ValueError:
        return True


def upstream_cut(reason: str) -> str:
    """The ``cut`` of a stream the upstream broke off for ``reason``."""
    return UPSTREAM_CUT + " ".join(reason.split())


def broken_off(interaction: Interaction) -> bool:
    """Whether the upstream broke ``interaction``'s stream off (an upstream failure while
    recording, listed as one)."""
    return bool(interaction.cut) and not client_cut(interaction.cut)


def client_cut(cut: str) -> bool:
    """Whether ``cut`` is a stream the client left (not one the upstream broke off)."""
    return cut == CLIENT_CUT


class ChunkLog:
    """The arrival of a body's pieces, merged as ``MERGE_WITHIN`` says."""

    __slots__ = ("_chunks", "_last", "size")

    def __init__(self) -> None:
        self._chunks: list[list[float | int]] = []
        self._last = -math.inf
        self.size = 0
        """Bytes so far."""

    def add(self, at: float, size: int) -> None:
        """Note ``size`` bytes arriving ``at`` seconds from the start of the request."""
        if size <= 0:
            return
        if self._chunks and at - self._last <= MERGE_WITHIN:
            self._chunks[-1][1] += size
        else:
            self._chunks.append([round(max(at, 0.0), 6), size])
        self._last = at
        self.size += size

    @property
    def chunks(self) -> Chunks:
        """The chunks so far, as ``Interaction.chunks``."""
        return tuple((float(t), int(n)) for t, n in self._chunks)


class Spool:
    """A body being received: in memory up to ``limit`` bytes, then in a temporary file
    (deleted when closed), so a long or endless stream never grows the process."""

    def __init__(self, limit: int = SPOOL_ABOVE) -> None:
        # closed by close(), not by a with block: it lives as long as the stream
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=limit)  # noqa: SIM115
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def read(self) -> bytes:
        """The whole body received so far."""
        self._file.seek(0)
        data = self._file.read()
        self._file.seek(0, 2)
        return data

    def close(self) -> None:
        self._file.close()

    def body(self) -> BodyFile:
        """What was received, as a ``BodyFile`` reading this spool's file (closing one
        closes the other)."""
        return BodyFile(self._file, self.size)


class BodyFile:
    """A response body kept in a file, not in memory: a big streamed body while it is
    redacted, scanned and journaled (``replayproxy.redaction.big``)."""

    def __init__(self, file: IO[bytes], size: int) -> None:
        self._file = file
        self.size = size

    @classmethod
    def new(cls) -> BodyFile:
        """An empty body in an anonymous temporary file, to ``write`` to."""
        # closed by close(), not by a with block: it lives as long as the recording
        return cls(tempfile.TemporaryFile(), 0)  # noqa: SIM115

    def write(self, data: bytes) -> None:
        self._file.seek(0, 2)
        self._file.write(data)
        self.size += len(data)

    def windows(self, size: int) -> Iterator[bytes]:
        """The body from its start, ``size`` bytes at a time."""
        self._file.seek(0)
        while True:
            window = self._file.read(size)
            if not window:
                return
            yield window

    def reader(self) -> IO[bytes]:
        """The file, at the body's start, to read from (not to close)."""
        self._file.seek(0)
        return self._file

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True, slots=True)
class Send:
    """One piece of a replayed stream: ``length`` bytes from ``offset``, sent ``at``
    seconds after the request came in."""

    at: float
    offset: int
    length: int


def schedule(chunks: Iterable[tuple[float, int]], pace: float) -> list[Send]:
    """When to send each recorded chunk: its recorded time scaled by ``pace``, never
    earlier than the piece before it."""
    out: list[Send] = []
    offset, last = 0, 0.0
    for at, length in chunks:
        last = max(last, at * pace)
        out.append(Send(last, offset, length))
        offset += length
    return out


_ANCHOR = 32
"""Bytes on each side of a chunk boundary that ``refit`` looks for in the new body."""


def refit(chunks: Chunks, old: bytes, new: bytes) -> Chunks:
    """``chunks`` of the body ``old`` moved onto ``new``, the same body with some parts
    replaced (redaction): each boundary goes where the bytes that followed it (else
    preceded it) are found in ``new``, else where the replacements so far shift it. The
    times stay; the lengths add up to ``len(new)``."""
    if not chunks or old == new:
        return chunks
    if len(old) == len(new) and len(new) == sum(n for _, n in chunks):
        return chunks  # replaced in place: every boundary stays where it was
    ends, end = [], 0
    for _, n in chunks:
        end += n
        ends.append(end)
    slack = abs(len(new) - len(old)) + _ANCHOR
    placed: list[int] = []
    previous = shift = 0
    for boundary in ends[:-1]:
        guess = boundary + shift
        limit = min(len(new), guess + slack + _ANCHOR)
        at = _anchor(old, new, boundary, previous, limit)
        if at < 0:
            at = guess
        at = min(max(at, previous), len(new))
        placed.append(at)
        shift, previous = at - boundary, at
    placed.append(len(new))
    starts = [0, *placed[:-1]]
    return tuple((t, e - b) for (t, _), b, e in zip(chunks, starts, placed, strict=True))


def _anchor(old: bytes, new: bytes, boundary: int, start: int, limit: int) -> int:
    """Where ``boundary`` of ``old`` is in ``new``: where the bytes after it (else before
    it) are found between ``start`` and ``limit``, the longest that are; -1 if none."""
    for size in (_ANCHOR, _ANCHOR // 4, 4):
        after = old[boundary:boundary + size]
        if len(after) == size:
            found = new.find(after, start, limit + size)
            if found >= 0:
                return found
    for size in (_ANCHOR, _ANCHOR // 4, 4):
        before = old[max(0, boundary - size):boundary]
        if len(before) == size:
            found = new.find(before, start, limit)
            if found >= 0:
                return found + size
    return -1


def parse_pace(value: str | float) -> float:
    """``--pace``: a non-negative, finite number.

    Raises:
        ValueError: anything else; the message says what is allowed.
    """
    try:
        pace = float(value)
    except (TypeError, ValueError):
        pace = math.nan
    if not math.isfinite(pace) or pace < 0:
        raise ValueError(f"the pace should be a number from 0 (as fast as possible) up, 1 "
                         f"being real time, not {value!r}")
    return pace


def describe_chunks(chunks: Chunks, cut: str = "") -> str:
    """One line on how a streamed body arrived, for ``cassette show``."""
    if not chunks:
        parts = ["streamed, no body arrived"] if cut else []
    else:
        first, last = chunks[0][0], chunks[-1][0]
        count = len(chunks)
        parts = [f"streamed in {count} chunk{'' if count == 1 else 's'}, "
                 f"first at {first:.3f} s, last at {last:.3f} s"]
        if count > 1:
            shown = ", ".join(f"{t:.3f}s:{n}B" for t, n in chunks[:8])
            parts.append(f"({shown}{', …' if count > 8 else ''})")
    if cut:
        parts.append(f"CUT: {cut}")
    return " ".join(parts)
