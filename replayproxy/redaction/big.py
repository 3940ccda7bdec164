"""Big response bodies redacted and scanned a window at a time, never held whole.

A streamed response body longer than ``BIG_BODY`` stays in the file it was spooled to
(``streams.BodyFile``). ``redact_big`` finds its secrets a megabyte at a time and writes
the redacted body to a new file; ``scan_big`` scans that file the same way. Memory stays
a few megabytes, whatever the body's size.

What is found in a big body, as in a small one: credential shapes and the user's
patterns; JSON members named like secrets (``"password": "…"``, ``"pin": 1234``, found
by their text, not by parsing the document); the JSON of each Server-Sent Event (parsed
event by event, as for a small body). Every secret found anywhere in the interaction is
replaced in the body, as in a small one. Not applied to a big body: JSONPath rules (they
need the whole document; a warning says so when there are some) and form or multipart
fields. A gzip or deflate body is decoded and encoded again as it goes; a br or zstd body
that needs a replacement is written decoded, without its Content-Encoding (what
``Redactor`` does with an encoding it cannot produce). A secret longer than ``OVERLAP``
characters that straddles two windows may be found in part only.
"""

from __future__ import annotations

import bisect
import codecs
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Protocol

from replayproxy.codec import DECODINGS, content_encodings, decoded_pieces
from replayproxy.grpc_wire import is_grpc, message_coding, rewrite_frames
from replayproxy.model import Chunks, Headers, Interaction, header_value
from replayproxy.redaction.redactor import (
    RedactionConfig,
    Redactor,
    _Found,
    _replace_bytes,
    _rule_name,
    _walk_json,
)
from replayproxy.redaction.scan import Finding, _Scan, _unredacted, scan_interaction
from replayproxy.redaction.secrets import EVENT_STREAM, event_stream_json
from replayproxy.streams import BodyFile

__all__ = ["BIG_BODY", "OVERLAP", "WINDOW", "redact_big", "scan_big", "scan_big_interaction"]

log = logging.getLogger("replayproxy")

BIG_BODY = 8 << 20
"""A streamed response body longer than this (bytes) is redacted and scanned a window
at a time, from its file."""
WINDOW = 1 << 20
"""Bytes read at a time."""
OVERLAP = 8192
"""Characters each window shares with the next, so what straddles two is seen whole."""

_STRING = r'"([^"\\\n]*+(?:\\.[^"\\\n]*+)*+)"'
"""A JSON string on one line, matched in linear time (possessive, unrolled)."""
_STRING_MEMBER = re.compile(_STRING + r"\s*+:\s*+" + _STRING)
_NUMBER_MEMBER = re.compile(
    _STRING + r"\s*+:\s*+(-?\d++(?:\.\d++)?(?:[eE][+-]?\d++)?)(?=\s*[,}\]])")
_EVENT_END = re.compile(r"\r\n\r\n|\n\n|\r\r")


class _Codec(Protocol):
    def __call__(self, data: bytes) -> bytes: ...


def _decoded(body: BodyFile, encoding: str) -> Iterator[bytes]:
    """``body`` with its Content-Encoding (one of ``codec.DECODINGS``) undone, in pieces
    of at most about ``WINDOW`` bytes however well it was compressed."""
    return decoded_pieces(body.reader(), encoding, WINDOW)


def _encoder(encoding: str) -> tuple[_Codec, Callable[[], bytes]] | None:
    """A streaming encoder for gzip or deflate; None for the others."""
    if encoding in ("gzip", "x-gzip", "deflate"):
        c = zlib.compressobj(wbits=16 + zlib.MAX_WBITS if encoding != "deflate"
                             else zlib.MAX_WBITS)
        return (lambda data: c.compress(data)), (lambda: c.flush())
    if encoding in ("", "identity"):
        return (lambda data: data), (lambda: b"")
    return None


def _source(body: BodyFile, headers: Headers) -> tuple[Callable[[], Iterator[bytes]], str,
                                                       str | None]:
    """How to read the body's bytes with its Content-Encoding undone (a fresh pass each
    call, a window at a time), their charset, and the encoding undone (None when it
    cannot be: the body is then handled as bytes, as ``decode_body`` does)."""
    encodings = content_encodings(headers)
    encoding: str | None = encodings[0] if len(encodings) == 1 else "" if not encodings \
        else None

    def raw() -> Iterator[bytes]:
        return body.windows(WINDOW)

    def decoded() -> Iterator[bytes]:
        return _decoded(body, encoding or "")

    if encoding in DECODINGS:
        try:
            return decoded, _charset(decoded()), encoding
        except Exception:  # not what its Content-Encoding says
            pass
    return raw, _charset(raw()), None


def _charset(windows: Iterator[bytes]) -> str:
    """``utf-8`` if the bytes are UTF-8, else ``latin-1`` (lossless), as ``body_text``."""
    check = codecs.getincrementaldecoder("utf-8")()
    try:
        for window in windows:
            check.decode(window, False)
        check.decode(b"", True)
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def _texts(windows: Iterator[bytes], charset: str) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder(charset)()
    for window in windows:
        yield decoder.decode(window, False)
    yield decoder.decode(b"", True)


def _overlapping(texts: Iterator[str]) -> Iterator[tuple[str, str]]:
    """Each piece of text, with the last ``OVERLAP`` characters before it in front, and
    the piece alone."""
    tail = ""
    for text in texts:
        if not text:
            continue
        joined = tail + text
        yield joined, text
        tail = joined[-OVERLAP:]


def _unescape(text: str) -> str | None:
    try:
        value = json.loads(f'"{text}"')
    except ValueError:
        return None
    return value if isinstance(value, str) else None


class _Events:
    """The complete Server-Sent Events of a body read piece by piece."""

    def __init__(self) -> None:
        self.rest = ""

    def feed(self, text: str, final: bool = False) -> Iterator[Any]:
        text = self.rest + text
        ends = list(_EVENT_END.finditer(text))
        cut = len(text) if final else (ends[-1].end() if ends else 0)
        if not final and not ends and len(text) > 4 * WINDOW:
            cut = len(text)  # no event end in sight: not an event stream after all
        self.rest = text[cut:]
        return event_stream_json(text[:cut])


def _find(redactor: Redactor, texts: Iterator[str], headers: Headers, found: _Found) -> None:
    """Add the secrets of a big body (its text, a window at a time) to ``found``."""
    config = redactor.config
    events = _Events() if EVENT_STREAM in (header_value(headers, "content-type") or "").lower() \
        else None
    shapes = _Found()  # named after JSON members first, as ``Redactor`` names them
    for text, new in _overlapping(texts):
        for pattern in config.patterns:
            for m in pattern.finditer(text):
                shapes.add(m.group(), pattern.name)
        if '"' in text:
            for m in _STRING_MEMBER.finditer(text):
                key, value = _unescape(m.group(1)), _unescape(m.group(2))
                if key is not None and value is not None and config.secret_field(key):
                    found.add(value, _rule_name(key))
            for m in _NUMBER_MEMBER.finditer(text):
                key = _unescape(m.group(1))
                if key is not None and config.secret_field(key):
                    found.add_number(m.group(2), _rule_name(key))
        if events is not None:
            for doc in events.feed(new):
                _walk_json(doc, config, found)
    if events is not None:
        for doc in events.feed("", final=True):
            _walk_json(doc, config, found)
    for value, rule in shapes.values.items():
        found.add(value, rule)


class _Rewrite:
    """Replacements applied to text arriving piece by piece: what may still be part of a
    match is kept back until the next piece (see ``OVERLAP``). ``number``: the new text
    of a JSON number member (``_NUMBER_MEMBER``), or None to leave it."""

    def __init__(self, pairs: list[tuple[str, str]],
                 number: Callable[[re.Match[str]], str | None] | None, charset: str) -> None:
        present = [p for p in pairs if p[0]]
        self.table = dict(present)
        self.pattern = re.compile("|".join(re.escape(s) for s, _ in present)) \
            if present else None
        self.number = number
        self.charset = charset
        self.rest = ""
        self.moved: list[tuple[int, int]] = []
        """(end of a replaced part in the old bytes, bytes added by then), in order."""
        self._old = self._new = 0

    def _matches(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, new text) of every replacement in ``text``, in order, none
        overlapping (a secret first, then a secret JSON number, as ``Redactor`` does)."""
        found = [(m.start(), m.end(), self.table[m.group(0)])
                 for m in self.pattern.finditer(text)] if self.pattern is not None else []
        if self.number is not None and '"' in text:
            taken = found[:]
            for m in _NUMBER_MEMBER.finditer(text):
                new = self.number(m)
                if new is not None:
                    i = bisect.bisect_left(taken, (m.start(),))
                    clash = (i > 0 and taken[i - 1][1] > m.start()) or \
                        (i < len(taken) and taken[i][0] < m.end())
                    if not clash:
                        taken.insert(i, (m.start(), m.end(), new))
            found = taken
        return found

    def feed(self, text: str, final: bool = False) -> bytes:
        text = self.rest + text
        safe = len(text) if final else max(0, len(text) - OVERLAP)
        out: list[str] = []
        at = 0
        for start, end, new in self._matches(text):
            if start >= safe:
                break
            out.append(text[at:start])
            self._note(text[at:start], text[start:end], new)
            out.append(new)
            at = end
            safe = max(safe, at)
        out.append(text[at:safe])
        self._note(text[at:safe], "", "")
        self.rest = text[safe:]
        return "".join(out).encode(self.charset, "replace")

    def _note(self, kept: str, old: str, new: str) -> None:
        size = len(kept) if self.charset == "latin-1" or kept.isascii() \
            else len(kept.encode(self.charset, "replace"))
        self._old += size
        self._new += size
        if old:
            self._old += len(old.encode(self.charset, "replace"))
            self._new += len(new.encode(self.charset, "replace"))
            self.moved.append((self._old, self._new - self._old))

    def place(self, boundary: int) -> int:
        """Where byte ``boundary`` of the old body is in the new one."""
        i = bisect.bisect_right(self.moved, (boundary, float("inf")))
        return boundary + (self.moved[i - 1][1] if i else 0)


def _refit(chunks: Chunks, place: Callable[[int], int], size: int) -> Chunks:
    """``chunks`` moved onto a body of ``size`` bytes, each boundary where ``place`` says."""
    if not chunks:
        return chunks
    out, previous, end = [], 0, 0
    for t, n in chunks[:-1]:
        end += n
        at = min(max(place(end), previous), size)
        out.append((t, at - previous))
        previous = at
    out.append((chunks[-1][0], size - previous))
    return tuple(out)


def _frames(windows: Iterator[bytes]) -> Iterator[bytes]:
    """The gRPC messages of a body (each with its 5-byte prefix), one at a time."""
    buffer = b""
    for window in windows:
        buffer += window
        while len(buffer) >= 5:
            end = 5 + int.from_bytes(buffer[1:5], "big")
            if len(buffer) < end:
                break
            yield buffer[:end]
            buffer = buffer[end:]
    if buffer:
        yield buffer


def redact_big(redactor: Redactor, it: Interaction, body: BodyFile
               ) -> tuple[Interaction, BodyFile]:
    """``it`` (whose response body is ``body``, not in ``it``) redacted: the interaction,
    its chunks fitted to the new body, and the new body in a new file (``body`` itself
    when nothing in it changed). See the module's description."""
    config = redactor.config.for_request(it.request)
    headers = it.response.headers
    source, charset, encoding = _source(body, headers)
    found = _Found()
    _find(Redactor(config, redactor.key), _texts(source(), charset), headers, found)
    if config.json_paths and "json" in (header_value(headers, "content-type") or "").lower():
        log.warning("%s %s: JSONPath redaction rules are not applied to a response body "
                    "of %d MiB (over %d MiB, it is redacted a window at a time)",
                    it.request.method, it.request.path, body.size >> 20, BIG_BODY >> 20)
    redacted = redactor.redact(it, found)
    pairs = redactor.replacements(found)
    if not pairs and not found.numbers:
        return redacted, body
    def number(m: re.Match[str]) -> str | None:
        if not config.secret_field(m.group(1)):
            return None
        head = m.group(0)[:m.start(2) - m.start(0)]
        return head + json.dumps(redactor.placeholder(_rule_name(m.group(1)), m.group(2)))

    out = BodyFile.new()
    rewrite = _Rewrite(pairs, number if found.numbers else None, charset)
    encode = _encoder(encoding) if encoding is not None else None
    grpc = encoding is not None and is_grpc(headers)
    if grpc:
        for frame in _frames(source()):
            out.write(rewrite_frames(frame, lambda leaf: _replace_bytes(leaf, pairs),
                                     message_coding(headers)) or frame)
    else:
        feed, flush = encode or ((lambda data: data), (lambda: b""))
        for text in _texts(source(), charset):
            out.write(feed(rewrite.feed(text)))
        out.write(feed(rewrite.feed("", final=True)))
        out.write(flush())
    new_headers = redacted.response.headers
    if encoding not in (None, "", "identity") and encode is None:
        new_headers = tuple((k, v) for k, v in new_headers if k.lower() != "content-encoding")
    new_headers = tuple((k, str(out.size) if k.lower() == "content-length" else v)
                        for k, v in new_headers)
    exact = not grpc and encoding in ("", "identity")
    place = rewrite.place if exact else (lambda b: b * out.size // max(body.size, 1))
    return replace(redacted, response=replace(redacted.response, headers=new_headers),
                   chunks=_refit(it.chunks, place, out.size)), out


def scan_big(it: Interaction, body: BodyFile, scan: _Scan) -> None:
    """Add what the scanner finds in ``body``, the big response body of ``it``, to
    ``scan``: a window at a time, each finding once."""
    headers = it.response.headers
    source, charset, _ = _source(body, headers)
    events = _Events() if EVENT_STREAM in (header_value(headers, "content-type") or "").lower() \
        else None
    before = len(scan.findings)
    for text, new in _overlapping(_texts(source(), charset)):
        scan.text("response body", text)
        for m in _STRING_MEMBER.finditer(text) if '"' in text else ():
            key, value = _unescape(m.group(1)), _unescape(m.group(2))
            if key is not None and value is not None and scan.config.secret_field(key) \
                    and _unredacted(value):
                scan.add(f"response body {key}", key.lower(), value)
        if events is not None:
            for doc in events.feed(new):
                scan.json("response body event", doc)
    if events is not None:
        for doc in events.feed("", final=True):
            scan.json("response body event", doc)
    seen: set[tuple[str, str, str]] = set()
    kept = []
    for f in scan.findings[before:]:
        if (f.location, f.rule, f.excerpt) not in seen:
            seen.add((f.location, f.rule, f.excerpt))
            kept.append(f)
    scan.findings[before:] = kept


def scan_big_interaction(it: Interaction, body: BodyFile, config: RedactionConfig,
                         file: str = "", number: int | None = None) -> list[Finding]:
    """Secrets left in ``it`` and its big response body ``body`` (``scan_interaction``
    for an interaction whose body is kept in a file)."""
    return scan_interaction(it, config, file, number, also=lambda scan: scan_big(it, body, scan))
