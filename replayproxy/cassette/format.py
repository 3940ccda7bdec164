"""The cassette file format: msgpack bytes to interactions and back, a reader per version.

A cassette file is two msgpack objects one after the other:

1. a header map ``{"format": "replayproxy-cassette", "interactions": N, "version": V}``;
2. the interactions, laid out as format version ``V`` says.

The header is read first; its version picks the reader in ``READERS`` (version 1
today), which walks the interactions. A later version (streams, WebSocket messages)
adds a reader there and older files keep reading (a rewrite, which always writes
``FORMAT_VERSION``, then has to convert the entries an older reader returns: decode,
then encode). A version newer than any reader is refused with one line naming the
version and the fix (upgrade replayproxy); garbage is a ``CassetteError`` naming the
file, never another exception.

Version 1, the one written: an array of interactions, each an array (see
``encode_interaction``). Arrays rather than maps keep the file small and quick to
read; maps are written with sorted keys, so identical interactions always give
identical bytes (``dumps``). Journals (``replayproxy.cassette.journal``) use the same
header with the format ``replayproxy-journal``.
"""

from __future__ import annotations

import contextlib
import gc
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from replayproxy.errors import CassetteError
from replayproxy.model import Interaction, Request, Response

__all__ = [
    "CASSETTE_FORMAT",
    "FORMAT_VERSION",
    "JOURNAL_FORMAT",
    "READERS",
    "Layout",
    "RawEntry",
    "Reader",
    "corrupt_error",
    "decode_interaction",
    "dumps",
    "encode_interaction",
    "read_cassette",
    "read_header",
    "shorten",
    "unpack_entry",
    "without_gc",
]

FORMAT_VERSION = 1
"""The version this replayproxy writes."""
CASSETTE_FORMAT = "replayproxy-cassette"
JOURNAL_FORMAT = "replayproxy-journal"

RawEntry = tuple[Any, ...]
"""An interaction as stored, in its file's format version (see ``encode_interaction``)."""


# -- version 1 ------------------------------------------------------------------------


def encode_interaction(it: Interaction) -> RawEntry:
    """Return the stored form of ``it`` (format version 1).

    ``(request, response, recorded_at, ttfb, duration)`` where request is
    ``(method, scheme, host, port, path, query, headers, body, http_version)``,
    response is ``(status, reason, headers, body, http_version)`` and headers are
    ``((name, value), ...)``.
    """
    q, r = it.request, it.response
    return (
        (q.method, q.scheme, q.host, q.port, q.path, q.query, q.headers, q.body, q.http_version),
        (r.status, r.reason, r.headers, r.body, r.http_version),
        float(it.recorded_at),
        float(it.ttfb),
        float(it.duration),
    )


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
    method, scheme, host, port, path, query, qh, qbody, qver = _shape("the request", q, 9)
    status, reason, rh, rbody, rver = _shape("the response", r, 5)
    return Interaction(
        Request(_str("the request method", method), _str("the request scheme", scheme),
                _str("the request host", host), _int("the request port", port, 65535),
                _str("the request path", path), _str("the request query", query),
                _headers("the request headers", qh), _bytes("the request body", qbody),
                _str("the request HTTP version", qver)),
        Response(_int("the response status", status, 999), _str("the response reason", reason),
                 _headers("the response headers", rh), _bytes("the response body", rbody),
                 _str("the response HTTP version", rver)),
        _float("the recording time", recorded_at),
        _float("the time to first byte", ttfb),
        _float("the duration", duration),
    )


def _header(count: int) -> dict[str, Any]:
    # keys in sorted order so the bytes never depend on dict construction order
    return {"format": CASSETTE_FORMAT, "interactions": count, "version": FORMAT_VERSION}


def dumps(entries: Sequence[RawEntry]) -> bytes:
    """Return the bytes of a cassette holding ``entries`` (stable for equal input)."""
    return msgpack.packb(_header(len(entries)), use_bin_type=True) + msgpack.packb(
        list(entries), use_bin_type=True
    )


class _Malformed(Exception):
    """What is wrong with the interactions of a file (the caller names the file)."""


_TEXT, _BYTES, _ARRAY = 1, 2, 3
_KIND = bytes(
    _TEXT if 0xa0 <= b <= 0xbf or b in (0xd9, 0xda, 0xdb)
    else _BYTES if b in (0xc4, 0xc5, 0xc6)
    else _ARRAY if 0x90 <= b <= 0x9f or b in (0xdc, 0xdd)
    else 0
    for b in range(256))
"""The kind of msgpack object each first byte starts (text, bytes, array, or other)."""


def _index_v1(unpacker: msgpack.Unpacker, data: bytes) -> tuple[list[int], list[Any]]:
    """Walk a version-1 interaction list: each entry's offset (and the end's), and the
    ``(method, scheme, host, port, path)`` of each request.

    Every field's type is checked here, at load, as ``decode_interaction`` checks it,
    except what needs the bulky parts unpacked: the pairs inside the header lists and
    the bytes of the response body are only looked at by their first byte (a list, a
    ``bin``) and skipped unread; ``decode_interaction`` checks the rest when the
    interaction is served or shown.
    """
    offsets: list[int] = []
    fields: list[Any] = []
    intern = sys.intern
    try:
        count = unpacker.read_array_header()
    except msgpack.OutOfData:
        raise
    except Exception:
        raise _Malformed("the interaction list is missing") from None
    array, unpack, skip, tell = (unpacker.read_array_header, unpacker.unpack, unpacker.skip,
                                 unpacker.tell)
    kind, isfinite, add_offset, add_fields = _KIND, math.isfinite, offsets.append, fields.append
    for i in range(count):
        add_offset(tell())
        if array() != 5:
            raise _Malformed(f"interaction #{i + 1} is not a 5-element array")
        if array() != 9:
            raise _Malformed(f"interaction #{i + 1} has a malformed request "
                             "(not a 9-element array)")
        method, scheme, host, port, path, query = (unpack(), unpack(), unpack(), unpack(),
                                                   unpack(), unpack())
        if not (type(method) is str and type(scheme) is str and type(host) is str
                and type(port) is int and 0 <= port <= 65535
                and type(path) is str and type(query) is str):
            why = _first_bad(_REQUEST_FIELDS, (method, scheme, host, port, path, query))
            raise _Malformed(f"interaction #{i + 1} has a malformed request ({why})")
        if kind[data[tell()]] != _ARRAY:
            raise _Malformed(f"interaction #{i + 1} has malformed request headers (not a list)")
        skip()
        body, version = unpack(), unpack()
        if type(body) is not bytes or type(version) is not str:
            raise _Malformed(f"interaction #{i + 1} has a malformed request "
                             f"({_first_bad(_REQUEST_TAIL, (body, version))})")
        if array() != 5:
            raise _Malformed(f"interaction #{i + 1} has a malformed response "
                             "(not a 5-element array)")
        status, reason = unpack(), unpack()
        if kind[data[tell()]] != _ARRAY:
            raise _Malformed(f"interaction #{i + 1} has malformed response headers "
                             "(not a list)")
        skip()
        if kind[data[tell()]] != _BYTES:
            raise _Malformed(f"interaction #{i + 1} has a malformed response body "
                             "(not bytes)")
        skip()
        version = unpack()
        if not (type(status) is int and 0 <= status <= 999 and type(reason) is str
                and type(version) is str):
            raise _Malformed(f"interaction #{i + 1} has a malformed response "
                             f"({_first_bad(_RESPONSE_FIELDS, (status, reason, version))})")
        recorded_at, ttfb, duration = unpack(), unpack(), unpack()
        if not (type(recorded_at) is float and type(ttfb) is float
                and type(duration) is float and isfinite(recorded_at) and isfinite(ttfb)
                and isfinite(duration)):
            raise _Malformed(f"interaction #{i + 1} has malformed timings "
                             f"({_first_bad(_TIMINGS, (recorded_at, ttfb, duration))})")
        add_fields((intern(method), intern(scheme), intern(host), port, path))
    add_offset(tell())
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
    index: Callable[[msgpack.Unpacker, bytes], tuple[list[int], list[Any]]]
    """Walk the interactions after the header (the unpacker has been fed the file's bytes,
    given too, so a reader can look at an object's first byte before skipping it): the
    offset of each entry plus the end offset, and each request's ``(method, scheme, host,
    port, path)``. Raises ``msgpack.OutOfData`` or ``IndexError`` at the end of the data."""
    decode: Callable[[RawEntry], Interaction]
    """One stored entry to an Interaction; raises ValueError if it is malformed."""


READERS: dict[int, Reader] = {1: Reader(1, _index_v1, decode_interaction)}
"""The format versions this replayproxy reads, by the number in the header."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the interactions of a cassette's bytes are (see ``read_cassette``)."""

    reader: Reader
    offsets: list[int]
    fields: list[Any]


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


def read_cassette(data: bytes, path: Path) -> Layout:
    """Read the header of a cassette's bytes and index its interactions.

    Raises:
        CassetteError: naming ``path``: not a cassette, corrupt or truncated, or of a
            newer format version.
    """
    unpacker = msgpack.Unpacker(raw=False, use_list=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    header, reader = read_header(unpacker, path)
    with without_gc():
        try:
            offsets, fields = reader.index(unpacker, data)
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
    if unpacker.tell() != len(data):
        raise corrupt_error(path, "unexpected data after the interactions")
    return Layout(reader, offsets, fields)


def unpack_entry(data: bytes | memoryview) -> RawEntry:
    """Unpack one stored entry (the bytes between two of a ``Layout``'s offsets)."""
    entry: RawEntry = msgpack.unpackb(data, raw=False, use_list=False)
    return entry
