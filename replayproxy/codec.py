"""Content-Encoding: undo gzip, deflate, br and zstd on stored (wire) bodies.

Decoding is bounded: ``decoded_pieces`` gives a body's decoded bytes a piece of at most
about a megabyte at a time however well they were compressed, and ``decode_body``
refuses (None, as for a body it cannot decode) one that would grow beyond
``DECODED_AT_MOST``: a compressed "bomb" from an upstream or a client never takes the
proxy's memory. ``decoded_over`` says, without keeping them, whether the decoded bytes
exceed a size (a big body is then redacted a window at a time, see ``redaction.big``).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from typing import IO

from replayproxy.model import Headers, header_value

__all__ = ["DECODED_AT_MOST", "DECODINGS", "content_encodings", "decode_body",
           "decoded_over", "decoded_pieces"]

DECODED_AT_MOST = 64 << 20
"""The most bytes ``decode_body`` decodes a body to (bytes; beyond, it answers None)."""
DECODINGS = ("", "identity", "gzip", "x-gzip", "deflate", "br", "zstd")
"""The Content-Encodings ``decoded_pieces`` undoes."""
_PIECE = 1 << 20


def _is_zlib(head: bytes) -> bool:
    """Whether a ``deflate`` body starts with a zlib header (else it is raw deflate, as
    some servers send)."""
    return len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


def decoded_pieces(source: IO[bytes], encoding: str, piece: int = _PIECE) -> Iterator[bytes]:
    """The bytes read from ``source`` with ``encoding`` (one of ``DECODINGS``) undone, in
    pieces of at most about ``piece`` bytes (brotli's decoder takes no output limit: its
    input is fed 16 KiB at a time).

    Raises:
        ValueError: an unknown encoding, or a stream that is truncated or not what it says
            (zlib, brotli and zstd errors are ValueErrors too, or subclasses of Exception
            the caller treats as "cannot decode").
    """
    if encoding in ("", "identity"):
        while chunk := source.read(piece):
            yield chunk
    elif encoding in ("gzip", "x-gzip", "deflate"):
        first = source.read(piece)
        wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else \
            zlib.MAX_WBITS if _is_zlib(first) else -zlib.MAX_WBITS
        d = zlib.decompressobj(wbits)
        chunk = first
        while chunk:
            data = chunk
            while data:
                out = d.decompress(data, piece)
                if out:
                    yield out
                data = d.unconsumed_tail
            chunk = source.read(piece)
        rest = d.flush()
        if rest:
            yield rest
        if not d.eof:
            raise ValueError("the compressed stream is truncated")
    elif encoding == "br":
        import brotli  # a mitmproxy dependency

        b = brotli.Decompressor()
        while chunk := source.read(1 << 14):
            out = bytes(b.process(chunk))
            if out:
                yield out
        if not b.is_finished():
            raise ValueError("the brotli stream is truncated")
    elif encoding == "zstd":
        import zstandard  # a mitmproxy dependency

        with zstandard.ZstdDecompressor().stream_reader(source, closefd=False) as z:
            while out := z.read(piece):
                yield out
    else:
        raise ValueError(f"unknown content-encoding {encoding!r}")


def content_encodings(headers: Headers) -> list[str]:
    """The codings named by Content-Encoding, in the order they were applied."""
    value = header_value(headers, "content-encoding") or ""
    return [e.strip().lower() for e in value.split(",") if e.strip()]


def _decode_one(data: bytes, encoding: str, limit: int) -> bytes:
    out = bytearray()
    for piece in decoded_pieces(io.BytesIO(data), encoding):
        out += piece
        if len(out) > limit:
            raise ValueError(f"decodes to more than {limit} bytes")
    return bytes(out)


def decode_body(body: bytes, headers: Headers, limit: int = DECODED_AT_MOST) -> bytes | None:
    """Undo the body's Content-Encoding; None if it cannot be decoded, or would decode to
    more than ``limit`` bytes."""
    encodings = content_encodings(headers)
    try:
        for encoding in reversed(encodings):
            body = _decode_one(body, encoding, limit)
    except Exception:
        return None
    return body


def decoded_over(body: bytes, headers: Headers, size: int) -> bool:
    """Whether ``body`` (one Content-Encoding at most) decodes to more than ``size``
    bytes; counted piece by piece, nothing kept. False when it cannot be decoded."""
    encodings = content_encodings(headers)
    if len(encodings) != 1 or encodings[0] not in DECODINGS:
        return False
    total = 0
    try:
        for piece in decoded_pieces(io.BytesIO(body), encodings[0]):
            total += len(piece)
            if total > size:
                return True
    except Exception:
        return False
    return False
