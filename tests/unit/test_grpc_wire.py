"""gRPC on the wire (issue 13): length-prefixed messages, status codes and trailers, the
``status,grpc=`` fault, matching and diagnostics on gRPC bodies, descriptor sets."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from replayproxy.cassette.store import CassetteFile
from replayproxy.errors import ConfigError
from replayproxy.faults.effects import Respond
from replayproxy.faults.spec import parse_fault
from replayproxy.grpc_wire import (
    Descriptors,
    Frame,
    frames_view,
    is_grpc,
    parse_frames,
    render_frames,
    status_code,
    status_of,
    status_trailers,
)
from replayproxy.matching.diagnostics import compare
from replayproxy.matching.index import ReplayIndex
from replayproxy.matching.rules import MatchRule
from replayproxy.model import Interaction, Request, Response

GRPC = (("content-type", "application/grpc"), ("te", "trailers"))


def frame(payload: bytes, compressed: bool = False) -> bytes:
    return struct.pack(">?I", compressed, len(payload)) + payload


def call(body: bytes, path: str = "/demo.Greeter/Hello") -> Request:
    return Request("POST", "https", "grpc.example.com", 443, path, headers=GRPC, body=body,
                   http_version="HTTP/2.0")


def test_frames_are_parsed_with_flag_and_length() -> None:
    body = frame(b"\x0a\x03bob") + frame(b"", compressed=False) + frame(b"zz", compressed=True)
    frames, rest = parse_frames(body)
    assert frames == [Frame(False, b"\x0a\x03bob"), Frame(False, b""), Frame(True, b"zz")]
    assert rest == b""
    assert frames[0].describe() == "uncompressed, 5 bytes: 0a03626f62"


@pytest.mark.parametrize("body", [b"\x00\x00\x00\x00\x09abc", b"\x00\x00", b"{\"json\": 1}",
                                  b"\x05\x00\x00\x00\x01a"])
def test_what_is_no_whole_message_is_left_over(body: bytes) -> None:
    frames, rest = parse_frames(body)
    assert frames == [] and rest == body
    assert frames_view(body) is None


def test_render_frames_shows_messages_and_leftover_bytes() -> None:
    text = render_frames(frame(b"\x08\x01") + b"\x00\x00", "/a.B/C", response=True)
    assert text.splitlines() == ["message 1: uncompressed, 2 bytes: 0801",
                                 "2 bytes that are no whole message: 0000"]
    assert render_frames(b"", "/a.B/C", response=False) == "(no messages)"


def test_is_grpc() -> None:
    assert is_grpc(GRPC)
    assert is_grpc((("Content-Type", "application/grpc+proto"),))
    assert not is_grpc((("content-type", "application/json"),))


def test_status_codes_by_number_and_name() -> None:
    assert status_code("14") == 14 == status_code("unavailable") == status_code("UNAVAILABLE")
    assert status_code("0") == 0
    with pytest.raises(ValueError, match="unknown gRPC status 'NOPE'.*UNAVAILABLE"):
        status_code("NOPE")
    with pytest.raises(ValueError):
        status_code("17")


def test_status_trailers_are_percent_encoded_and_read_back() -> None:
    trailers = status_trailers(14, "try later: 100% busy\n")
    assert trailers == (("grpc-status", "14"), ("grpc-message", "try later: 100%25 busy%0A"))
    assert status_of(trailers) == "14 UNAVAILABLE: try later: 100% busy\n"
    assert status_of((("grpc-status", "0"),)) == "0 OK"
    assert status_of((("x", "y"),)) is None


def test_grpc_status_fault() -> None:
    spec = parse_fault("status,grpc=UNAVAILABLE,body=try later@POST */demo.Greeter/*")
    assert spec.params == Respond(200, (("Content-Type", "application/grpc"),), b"",
                                  (("grpc-status", "14"), ("grpc-message", "try later")))
    assert parse_fault("status,grpc=5,code=200").params.trailers == (  # type: ignore[union-attr]
        ("grpc-status", "5"),)


@pytest.mark.parametrize(("spec", "needle"), [
    ("status,grpc=NOPE", "unknown gRPC status 'NOPE'"),
    ("status=503,grpc=14", "goes with HTTP status 200"),
    ("status,grpc=14,retry_after=2", "retry_after is for HTTP statuses"),
])
def test_bad_grpc_status_faults(spec: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_fault(spec)


def test_grpc_calls_match_on_path_and_message_bytes() -> None:
    hello = Interaction(call(frame(b"\x0a\x03bob")), Response(200, body=frame(b"\x0a\x01x")))
    other = Interaction(call(frame(b"\x0a\x03bob"), "/demo.Greeter/Bye"), Response(201))
    binary = Interaction(call(frame(bytes(range(256)))), Response(202))
    index = ReplayIndex(CassetteFile.from_interactions("g", [hello, other, binary]))
    served = index.match(call(frame(b"\x0a\x03bob")))
    assert served is not None and served.interaction.response.status == 200
    served = index.match(call(frame(bytes(range(256)))))
    assert served is not None and served.interaction.response.status == 202
    served = index.match(call(frame(b"\x0a\x03bob"), "/demo.Greeter/Bye"))
    assert served is not None and served.interaction.response.status == 201
    assert index.match(call(frame(b"\x0a\x03eve"))) is None


def test_a_differing_message_is_named_in_the_diagnosis() -> None:
    recorded = call(frame(b"\x08\x01") + frame(b"\x0a\x03bob"))
    received = call(frame(b"\x08\x01") + frame(b"\x0a\x03eve"))
    (diff,) = compare(recorded, received, MatchRule())
    assert (diff.field, diff.location) == ("body", "grpc message 2")
    assert diff.recorded == "uncompressed, 5 bytes: 0a03626f62"
    assert diff.received == "uncompressed, 5 bytes: 0a03657665"


def _descriptor_set(tmp_path: Path) -> Path:
    from google.protobuf import descriptor_pb2

    f = descriptor_pb2.FileDescriptorProto(name="demo.proto", package="demo", syntax="proto3")
    req = f.message_type.add(name="HelloRequest")
    req.field.add(name="name", number=1, type=9, label=1)  # string
    rep = f.message_type.add(name="CountReply")
    rep.field.add(name="i", number=1, type=5, label=1)  # int32
    svc = f.service.add(name="Greeter")
    svc.method.add(name="Count", input_type=".demo.HelloRequest", output_type=".demo.CountReply",
                   server_streaming=True)
    path = tmp_path / "demo.pb"
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=[f]).SerializeToString())
    return path


def test_descriptors_decode_request_and_response_messages(tmp_path: Path) -> None:
    d = Descriptors(_descriptor_set(tmp_path))
    assert d.decode("/demo.Greeter/Count", b"\x0a\x03bob", response=False) \
        == 'demo.HelloRequest {name: "bob"}'
    assert d.decode("/demo.Greeter/Count", b"\x08\x02", response=True) == "demo.CountReply {i: 2}"
    assert d.decode("/demo.Greeter/Nope", b"", response=True) \
        == "(the descriptor set has no method /demo.Greeter/Nope)"
    assert d.decode("/demo.Greeter/Count", b"\xff\xff", response=True) \
        == "(not a valid demo.CountReply)"
    text = render_frames(frame(b"\x08\x01") + frame(b"\x08\x02"), "/demo.Greeter/Count",
                         response=True, descriptors=d)
    assert text.splitlines() == ["message 1: uncompressed, 2 bytes: 0801",
                                 "  demo.CountReply {i: 1}",
                                 "message 2: uncompressed, 2 bytes: 0802",
                                 "  demo.CountReply {i: 2}"]


def test_bad_descriptor_sets_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the descriptor set .*missing.pb"):
        Descriptors(tmp_path / "missing.pb")
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\xff\xfe not protobuf")
    with pytest.raises(ConfigError, match="is not a protobuf descriptor set.*--descriptor_set_out"):
        Descriptors(junk)


def test_cassette_view_shows_frames_trailers_and_status(tmp_path: Path) -> None:
    from replayproxy.cassette.view import render_interaction

    it = Interaction(call(frame(b"\x0a\x03bob"), "/demo.Greeter/Count"),
                     Response(200, headers=(("content-type", "application/grpc"),),
                              body=frame(b"\x08\x01") + frame(b"\x08\x02"),
                              http_version="HTTP/2.0",
                              trailers=status_trailers(5, "no such thing")))
    plain = "\n".join(render_interaction(1, it)).splitlines()
    assert "  request body:" in plain
    assert "    message 1: uncompressed, 5 bytes: 0a03626f62" in plain
    assert "    message 2: uncompressed, 2 bytes: 0802" in plain
    assert plain[-4:] == ["  response trailers:", "    grpc-status: 5",
                          "    grpc-message: no such thing",
                          "  gRPC status: 5 NOT_FOUND: no such thing"]
    descriptors = Descriptors(_descriptor_set(tmp_path))
    decoded = "\n".join(render_interaction(1, it, descriptors=descriptors)).splitlines()
    assert '      demo.HelloRequest {name: "bob"}' in decoded
    assert "      demo.CountReply {i: 2}" in decoded


AWS = "AKIAIOSFODNN7EXAMPLE"


def _ld(field: int, value: bytes) -> bytes:
    return bytes([field << 3 | 2, len(value)]) + value


def test_redaction_inside_grpc_messages_keeps_every_length_right() -> None:
    """A secret in a protobuf string, in a nested message and echoed in the response:
    replaced, the protobuf lengths and the frame lengths fixed, the rest untouched."""
    from replayproxy.redaction.redactor import Redactor
    from replayproxy.redaction.scan import scan_interaction

    nested = _ld(1, b"user") + _ld(2, AWS.encode())
    request_message = _ld(1, b"login") + _ld(3, nested) + b"\x20\x07"  # + field 4 = 7
    body = frame(request_message) + frame(b"\x08\x01") + frame(b"zz", compressed=True)
    it = Interaction(call(body), Response(200, headers=GRPC, body=frame(_ld(1, AWS.encode())),
                                          trailers=status_trailers(0)))
    out = Redactor(key=b"k").redact(it)
    assert AWS not in repr(out)
    assert scan_interaction(out) == []
    frames, rest = parse_frames(out.request.body)
    assert rest == b"" and [f.payload for f in frames[1:]] == [b"\x08\x01", b"zz"]
    message = frames[0].payload
    assert message.startswith(_ld(1, b"login")) and message.endswith(b"\x20\x07")
    inner = message[len(_ld(1, b"login")) + 2:-2]
    assert message[len(_ld(1, b"login")) + 1] == len(inner)  # nested length fixed
    assert inner.startswith(_ld(1, b"user"))
    secret = inner[len(_ld(1, b"user")):]
    assert secret[0] == 0x12 and secret[1] == len(secret) - 2
    assert secret[2:].startswith(b"<redacted:")
    (reply,), rest = parse_frames(out.response.body)
    assert rest == b"" and reply.payload == _ld(1, secret[2:])  # the same placeholder


def test_a_secret_in_a_string_that_parses_as_protobuf_is_still_replaced() -> None:
    from replayproxy.redaction.redactor import Redactor

    text = f"key={AWS}".encode()  # a string, though some strings parse as messages
    out = Redactor(key=b"k").redact(Interaction(call(frame(_ld(1, text))), Response(200)))
    (f,), rest = parse_frames(out.request.body)
    assert rest == b"" and AWS.encode() not in f.payload
    assert f.payload[0] == 0x0a and f.payload[1] == len(f.payload) - 2


def test_a_secret_in_a_compressed_message_is_found_replaced_and_compressed_again() -> None:
    """``grpc-encoding: gzip``: a compressed message is decompressed to find and replace
    its secrets, then compressed again; one with nothing to replace keeps its bytes."""
    import gzip

    from replayproxy.grpc_wire import message_text, rewrite_frames
    from replayproxy.redaction.redactor import Redactor
    from replayproxy.redaction.scan import scan_interaction

    headers = (*GRPC, ("grpc-encoding", "gzip"))
    secret_message = _ld(1, b"login") + _ld(2, AWS.encode())
    clean = gzip.compress(_ld(1, b"nothing here"))
    body = frame(gzip.compress(secret_message), compressed=True) + frame(clean, compressed=True)
    request = Request("POST", "https", "grpc.example.com", 443, "/demo.Greeter/Hello",
                      headers=headers, body=body, http_version="HTTP/2.0")
    it = Interaction(request, Response(200, headers=GRPC, trailers=status_trailers(0)))
    found = scan_interaction(it)
    assert [(f.location, f.rule) for f in found] == [("request body", "aws-access-key")]
    # a string whose length byte reads as a letter ("y": 121 bytes) is still found
    long_name = _ld(1, f"{AWS} {'x' * 100}".encode())
    assert long_name[1:2] == b"y"
    loose = Interaction(call(frame(long_name)), Response(200, headers=GRPC))
    assert [f.rule for f in scan_interaction(loose)] == ["aws-access-key"]
    assert AWS.encode() not in Redactor(key=b"k").redact(loose).request.body

    out = Redactor(key=b"k").redact(it)
    frames, rest = parse_frames(out.request.body)
    assert rest == b"" and all(f.compressed for f in frames)
    assert frames[1].payload == clean
    plain = gzip.decompress(frames[0].payload)
    assert AWS.encode() not in plain and plain.startswith(_ld(1, b"login") + b"\x12")
    assert b"<redacted:aws-access-key:" in plain
    assert scan_interaction(out) == []
    # the same message redacted twice gives the same bytes (matching relies on it)
    assert Redactor(key=b"k").redact(it).request.body == out.request.body
    shown = render_frames(out.request.body, "/demo.Greeter/Hello", response=False,
                          coding="gzip")
    assert f"gzip-decompressed, {len(plain)} bytes: {plain.hex()}" in shown
    # a coding replayproxy does not know: kept as it is, never mangled
    assert rewrite_frames(body, lambda leaf: leaf.replace(AWS.encode(), b"x"), "snappy") == body
    assert message_text(body, "snappy") == b""
    assert message_text(body, "gzip") == b"login\n" + AWS.encode() + b"\nnothing here"
