"""The cassette file format: msgpack bytes to interactions and back, a reader per version.

A cassette file is two msgpack objects one after the other:

1. a header map ``{"format": "replayproxy-cassette", "interactions": N, "version": V}``;
2. the interactions, laid out as format version ``V`` says.

The header is read first; its version picks the reader in ``READERS``, which walks
the interactions. Every version-1 entry is a valid version-2 entry, so entries read
from either can be written together. A version newer than any reader is refused with
one line naming the version and the fix (upgrade replayproxy); garbage is a
``CassetteError`` naming the file, never another exception.

Version 1: an array of interactions, each an array (see ``encode_interaction``).
Arrays rather than maps keep the file small and quick to read; maps are written with
sorted keys, so identical interactions always give identical bytes (``dumps``).

Version 2 adds what is not one request and one whole response: an interaction may
carry a sixth element, a map of extras (``chunks``, ``cut``, ``trailers``,
``websocket``; see ``encode_interaction``), and the header lists the ``features`` the
file uses. A cassette whose interactions need none of it is still written as version 1,
so plain cassettes stay readable by older replayproxy releases and re-recording them
gives the same bytes as before. Journals (``replayproxy.cassette.journal``) use the same
header with the format ``replayproxy-journal`` and are always version 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import math
import mmap
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from replayproxy.errors import CassetteError
from replayproxy.model import Interaction, Request, Response, WebSocketLog, WebSocketMessage

__all__ = [
    "CASSETTE_FORMAT",
    "FORMAT_VERSION",
    "JOURNAL_FORMAT",
    "READERS",
    "WINDOW",
    "Layout",
    "RawEntry",
    "Reader",
    "bin_header",
    "body_span",
    "corrupt_error",
    "decode_interaction",
    "decode_interaction_v2",
    "decode_without_body",
    "dumps",
    "encode_interaction",
    "features",
    "pack_around",
    "read_cassette",
    "read_header",
    "release_pages",
    "shorten",
    "unpack_entry",
    "unpack_without_body",
    "Window",
    "comparable",
    "entry_bytes",
    "header_bytes",
    "LEAN_MARK",
    "MAX_BODY",
    "without_gc",
]

FORMAT_VERSION = 2
"""The newest version this replayproxy writes (version 1 when nothing needs 2)."""
CASSETTE_FORMAT = "replayproxy-cassette"
JOURNAL_FORMAT = "replayproxy-journal"

RawEntry = tuple[Any, ...]
"""An interaction as stored, in its file's format version (see ``encode_interaction``)."""


# -- version 1 ------------------------------------------------------------------------


def encode_interaction(it: Interaction) -> RawEntry:
    """Return the stored form of ``it``.

    ``(request, response, recorded_at, ttfb, duration)`` where request is
    ``(method, scheme, host, port, path, query, headers, body, http_version)``,
    response is ``(status, reason, headers, body, http_version)`` and headers are
    ``((name, value), ...)``: format version 1. An interaction with a streamed body,
    a cut, trailers or WebSocket messages gets a sixth element (version 2), a map with
    sorted keys holding only what it has: ``chunks`` ``((seconds, length), ...)``,
    ``cut`` (why), ``trailers`` (headers), ``websocket`` ``(messages, close_code,
    close_reason, closed_by)`` with each message ``(from_client, is_text, at, content)``.
    """
    q, r = it.request, it.response
    base = (
        (q.method, q.scheme, q.host, q.port, q.path, q.query, q.headers, q.body, q.http_version),
        (r.status, r.reason, r.headers, r.body, r.http_version),
        float(it.recorded_at),
        float(it.ttfb),
        float(it.duration),
    )
    extras: dict[str, Any] = {}
    if it.chunks:
        extras["chunks"] = tuple((float(t), n) for t, n in it.chunks)
    if it.cut:
        extras["cut"] = it.cut
    if r.trailers:
        extras["trailers"] = r.trailers
    if it.websocket is not None:
        ws = it.websocket
        extras["websocket"] = (
            tuple((m.from_client, m.is_text, float(m.at), m.content) for m in ws.messages),
            ws.close_code, ws.close_reason, ws.closed_by)
    return (*base, extras) if extras else base


def features(entries: Sequence[RawEntry]) -> list[str]:
    """The version-2 features ``entries`` use, sorted: the extras' names, and ``h2`` when
    a request went over HTTP/2. Empty: the entries fit format version 1."""
    found: set[str] = set()
    for e in entries:
        if len(e) > 5:
            found.update(e[5])
        if e[0][8].startswith("HTTP/2"):
            found.add("h2")
    return sorted(found)


def _bad(what: str, value: Any) -> ValueError:
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return ValueError(f"{what} is {type(value).__name__} {shown}")


def _str(what: str, value: Any) -> str:
    if type(value) is not str:
        raise _bad(f"{what} should be text but", value)
    return value


def _int(what: str, value: Any, top: int) -> int:
    if type(value) is not int or not 0 <= value <= top:
        raise _bad(f"{what} should be a whole number from 0 to {top} but", value)
    return value


def _float(what: str, value: Any) -> float:
    if type(value) is not float or not math.isfinite(value):
        raise _bad(f"{what} should be a finite number but", value)
    return float(value)


def _bytes(what: str, value: Any) -> bytes:
    if type(value) is not bytes:
        raise _bad(f"{what} should be bytes but", value)
    return value


def _headers(what: str, raw: Any) -> tuple[tuple[str, str], ...]:
    if type(raw) not in (tuple, list):
        raise _bad(f"{what} should be a list but", raw)
    for pair in raw:
        if type(pair) not in (tuple, list) or len(pair) != 2 \
                or type(pair[0]) is not str or type(pair[1]) is not str:
            raise _bad(f"a header in {what} should be a [name, value] pair of text but", pair)
    return raw if type(raw) is tuple and all(type(p) is tuple for p in raw) \
        else tuple((k, v) for k, v in raw)


def _shape(what: str, value: Any, size: int) -> tuple[Any, ...]:
    if type(value) not in (tuple, list) or len(value) != size:
        raise _bad(f"{what} should be a list of {size} but", value)
    return tuple(value)


def decode_interaction(raw: RawEntry) -> Interaction:
    """Return the Interaction stored as ``raw`` (format version 1), every field checked
    for its type (and numbers for their range) exactly as written by ``encode_interaction``.

    Raises:
        ValueError: ``raw`` is malformed; the message says which field and what it holds.
    """
    q, r, recorded_at, ttfb, duration = _shape("the interaction", raw, 5)
    return _decode(q, r, recorded_at, ttfb, duration, None)


def decode_interaction_v2(raw: RawEntry) -> Interaction:
    """Return the Interaction stored as ``raw`` (format version 2: version 1's five
    elements, and optionally the map of extras), every field checked.

    Raises:
        ValueError: ``raw`` is malformed; the message says which field and what it holds.
    """
    if type(raw) in (tuple, list) and len(raw) == 6:
        q, r, recorded_at, ttfb, duration, extras = raw
        if type(extras) is not dict:
            raise _bad("the extras should be a map but", extras)
        return _decode(q, r, recorded_at, ttfb, duration, extras)
    return decode_interaction(raw)


_EXTRAS = ("chunks", "cut", "trailers", "websocket")


def _decode(q: Any, r: Any, recorded_at: Any, ttfb: Any, duration: Any,
            extras: dict[str, Any] | None) -> Interaction:
    method, scheme, host, port, path, query, qh, qbody, qver = _shape("the request", q, 9)
    status, reason, rh, rbody, rver = _shape("the response", r, 5)
    x = extras or {}
    unknown = sorted(str(k) for k in x if k not in _EXTRAS)
    if unknown:
        raise ValueError(f"the extras hold {shorten(', '.join(unknown), 40)}, unknown to this "
                         "replayproxy")
    return Interaction(
        Request(_str("the request method", method), _str("the request scheme", scheme),
                _str("the request host", host), _int("the request port", port, 65535),
                _str("the request path", path), _str("the request query", query),
                _headers("the request headers", qh), _bytes("the request body", qbody),
                _str("the request HTTP version", qver)),
        Response(_int("the response status", status, 999), _str("the response reason", reason),
                 _headers("the response headers", rh), _bytes("the response body", rbody),
                 _str("the response HTTP version", rver),
                 _headers("the trailers", x["trailers"]) if "trailers" in x else ()),
        _float("the recording time", recorded_at),
        _float("the time to first byte", ttfb),
        _float("the duration", duration),
        _chunks(x["chunks"], len(rbody)) if "chunks" in x else (),
        _str("the cut", x["cut"]) if "cut" in x else "",
        _websocket(x["websocket"]) if "websocket" in x else None,
    )


def _chunks(raw: Any, body_length: int) -> tuple[tuple[float, int], ...]:
    if type(raw) not in (tuple, list):
        raise _bad("the chunks should be a list but", raw)
    out = tuple((_float("a chunk's time", t), _int("a chunk's length", n, 2**63))
                for t, n in (_shape("a chunk", c, 2) for c in raw))
    if sum(n for _, n in out) != body_length:
        raise ValueError(f"the chunks add up to {sum(n for _, n in out)} bytes but the body "
                         f"has {body_length}")
    return out


def _websocket(raw: Any) -> WebSocketLog:
    messages, code, reason, closed_by = _shape("the WebSocket record", raw, 4)
    if type(messages) not in (tuple, list):
        raise _bad("the WebSocket messages should be a list but", messages)
    if code is not None:
        _int("the WebSocket close code", code, 4999)
    if closed_by not in ("client", "server", ""):
        raise _bad("the WebSocket closer should be client, server or empty but", closed_by)
    out = []
    for m in messages:
        from_client, is_text, at, content = _shape("a WebSocket message", m, 4)
        if type(from_client) is not bool or type(is_text) is not bool:
            raise _bad("a WebSocket message's direction and type should be true/false but",
                       (from_client, is_text))
        out.append(WebSocketMessage(from_client, _bytes("a WebSocket message", content),
                                    is_text, _float("a WebSocket message's time", at)))
    return WebSocketLog(tuple(out), code, _str("the WebSocket close reason", reason), closed_by)


def _header(entries: Sequence[RawEntry]) -> dict[str, Any]:
    # keys in sorted order so the bytes never depend on dict construction order
    used = features(entries)
    if not used:
        return {"format": CASSETTE_FORMAT, "interactions": len(entries), "version": 1}
    return {"features": used, "format": CASSETTE_FORMAT, "interactions": len(entries),
            "version": 2}


def dumps(entries: Sequence[RawEntry]) -> bytes:
    """Return the bytes of a cassette holding ``entries`` (stable for equal input): format
    version 1 when none of them needs version 2."""
    return msgpack.packb(_header(entries), use_bin_type=True) + msgpack.packb(
        list(entries), use_bin_type=True
    )


def header_bytes(entries: Sequence[RawEntry]) -> bytes:
    """What comes before the packed entries in ``dumps(entries)``: the header and the
    list's length (the entries can then be written one by one, from where they are)."""
    return msgpack.packb(_header(entries), use_bin_type=True) + \
        msgpack.Packer().pack_array_header(len(entries))


class _Malformed(Exception):
    """What is wrong with the interactions of a file (the caller names the file)."""


_TEXT, _BYTES, _ARRAY, _MAP = 1, 2, 3, 4
_KIND = bytes(
    _TEXT if 0xa0 <= b <= 0xbf or b in (0xd9, 0xda, 0xdb)
    else _BYTES if b in (0xc4, 0xc5, 0xc6)
    else _ARRAY if 0x90 <= b <= 0x9f or b in (0xdc, 0xdd)
    else _MAP if 0x80 <= b <= 0x8f or b in (0xde, 0xdf)
    else 0
    for b in range(256))
"""The kind of msgpack object each first byte starts (text, bytes, array, or other)."""


WINDOW = 8 << 20
"""How many bytes of a cassette the indexer unpacks at a time (a response body longer
than what is left of the window is stepped over, never read: see ``Window``)."""


class Window:
    """An ``Unpacker`` fed ``size`` bytes of ``source`` from offset ``base``: the file is
    walked a window at a time, so indexing a cassette holding a 200 MB body copies a few
    megabytes, not the file (``source`` may be an ``mmap``, whose untouched pages are
    never read)."""

    __slots__ = ("base", "end", "unpacker", "view")

    def __init__(self, source: bytes | mmap.mmap, base: int = 0, size: int = WINDOW) -> None:
        self.view = memoryview(source)
        self.base = self.end = 0
        self.unpacker = msgpack.Unpacker()
        self.move(base, size)

    def move(self, base: int, size: int) -> msgpack.Unpacker:
        """Start unpacking afresh at ``base`` (an object's first byte)."""
        end = min(len(self.view), base + size)
        unpacker = msgpack.Unpacker(raw=False, use_list=False,
                                    max_buffer_size=max(end - base, 1))
        unpacker.feed(self.view[base:end])
        self.unpacker, self.base, self.end = unpacker, base, end
        return unpacker

    def tell(self) -> int:
        """The offset in ``source`` of the next object."""
        return self.base + self.unpacker.tell()

    @property
    def whole(self) -> bool:
        """Whether the window reaches the end of ``source``."""
        return self.end >= len(self.view)


def _index_v1(window: Window) -> tuple[list[int], list[Any]]:
    """Walk a version-1 interaction list (see ``_index``)."""
    return _index(window, extras=False)


def _index_v2(window: Window) -> tuple[list[int], list[Any]]:
    """Walk a version-2 interaction list (see ``_index``): an entry may end with its map
    of extras, skipped here (``decode_interaction_v2`` checks it when the entry is read)."""
    return _index(window, extras=True)


def _index(window: Window, *, extras: bool) -> tuple[list[int], list[Any]]:
    """Walk a version-1 interaction list: each entry's offset (and the end's), and the
    ``(method, scheme, host, port, path)`` of each request.

    Every field's type is checked here, at load, as ``decode_interaction`` checks it,
    except what needs the bulky parts unpacked: the pairs inside the header lists and
    the bytes of the response body are only looked at by their first byte (a list, a
    ``bin``) and skipped unread; ``decode_interaction`` checks the rest when the
    interaction is served or shown. A response body the window does not hold is stepped
    over; an entry the window ends inside is walked again from a window starting at its
    first byte (twice as big if it did already).
    """
    offsets: list[int] = []
    fields: list[Any] = []
    try:
        count = window.unpacker.read_array_header()
    except msgpack.OutOfData:
        raise
    except Exception:
        raise _Malformed("the interaction list is missing") from None
    intern, view, kind, isfinite = sys.intern, window.view, _KIND, math.isfinite
    add_offset, add_fields = offsets.append, fields.append
    sizes = "5- or 6" if extras else "5"
    u = window.unpacker
    base, end = window.base, window.end
    array, unpack, skip, tell = u.read_array_header, u.unpack, u.skip, u.tell
    for i in range(count):
        start, size = base + tell(), WINDOW
        while True:
            try:
                length = array()
                if length != 5 and not (extras and length == 6):
                    raise _Malformed(f"interaction #{i + 1} is not a {sizes}-element array")
                if array() != 9:
                    raise _Malformed(f"interaction #{i + 1} has a malformed request "
                                     "(not a 9-element array)")
                method, scheme, host, port, path, query = (unpack(), unpack(), unpack(),
                                                           unpack(), unpack(), unpack())
                if not (type(method) is str and type(scheme) is str and type(host) is str
                        and type(port) is int and 0 <= port <= 65535
                        and type(path) is str and type(query) is str):
                    why = _first_bad(_REQUEST_FIELDS, (method, scheme, host, port, path, query))
                    raise _Malformed(f"interaction #{i + 1} has a malformed request ({why})")
                if kind[view[base + tell()]] != _ARRAY:
                    raise _Malformed(f"interaction #{i + 1} has malformed request headers "
                                     "(not a list)")
                skip()
                body, version = unpack(), unpack()
                if type(body) is not bytes or type(version) is not str:
                    raise _Malformed(f"interaction #{i + 1} has a malformed request "
                                     f"({_first_bad(_REQUEST_TAIL, (body, version))})")
                if array() != 5:
                    raise _Malformed(f"interaction #{i + 1} has a malformed response "
                                     "(not a 5-element array)")
                status, reason = unpack(), unpack()
                if kind[view[base + tell()]] != _ARRAY:
                    raise _Malformed(f"interaction #{i + 1} has malformed response headers "
                                     "(not a list)")
                skip()
                at = base + tell()
                first = view[at]
                if kind[first] != _BYTES:
                    raise _Malformed(f"interaction #{i + 1} has a malformed response body "
                                     "(not bytes)")
                head = _SIZED[first][0]
                after = at + 1 + head + _length(view, at + 1, head)
                if end < after <= len(view):  # step over a body the window does not hold
                    u = window.move(after, size)
                    base, end = window.base, window.end
                    array, unpack, skip, tell = u.read_array_header, u.unpack, u.skip, u.tell
                else:
                    skip()
                version = unpack()
                if not (type(status) is int and 0 <= status <= 999 and type(reason) is str
                        and type(version) is str):
                    raise _Malformed(
                        f"interaction #{i + 1} has a malformed response "
                        f"({_first_bad(_RESPONSE_FIELDS, (status, reason, version))})")
                recorded_at, ttfb, duration = unpack(), unpack(), unpack()
                if not (type(recorded_at) is float and type(ttfb) is float
                        and type(duration) is float and isfinite(recorded_at)
                        and isfinite(ttfb) and isfinite(duration)):
                    raise _Malformed(f"interaction #{i + 1} has malformed timings "
                                     f"({_first_bad(_TIMINGS, (recorded_at, ttfb, duration))})")
                if length == 6:
                    if kind[view[base + tell()]] != _MAP:
                        raise _Malformed(f"interaction #{i + 1} has malformed extras "
                                         "(not a map)")
                    skip()
                break
            except msgpack.OutOfData:
                if window.whole:
                    raise
                size = size * 2 if base == start else size
                u = window.move(start, size)
                base, end = window.base, window.end
                array, unpack, skip, tell = u.read_array_header, u.unpack, u.skip, u.tell
        add_offset(start)
        add_fields((intern(method), intern(scheme), intern(host), port, path))
    add_offset(base + tell())
    window.unpacker = u
    return offsets, fields


_REQUEST_FIELDS = (("method", _str), ("scheme", _str), ("host", _str),
                   ("port", lambda w, v: _int(w, v, 65535)), ("path", _str), ("query", _str))
_REQUEST_TAIL = (("body", _bytes), ("HTTP version", _str))
_RESPONSE_FIELDS = (("status", lambda w, v: _int(w, v, 999)), ("reason", _str),
                    ("HTTP version", _str))
_TIMINGS = (("recording time", _float), ("time to first byte", _float), ("duration", _float))


def _first_bad(checks: Sequence[tuple[str, Callable[[str, Any], Any]]],
               values: Sequence[Any]) -> str:
    """What is wrong with the first of ``values`` its check refuses."""
    for (name, check), value in zip(checks, values, strict=True):
        try:
            check(f"the {name}", value)
        except ValueError as e:
            return str(e)
    return "a wrong type"


# -- readers by version ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reader:
    """How to read one format version."""

    version: int
    index: Callable[[Window], tuple[list[int], list[Any]]]
    """Walk the interactions after the header (from the window's position): the offset
    of each entry plus the end offset, and each request's ``(method, scheme, host, port,
    path)``. Raises ``msgpack.OutOfData`` or ``IndexError`` at the end of the data."""
    decode: Callable[[RawEntry], Interaction]
    """One stored entry to an Interaction; raises ValueError if it is malformed."""


READERS: dict[int, Reader] = {1: Reader(1, _index_v1, decode_interaction),
                              2: Reader(2, _index_v2, decode_interaction_v2)}
"""The format versions this replayproxy reads, by the number in the header."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the interactions of a cassette's bytes are (see ``read_cassette``)."""

    reader: Reader
    offsets: list[int]
    fields: list[Any]
    features: tuple[str, ...] = ()
    """What the header says the file uses beyond version 1 (see ``features``)."""


@contextlib.contextmanager
def without_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: building a million small objects would
    otherwise trigger dozens of full collections that free nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to about ``limit`` characters for a message (``…`` and the length)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def corrupt_error(path: Path, why: str) -> CassetteError:
    """The error for a damaged file: what is wrong, and how to get a good one back."""
    if path.name.endswith(".journal"):
        return CassetteError(
            f"journal {path} is corrupt or truncated ({why}): the interrupted recording it "
            f"held cannot be recovered; delete it (rm {path}) and record again")
    return CassetteError(
        f"cassette file {path} is corrupt or truncated ({why}): restore it from version "
        f"control (git checkout -- {path}) or delete it and record again"
    )


def read_header(unpacker: msgpack.Unpacker, path: Path,
                expected: str = CASSETTE_FORMAT) -> tuple[dict[str, Any], Reader]:
    """Read the header of a cassette (or journal) file and pick the reader of its version.

    Raises:
        CassetteError: the header is missing or garbage, of another format, or of a
            version this replayproxy cannot read; the message names the file.
    """
    try:
        header = unpacker.unpack()
    except msgpack.OutOfData:
        raise corrupt_error(path, "the file is empty or ends inside its header") from None
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise corrupt_error(path, f"unreadable header: {type(e).__name__}") from None
    if not isinstance(header, dict) or header.get("format") != expected:
        raise CassetteError(
            f"{path} is not a replayproxy {expected.split('-')[1]} file (no "
            f"{expected!r} header): pass the right {{cassette_dir}} or cassette name"
        )
    version = header.get("version")
    if type(version) is not int or version < 1:
        raise corrupt_error(path, f"invalid format version {shorten(repr(version))}")
    newest = max(READERS)
    if version > newest:
        raise CassetteError(
            f"{path} uses format version {version}, newer than this replayproxy reads "
            f"(up to {newest}): upgrade replayproxy (pip install -U replayproxy)"
        )
    if version not in READERS:
        raise corrupt_error(path, f"unknown format version {version}")
    return header, READERS[version]


def read_cassette(data: bytes | mmap.mmap, path: Path) -> Layout:
    """Read the header of a cassette's bytes (or of a map of its file) and index its
    interactions, a window at a time (see ``Window``).

    Raises:
        CassetteError: naming ``path``: not a cassette, corrupt or truncated, or of a
            newer format version.
    """
    window = Window(data)
    header, reader = read_header(window.unpacker, path)
    with without_gc():
        try:
            offsets, fields = reader.index(window)
        except (msgpack.OutOfData, IndexError):
            raise corrupt_error(path, "the file ends before its last interaction") from None
        except _Malformed as e:
            raise corrupt_error(path, str(e)) from None
        except Exception as e:  # msgpack raises several unrelated types on garbage
            raise corrupt_error(path, f"undecodable interactions: {type(e).__name__}") from None
    if header.get("interactions") != len(fields):
        count = shorten(repr(header.get("interactions")))
        raise corrupt_error(path, f"header says {count} interactions, "
                                  f"file has {len(fields)}")
    if window.tell() != len(data):
        raise corrupt_error(path, "unexpected data after the interactions")
    used = header.get("features", ())
    if type(used) is not tuple or not all(type(f) is str for f in used):
        raise corrupt_error(path, f"the header's features are {shorten(repr(used))}")
    return Layout(reader, offsets, fields, used)


# -- a response body left in place --------------------------------------------------

_FIXED = {0xc0: 1, 0xc2: 1, 0xc3: 1, 0xca: 5, 0xcb: 9, 0xcc: 2, 0xcd: 3, 0xce: 5, 0xcf: 9,
          0xd0: 2, 0xd1: 3, 0xd2: 5, 0xd3: 9, 0xd4: 3, 0xd5: 4, 0xd6: 6, 0xd7: 10, 0xd8: 18}
"""Sizes of the msgpack objects whose first byte gives their whole size."""
_SIZED = {0xc4: (1, 0), 0xc5: (2, 0), 0xc6: (4, 0), 0xd9: (1, 0), 0xda: (2, 0),
          0xdb: (4, 0), 0xc7: (1, 1), 0xc8: (2, 1), 0xc9: (4, 1)}
"""bin, str and ext objects: the bytes of their length field, and of an ext's type."""


def _length(buf: memoryview, at: int, size: int) -> int:
    if at + size > len(buf):
        raise IndexError(at + size)
    return int.from_bytes(buf[at:at + size], "big")


def _skip(buf: memoryview, pos: int) -> int:
    """The offset after the msgpack object at ``pos`` (read in place, nothing copied)."""
    b = buf[pos]
    if b <= 0x7f or b >= 0xe0:
        return pos + 1
    if b in _FIXED:
        return pos + _FIXED[b]
    if 0xa0 <= b <= 0xbf:
        return pos + 1 + (b & 0x1f)
    if b in _SIZED:
        size, ext = _SIZED[b]
        return pos + 1 + size + ext + _length(buf, pos + 1, size)
    if 0x90 <= b <= 0x9f or 0x80 <= b <= 0x8f:
        count, pos = (b & 0x0f) * (2 if b <= 0x8f else 1), pos + 1
    elif b in (0xdc, 0xde):
        count, pos = _length(buf, pos + 1, 2) * (2 if b == 0xde else 1), pos + 3
    elif b in (0xdd, 0xdf):
        count, pos = _length(buf, pos + 1, 4) * (2 if b == 0xdf else 1), pos + 5
    else:
        raise ValueError(f"not a msgpack object (first byte {b:#04x})")
    for _ in range(count):
        pos = _skip(buf, pos)
    return pos


def body_span(entry: memoryview) -> tuple[int, int, int]:
    """Where the response body is in the bytes of one stored entry: the offset of its
    ``bin`` header, of its first byte, and after its last byte. Nothing is copied.

    Raises:
        ValueError: the entry is not laid out as ``encode_interaction`` writes it.
    """
    if not 0x95 <= entry[0] <= 0x96:
        raise ValueError("not a 5- or 6-element interaction")
    pos = _skip(entry, 1)  # the request
    if entry[pos] != 0x95:
        raise ValueError("not a 5-element response")
    pos += 1
    for _ in range(3):  # status, reason, headers
        pos = _skip(entry, pos)
    kind = entry[pos]
    if kind not in (0xc4, 0xc5, 0xc6):
        raise ValueError("the response body is not bytes")
    size = _SIZED[kind][0]
    start = pos + 1 + size
    return pos, start, start + _length(entry, pos + 1, size)


def pack_around(it: Interaction, size: int) -> tuple[bytes, bytes]:
    """What comes before and after a response body of ``size`` bytes in the packed entry
    of ``it`` (whose own response body is ignored): written with the body between them
    they are exactly ``packb(encode_interaction(it))``, without the whole entry ever being
    one more copy of a big body in memory, and the body may come from a file."""
    stub = msgpack.packb(encode_interaction(dataclasses.replace(
        it, response=dataclasses.replace(it.response, body=b""))), use_bin_type=True)
    head, start, _ = body_span(memoryview(stub))
    return stub[:head] + bin_header(size), stub[start:]


MAX_BODY = (1 << 32) - 1
"""The longest body a cassette holds (msgpack's ``bin 32``)."""


def bin_header(size: int) -> bytes:
    """The msgpack header of ``size`` bytes (``bin 8``, ``16`` or ``32``)."""
    if size < 1 << 8:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def unpack_without_body(reader: Reader, entry: memoryview, head: int, end: int
                        ) -> tuple[RawEntry, Interaction]:
    """Entry ``entry`` (its packed bytes) unpacked with its response body, whose ``bin``
    runs from ``head`` to ``end`` (see ``body_span``), left out and never copied; and
    decoded, checked as ``decode_without_body`` checks it.

    Raises:
        ValueError: the entry is malformed.
    """
    length = end - (head + 1 + _SIZED[entry[head]][0])
    try:
        stripped = unpack_entry(bytes(entry[:head]) + b"\xc4\x00" + bytes(entry[end:]))
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise ValueError(f"undecodable ({type(e).__name__})") from None
    return stripped, decode_without_body(reader, stripped, length)


def decode_without_body(reader: Reader, raw: RawEntry, body_length: int) -> Interaction:
    """Decode an entry whose response body was taken out (replaced by an empty one),
    checked as ``reader.decode`` checks it, its chunks against ``body_length``."""
    extras = raw[5] if len(raw) == 6 and type(raw[5]) is dict else None
    chunks = extras.get("chunks") if extras is not None else None
    if extras is not None and chunks is not None:
        raw = (*raw[:5], {k: v for k, v in extras.items() if k != "chunks"})
    it = reader.decode(raw)
    return dataclasses.replace(it, chunks=_chunks(chunks, body_length)) \
        if chunks is not None else it


_HASH_STEP = 16 << 20

LEAN_MARK = b"\x00replayproxy: a body left in its file, sha256 "
"""How the stand-in for a big body starts in ``comparable`` (its digest follows)."""


def comparable(reader: Reader, entry: memoryview, above: int) -> RawEntry:
    """Entry ``entry`` (its packed bytes) unpacked and checked as ``reader.decode`` checks
    it, for comparing with others: a response body longer than ``above`` is never
    copied out, its stand-in (``LEAN_MARK`` and its SHA-256) is compared instead.
    Such a stand-in is for comparing only, never for writing.

    Raises:
        ValueError: the entry is malformed (or not one msgpack object).
    """
    try:
        head, start, end = body_span(entry)
    except (ValueError, IndexError):  # not as written: the decoder says what is wrong
        head = start = end = 0
    if end - start <= above:
        try:
            raw = unpack_entry(entry)
        except Exception as e:  # msgpack raises several unrelated types on garbage
            raise ValueError(f"undecodable ({type(e).__name__})") from None
        reader.decode(raw)
        return raw
    q, r, *rest = unpack_without_body(reader, entry, head, end)[0]
    digest = hashlib.sha256()
    for at in range(start, end, _HASH_STEP):  # a map's pages let go of as they are read
        digest.update(entry[at:min(at + _HASH_STEP, end)])
        release_pages(entry)
    stand_in = LEAN_MARK + digest.digest()
    return (q, (*r[:3], stand_in, *r[4:]), *rest)


def release_pages(view: memoryview | None) -> None:
    """Let go of the pages this process has read from the mapped cassette file ``view``
    is part of (a big body served from ``CassetteFile.lean``): they stay in the page
    cache and are read from it again when needed, but no longer count in this process's
    memory. Nothing for bytes in memory."""
    mapped = view.obj if view is not None else None
    if isinstance(mapped, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        with contextlib.suppress(OSError, ValueError):
            mapped.madvise(mmap.MADV_DONTNEED)


def entry_bytes(view: memoryview, start: int) -> int:
    """The end of the packed entry starting at ``start`` in ``view``, found without
    unpacking it (a body is stepped over by its length).

    Raises:
        IndexError: ``view`` ends inside the entry.
        ValueError: garbage at ``start``.
    """
    end = _skip(view, start)
    if end > len(view):
        raise IndexError(end)
    return end


def unpack_entry(data: bytes | memoryview) -> RawEntry:
    """Unpack one stored entry (the bytes between two of a ``Layout``'s offsets)."""
    entry: RawEntry = msgpack.unpackb(data, raw=False, use_list=False)
    return entry
