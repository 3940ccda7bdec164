"""Cassette format version 2: streamed bodies, cuts, trailers and WebSocket messages."""

import io
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replayproxy.cassette import format as cassette_format
from replayproxy.cassette.format import decode_interaction_v2, dumps, encode_interaction
from replayproxy.cassette.journal import Journal
from replayproxy.cassette.store import load_cassette, save_cassette
from replayproxy.errors import CassetteError
from replayproxy.model import (
    Interaction,
    Request,
    Response,
    WebSocketLog,
    WebSocketMessage,
)

PLAIN = Interaction(
    Request("GET", "https", "api.example.com", 443, "/v1/plain"),
    Response(200, "OK", (("Content-Type", "text/plain"),), b"ok"),
    recorded_at=1_700_000_000.0, ttfb=0.01, duration=0.02)

SSE_BODY = b"".join(f"data: event {i}\n\n".encode() for i in range(5))
SSE = Interaction(
    Request("GET", "https", "api.example.com", 443, "/v1/events"),
    Response(200, "OK", (("Content-Type", "text/event-stream"),), SSE_BODY),
    recorded_at=1_700_000_000.0, ttfb=0.01, duration=2.0,
    chunks=tuple((0.5 * i, len(f"data: event {i}\n\n")) for i in range(5)))

CUT = Interaction(
    Request("GET", "https", "api.example.com", 443, "/v1/cut"),
    Response(200, "OK", (("Content-Length", "100"),), b"x" * 40),
    chunks=((0.01, 40),), cut="the upstream closed the connection after 40 of 100 bytes")

GRPC = Interaction(
    Request("POST", "https", "grpc.example.com", 443, "/helloworld.Greeter/SayHello",
            headers=(("content-type", "application/grpc"),), body=b"\x00\x00\x00\x00\x03\n\x01a",
            http_version="HTTP/2.0"),
    Response(200, "", (("content-type", "application/grpc"),), b"\x00\x00\x00\x00\x02\n\x00",
             http_version="HTTP/2.0",
             trailers=(("grpc-status", "0"), ("grpc-message", ""))))

WS = Interaction(
    Request("GET", "https", "api.example.com", 443, "/ws",
            headers=(("Upgrade", "websocket"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="))),
    Response(101, "Switching Protocols", (("Upgrade", "websocket"),)),
    websocket=WebSocketLog(
        (WebSocketMessage(False, b"welcome", True, 0.0),
         WebSocketMessage(True, b'{"op": "ping"}', True, 0.2),
         WebSocketMessage(False, b"\x00\x01binary", False, 0.25)),
        1000, "bye", "client"))


def test_a_plain_cassette_is_still_written_as_version_1(tmp_path):
    path = tmp_path / "plain.cassette"
    save_cassette(path, [PLAIN])
    header = next(msgpack.Unpacker(io.BytesIO(path.read_bytes()), raw=False))
    assert header == {"format": "replayproxy-cassette", "interactions": 1, "version": 1}
    assert load_cassette(path).version == 1
    assert load_cassette(path).features == ()


@pytest.mark.parametrize("it, used", [
    (SSE, ("chunks",)), (CUT, ("chunks", "cut")), (GRPC, ("h2", "trailers")),
    (WS, ("websocket",)),
])
def test_version_2_records_round_trip_and_the_header_names_their_features(tmp_path, it, used):
    path = tmp_path / "v2.cassette"
    save_cassette(path, [PLAIN, it])
    loaded = load_cassette(path)
    assert loaded.version == 2
    assert loaded.features == used
    assert list(loaded.interactions()) == [PLAIN, it]
    # the same interactions written twice give the same bytes
    again = tmp_path / "again.cassette"
    save_cassette(again, list(loaded.interactions()))
    assert again.read_bytes() == path.read_bytes()


def test_a_version_2_cassette_read_by_a_release_that_only_knows_version_1_says_so(
        tmp_path, monkeypatch):
    path = tmp_path / "stream.cassette"
    save_cassette(path, [SSE])
    monkeypatch.setattr(cassette_format, "READERS", {1: cassette_format.READERS[1]})
    with pytest.raises(CassetteError) as info:
        load_cassette(path)
    message = str(info.value)
    assert "\n" not in message
    assert message == (f"{path} uses format version 2, newer than this replayproxy reads "
                       "(up to 1): upgrade replayproxy (pip install -U replayproxy)")


def test_version_1_files_load_with_the_version_2_reader_in_the_same_list():
    # a rewrite mixes entries read from a version-1 file with new version-2 ones
    data = dumps([encode_interaction(PLAIN), encode_interaction(WS)])
    path = Path("mixed.cassette")
    layout = cassette_format.read_cassette(data, path)
    assert layout.reader.version == 2 and layout.features == ("websocket",)


def _damaged(tmp_path: Path, extras: object) -> str:
    entry = (*encode_interaction(PLAIN), extras)
    path = tmp_path / "bad.cassette"
    header = {"features": ["chunks"], "format": "replayproxy-cassette", "interactions": 1,
              "version": 2}
    path.write_bytes(msgpack.packb(header) + msgpack.packb([entry], use_bin_type=True))
    with pytest.raises(CassetteError) as info:
        list(load_cassette(path).interactions())
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


@pytest.mark.parametrize("extras, why", [
    ({"chunks": [[0.1, 5]]}, "the chunks add up to 5 bytes but the body has 2"),
    ({"chunks": [[0.1]]}, "a chunk should be a list of 2"),
    ({"future": 1}, "the extras hold future, unknown to this replayproxy"),
    ({"websocket": [[], 1000, "", "nobody"]}, "the WebSocket closer should be"),
    ({"websocket": [[[1, True, 0.0, b"x"]], None, "", ""]},
     "a WebSocket message's direction and type should be true/false"),
    ({"trailers": [["grpc-status"]]}, "a header in the trailers should be"),
    ([1, 2], "the extras should be a map"),
])
def test_damaged_extras_are_named_in_one_line(tmp_path, extras, why):
    message = _damaged(tmp_path, extras)
    assert "malformed interaction #1" in message or "malformed extras" in message
    if "malformed extras" not in message:
        assert why in message


def test_a_journal_holding_version_2_records_folds_into_a_version_2_cassette(tmp_path):
    cassette = tmp_path / "ws.cassette"
    journal = Journal(cassette, replace=False)
    for it in (PLAIN, WS, SSE):
        journal.append(it)
    assert journal.commit() == 3
    loaded = load_cassette(cassette)
    assert loaded.version == 2 and loaded.features == ("chunks", "websocket")
    assert list(loaded.interactions()) == [PLAIN, WS, SSE]


# -- any version-2 interaction round-trips ---------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
text = st.text(max_size=20)
pairs = st.lists(st.tuples(text, text), max_size=4).map(tuple)
messages = st.lists(st.builds(WebSocketMessage, st.booleans(), st.binary(max_size=40),
                              st.booleans(), finite), max_size=6).map(tuple)
logs = st.builds(WebSocketLog, messages, st.none() | st.integers(1000, 4999), text,
                 st.sampled_from(["client", "server", ""]))


@st.composite
def v2_interactions(draw: st.DrawFn) -> Interaction:
    body = draw(st.binary(max_size=200))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=5)))
    bounds = [0, *cuts, len(body)]
    chunks = tuple((draw(finite), b - a) for a, b in zip(bounds, bounds[1:], strict=False))
    return Interaction(
        Request("GET", "https", draw(text), 443, "/" + draw(text),
                http_version=draw(st.sampled_from(["HTTP/1.1", "HTTP/2.0"]))),
        Response(draw(st.integers(100, 599)), "", draw(pairs), body, trailers=draw(pairs)),
        draw(finite), draw(finite), draw(finite),
        chunks=chunks if draw(st.booleans()) else (),
        cut=draw(text),
        websocket=draw(st.none() | logs))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(v2_interactions(), max_size=4))
def test_any_version_2_interactions_round_trip_through_bytes(items):
    data = dumps([encode_interaction(it) for it in items])
    layout = cassette_format.read_cassette(data, Path("p.cassette"))
    decoded = [layout.reader.decode(cassette_format.unpack_entry(
        data[a:b])) for a, b in zip(layout.offsets, layout.offsets[1:], strict=False)]
    assert decoded == items
    assert [decode_interaction_v2(encode_interaction(it)) for it in items] == items
