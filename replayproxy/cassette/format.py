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


def _headers(raw: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in raw)


def decode_interaction(raw: RawEntry) -> Interaction:
    """Return the Interaction stored as ``raw`` (format version 1).

    Raises:
        ValueError: ``raw`` is malformed.
    """
    try:
        q, r, recorded_at, ttfb, duration = raw
        method, scheme, host, port, path, query, qh, qbody, qver = q
        status, reason, rh, rbody, rver = r
        return Interaction(
            Request(method, scheme, host, int(port), path, query, _headers(qh), qbody, qver),
            Response(int(status), reason, _headers(rh), rbody, rver),
            float(recorded_at),
            float(ttfb),
            float(duration),
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"malformed interaction: {e}") from None


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


def _index_v1(unpacker: msgpack.Unpacker) -> tuple[list[int], list[Any]]:
    """Walk a version-1 interaction list: each entry's offset (and the end's), and the
    ``(method, scheme, host, port, path)`` of each request, the rest skipped unread."""
    offsets: list[int] = []
    fields: list[Any] = []
    intern = sys.intern
    try:
        count = unpacker.read_array_header()
    except msgpack.OutOfData:
        raise
    except Exception:
        raise _Malformed("the interaction list is missing") from None
    for i in range(count):
        offsets.append(unpacker.tell())
        if unpacker.read_array_header() != 5:
            raise _Malformed(f"interaction #{i + 1} is not a 5-element array")
        if unpacker.read_array_header() != 9:
            raise _Malformed(f"interaction #{i + 1} has a malformed request")
        method, scheme, host, port, path = (unpacker.unpack() for _ in range(5))
        if not (isinstance(method, str) and isinstance(scheme, str)
                and isinstance(host, str) and isinstance(port, int)
                and isinstance(path, str)):
            raise _Malformed(f"interaction #{i + 1} has a malformed request")
        fields.append((intern(method), intern(scheme), intern(host), port, path))
        for _ in range(8):  # query, headers, body, version; response, 3 timings
            unpacker.skip()
    offsets.append(unpacker.tell())
    return offsets, fields


# -- readers by version ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reader:
    """How to read one format version."""

    version: int
    index: Callable[[msgpack.Unpacker], tuple[list[int], list[Any]]]
    """Walk the interactions after the header: the offset of each entry plus the end
    offset, and each request's ``(method, scheme, host, port, path)``."""
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


def corrupt_error(path: Path, why: str) -> CassetteError:
    """The error for a damaged file: what is wrong, and how to get a good one back."""
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
    if not isinstance(version, int) or version < 1:
        raise corrupt_error(path, f"invalid format version {version!r}")
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
            offsets, fields = reader.index(unpacker)
        except msgpack.OutOfData:
            raise corrupt_error(path, "the file ends before its last interaction") from None
        except _Malformed as e:
            raise corrupt_error(path, str(e)) from None
        except Exception as e:  # msgpack raises several unrelated types on garbage
            raise corrupt_error(path, f"undecodable interactions: {type(e).__name__}") from None
    if header.get("interactions") != len(fields):
        raise corrupt_error(path, f"header says {header.get('interactions')} interactions, "
                                  f"file has {len(fields)}")
    if unpacker.tell() != len(data):
        raise corrupt_error(path, "unexpected data after the interactions")
    return Layout(reader, offsets, fields)


def unpack_entry(data: bytes | memoryview) -> RawEntry:
    """Unpack one stored entry (the bytes between two of a ``Layout``'s offsets)."""
    entry: RawEntry = msgpack.unpackb(data, raw=False, use_list=False)
    return entry
