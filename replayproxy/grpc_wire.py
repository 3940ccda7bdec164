"""gRPC on the wire: length-prefixed messages, status codes, and reading messages with a
protobuf descriptor set. Engine-neutral: bytes and headers in, values and text out.

A gRPC call is an HTTP/2 POST to ``/package.Service/Method`` with ``Content-Type:
application/grpc``. Each message in the request and response bodies is framed as one
byte (1: compressed), a 4-byte big-endian length, then that many bytes (protobuf,
usually). The call's status comes last, in the trailers ``grpc-status`` (a number,
``0`` is OK) and ``grpc-message`` (percent-encoded text).

Reading messages as protobuf needs the service's descriptors: a ``FileDescriptorSet``
file, as ``protoc --descriptor_set_out=FILE --include_imports`` (or ``python -m
grpc_tools.protoc``) writes. ``Descriptors`` loads one with the ``protobuf`` package,
imported only then (``pip install 'replayproxy[grpc]'``).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from replayproxy.errors import ConfigError
from replayproxy.model import Headers, header_value

__all__ = [
    "STATUS_NAMES",
    "Descriptors",
    "Frame",
    "frames_view",
    "inflate",
    "is_grpc",
    "message_coding",
    "parse_frames",
    "message_text",
    "render_frames",
    "rewrite_frames",
    "status_code",
    "status_of",
    "status_trailers",
]

STATUS_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
)
"""gRPC status names by code (0 to 16)."""

_HEAD = struct.Struct(">?I")
_MAX_SHOWN = 32
"""Messages shown of one body (a long stream says how many more)."""


def is_grpc(headers: Headers) -> bool:
    """Whether a message with these headers carries gRPC messages."""
    ctype = (header_value(headers, "content-type") or "").lower()
    return ctype.startswith("application/grpc")


def status_code(text: str) -> int:
    """A gRPC status from its number or name (``14``, ``UNAVAILABLE``, ``unavailable``).

    Raises:
        ValueError: neither; the message lists the names.
    """
    value = text.strip()
    if value.isdigit() and int(value) < len(STATUS_NAMES):
        return int(value)
    if value.upper() in STATUS_NAMES:
        return STATUS_NAMES.index(value.upper())
    raise ValueError(f"unknown gRPC status {text!r}; use a number from 0 to 16 or a name: "
                     f"{', '.join(STATUS_NAMES[1:])}")


def status_trailers(code: int, message: str = "") -> Headers:
    """The trailers of a call ending with ``code`` (``grpc-message`` percent-encoded)."""
    trailers: Headers = (("grpc-status", str(code)),)
    if message:
        trailers += (("grpc-message", quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")),)
    return trailers


def status_of(headers: Iterable[tuple[str, str]]) -> str | None:
    """``14 UNAVAILABLE: try later`` from the headers or trailers holding the status."""
    pairs = tuple(headers)
    code = header_value(pairs, "grpc-status")
    if code is None:
        return None
    name = STATUS_NAMES[int(code)] if code.isdigit() and int(code) < len(STATUS_NAMES) else "?"
    message = unquote(header_value(pairs, "grpc-message") or "")
    return f"{code} {name}" + (f": {message}" if message else "")


@dataclass(frozen=True, slots=True)
class Frame:
    """One length-prefixed gRPC message."""

    compressed: bool
    payload: bytes

    def describe(self) -> str:
        """``uncompressed, 5 bytes: 0a03626f62``"""
        kind = "compressed" if self.compressed else "uncompressed"
        return f"{kind}, {len(self.payload)} bytes: {self.payload.hex()}"


def message_coding(headers: Headers) -> str:
    """How the messages of a gRPC body with ``headers`` are compressed when their flag
    says so (``grpc-encoding``: ``gzip``, ``deflate``, ``identity``...)."""
    return (header_value(headers, "grpc-encoding") or "identity").strip().lower()


def inflate(payload: bytes, coding: str) -> bytes | None:
    """A compressed message's bytes; None for a coding this replayproxy does not know
    (``snappy``...) or bytes that are not what it says."""
    try:
        if coding == "gzip":
            return gzip.decompress(payload)
        if coding == "deflate":
            return zlib.decompress(payload)
    except (OSError, EOFError, zlib.error):
        return None
    return None


def _compress(payload: bytes, coding: str) -> bytes:
    """``payload`` compressed as ``coding`` (one ``inflate`` knows), reproducibly."""
    return gzip.compress(payload, mtime=0) if coding == "gzip" else zlib.compress(payload)


def parse_frames(body: bytes) -> tuple[list[Frame], bytes]:
    """The messages framed in ``body``, and what is left that is no whole message (a
    stream cut short, or not gRPC at all: then everything is left)."""
    frames: list[Frame] = []
    at = 0
    while len(body) - at >= _HEAD.size:
        flag = body[at]
        if flag > 1:
            break
        length = _HEAD.unpack_from(body, at)[1]
        end = at + _HEAD.size + length
        if end > len(body):
            break
        frames.append(Frame(bool(flag), body[at + _HEAD.size:end]))
        at = end
    return frames, body[at:]


def frames_view(body: bytes) -> list[str] | None:
    """A gRPC body as compared by matching and shown by diagnostics (one entry per
    message), or None when it is not whole length-prefixed messages."""
    frames, rest = parse_frames(body)
    if rest:
        return None
    return [f.describe() for f in frames]


def render_frames(body: bytes, path: str, *, response: bool,
                  descriptors: Descriptors | None = None, coding: str = "identity") -> str:
    """The messages of a gRPC body for people: each as compressed flag, length and hex
    (a compressed one as it is, then decompressed, when its ``coding`` is known), and
    decoded when ``descriptors`` know the method at ``path``."""
    frames, rest = parse_frames(body)
    lines = []
    for i, f in enumerate(frames[:_MAX_SHOWN], 1):
        lines.append(f"message {i}: {f.describe()}")
        payload = inflate(f.payload, coding) if f.compressed else f.payload
        if f.compressed and payload is not None:
            lines.append(f"  {coding}-decompressed, {len(payload)} bytes: {payload.hex()}")
        if descriptors is not None and payload is not None:
            lines.append(f"  {descriptors.decode(path, payload, response=response)}")
    if len(frames) > _MAX_SHOWN:
        lines.append(f"… {len(frames) - _MAX_SHOWN} more messages")
    if rest:
        lines.append(f"{len(rest)} bytes that are no whole message: {rest[:64].hex()}"
                     + ("…" if len(rest) > 64 else ""))
    return "\n".join(lines) if lines else "(no messages)"


# -- rewriting messages (redaction) ---------------------------------------------------

_MAX_DEPTH = 16


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int] | None:
    value, shift = 0, 0
    while at < len(data) and shift < 64:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7
    return None


_FIXED = {1: 8, 5: 4}
"""Wire types of fixed size: 64-bit and 32-bit."""


def _fields(payload: bytes) -> list[tuple[bytes, bytes, bool]] | None:
    """A protobuf message as ``(key and any fixed part, value, length-delimited)`` per
    field, or None when ``payload`` is no valid message."""
    fields = []
    at = 0
    while at < len(payload):
        key = _read_varint(payload, at)
        if key is None or key[0] >> 3 == 0:
            return None
        tag, after = key
        wire = tag & 7
        if wire == 0:
            value = _read_varint(payload, after)
            if value is None:
                return None
            fields.append((payload[at:value[1]], b"", False))
            at = value[1]
        elif wire in _FIXED:
            end = after + _FIXED[wire]
            if end > len(payload):
                return None
            fields.append((payload[at:end], b"", False))
            at = end
        elif wire == 2:
            length = _read_varint(payload, after)
            if length is None or length[1] + length[0] > len(payload):
                return None
            end = length[1] + length[0]
            fields.append((payload[at:after], payload[length[1]:end], True))
            at = end
        else:
            return None
    return fields


def _rewrite_message(payload: bytes, replace: Callable[[bytes], bytes], depth: int) -> bytes:
    """``payload`` with ``replace`` applied to its strings and bytes, lengths fixed.

    A length-delimited field holding no secret stays as it is. One that does is walked as
    a nested message when it parses as one with length-delimited fields of its own and
    every occurrence lies inside those; otherwise it is a string, replaced whole.
    """
    fields = _fields(payload)
    if fields is None or depth > _MAX_DEPTH:
        return replace(payload)
    out = bytearray()
    for head, value, delimited in fields:
        if not delimited:
            out += head
            continue
        replaced = replace(value)
        if replaced != value:
            inner = _fields(value)
            if inner is not None and any(d for _, _, d in inner):
                nested = _rewrite_message(value, replace, depth + 1)
                if replace(nested) == nested:
                    replaced = nested
        out += head + _varint(len(replaced)) + replaced
    return bytes(out)


def _strings(payload: bytes, depth: int) -> Iterable[bytes]:
    """Every length-delimited value in a protobuf message, and those of the messages
    nested in it."""
    fields = _fields(payload)
    if fields is None or depth > _MAX_DEPTH:
        return
    for _, value, delimited in fields:
        if delimited:
            yield value
            yield from _strings(value, depth + 1)


def message_text(body: bytes, coding: str) -> bytes | None:
    """The strings in a gRPC body's messages (compressed ones decompressed), one per
    line, for finding secrets: in the framed bytes a string's length byte can read as a
    letter glued to it (``yAKIA…`` for 121 bytes), hiding a credential's shape. None
    when ``body`` is not whole length-prefixed messages."""
    frames, rest = parse_frames(body)
    if rest:
        return None
    lines: list[bytes] = []
    for f in frames:
        payload = inflate(f.payload, coding) if f.compressed else f.payload
        if payload is not None:
            lines.extend(_strings(payload, 0))
    return b"\n".join(lines)


def rewrite_frames(body: bytes, replace: Callable[[bytes], bytes],
                   coding: str = "identity") -> bytes | None:
    """A gRPC body with ``replace`` applied inside each message's strings, every length
    (the protobuf fields' and the frames') fixed. A compressed message is decompressed
    (``coding``, see ``message_coding``), rewritten and compressed again when something
    in it changed; one whose coding is unknown is kept as it is. None when ``body`` is
    not whole length-prefixed messages."""
    frames, rest = parse_frames(body)
    if rest:
        return None
    out = bytearray()
    for f in frames:
        payload = f.payload
        if not f.compressed:
            payload = _rewrite_message(payload, replace, 0)
        else:
            plain = inflate(payload, coding)
            rewritten = _rewrite_message(plain, replace, 0) if plain is not None else None
            if plain is not None and rewritten is not None and rewritten != plain:
                payload = _compress(rewritten, coding)
        out += _HEAD.pack(f.compressed, len(payload)) + payload
    return bytes(out)


class Descriptors:
    """The messages of the services in a protobuf ``FileDescriptorSet`` file.

    Raises:
        ConfigError: the file cannot be read, is not a descriptor set, or protobuf is not
            installed.
    """

    def __init__(self, path: Path) -> None:
        try:
            from google.protobuf import descriptor_pb2, descriptor_pool, message
        except ImportError:
            raise ConfigError("reading gRPC messages needs the protobuf package: pip install "
                              "'replayproxy[grpc]' (or protobuf)") from None
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read the descriptor set {path}: {e.strerror}; write "
                              "one with protoc --descriptor_set_out=FILE --include_imports "
                              "SERVICE.proto") from None
        fds = descriptor_pb2.FileDescriptorSet()
        self.pool = descriptor_pool.DescriptorPool()
        try:
            fds.ParseFromString(data)
            if not fds.file:
                raise ValueError("no files in it")
            for file in fds.file:
                self.pool.Add(file)
        except (message.DecodeError, ValueError, TypeError) as e:
            raise ConfigError(f"{path} is not a protobuf descriptor set ({e}): write one "
                              "with protoc --descriptor_set_out=FILE --include_imports "
                              "SERVICE.proto") from None

    def _message_type(self, path: str, response: bool) -> Any:
        service, _, method = path.strip("/").rpartition("/")
        try:
            found = self.pool.FindServiceByName(service).FindMethodByName(method)
        except KeyError:
            return None
        if found is None:
            return None
        return found.output_type if response else found.input_type

    def decode(self, path: str, payload: bytes, *, response: bool) -> str:
        """One message as protobuf text (``HelloReply {message: "hi"}``), or why not."""
        from google.protobuf import message, message_factory, text_format

        kind = self._message_type(path, response)
        if kind is None:
            return f"(the descriptor set has no method {path})"
        cls = message_factory.GetMessageClass(kind)
        try:
            decoded = cls.FromString(payload)
        except message.DecodeError:
            return f"(not a valid {kind.full_name})"
        text = text_format.MessageToString(decoded, as_one_line=True)
        return f"{kind.full_name} {{{text}}}" if text else f"{kind.full_name} {{}}"

