"""Content-Encoding: undo gzip, deflate, br and zstd on stored (wire) bodies."""

from __future__ import annotations

import zlib

from replayproxy.model import Headers, header_value

__all__ = ["content_encodings", "decode_body"]


def _decode_one(data: bytes, encoding: str) -> bytes:
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        try:
            return zlib.decompress(data)
        except zlib.error:
            return zlib.decompress(data, -zlib.MAX_WBITS)  # raw deflate, as some servers send
    if encoding == "br":
        import brotli  # a mitmproxy dependency

        return bytes(brotli.decompress(data))
    if encoding == "zstd":
        import zstandard  # a mitmproxy dependency

        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(data))
    if encoding in ("identity", ""):
        return data
    raise ValueError(f"unknown content-encoding {encoding!r}")


def content_encodings(headers: Headers) -> list[str]:
    """The codings named by Content-Encoding, in the order they were applied."""
    value = header_value(headers, "content-encoding") or ""
    return [e.strip().lower() for e in value.split(",") if e.strip()]


def decode_body(body: bytes, headers: Headers) -> bytes | None:
    """Undo the body's Content-Encoding; None if it cannot be decoded."""
    encodings = content_encodings(headers)
    try:
        for encoding in reversed(encodings):
            body = _decode_one(body, encoding)
    except Exception:
        return None
    return body
