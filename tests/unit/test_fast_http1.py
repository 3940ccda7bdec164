"""The fast engine's HTTP/1.1 layer (bytes only) and the engine choice, without sockets."""

from __future__ import annotations

from dataclasses import replace

import pytest

from replayproxy.cassette.store import CassetteFile
from replayproxy.engines.choice import choose_engine, fast_engine_can_serve
from replayproxy.engines.fast.http1 import (
    MAX_BODY,
    HttpError,
    assemble,
    parse_head,
    read_chunked,
    set_header,
)
from replayproxy.errors import ConfigError
from replayproxy.faults.spec import parse_fault
from replayproxy.model import Interaction, RecordMode, Request, Response


def test_parse_head_keeps_headers_as_sent_and_frames_the_body():
    head = parse_head(b"POST http://a.test/x?y=1 HTTP/1.1\r\nHost: a.test\r\n"
                      b"X-MiXed:  spaced value \r\nContent-Length: 12\r\n"
                      b"Expect: 100-continue")
    assert (head.method, head.target, head.version) == ("POST", "http://a.test/x?y=1",
                                                        "HTTP/1.1")
    assert head.headers == (("Host", "a.test"), ("X-MiXed", "spaced value"),
                            ("Content-Length", "12"), ("Expect", "100-continue"))
    assert (head.length, head.close, head.expect_continue) == (12, False, True)
    assert parse_head(b"GET / HTTP/1.0\r\nHost: a").close
    assert not parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive").close
    assert parse_head(b"GET / HTTP/1.1\r\nConnection: close").close
    assert parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked").length == -1


@pytest.mark.parametrize(("raw", "status"), [
    (b"GET /", 400),
    (b"GET / HTTP/1.1 extra", 400),
    (b"G\x00T / HTTP/1.1", 400),
    (b"GET / HTTP/2.0", 505),
    (b"GET / HTTP/1.1\r\nNo-Colon", 400),
    (b"GET / HTTP/1.1\r\n folded: value", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: -1", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: " + str(MAX_BODY + 1).encode(), 413),
])
def test_parse_head_refuses_bad_heads(raw, status):
    with pytest.raises(HttpError) as e:
        parse_head(raw)
    assert e.value.status == status


def test_read_chunked_waits_for_the_whole_body_and_drops_trailers():
    data = b"3;ext=1\r\nabc\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\nTrailer: t\r\n\r\nNEXT"
    for cut in range(len(data) - 4):
        assert read_chunked(data[:cut], 0) is None
    assert read_chunked(data, 0) == (b"abc" + b"x" * 16, len(data) - 4)
    assert read_chunked(b"0\r\n\r\n", 0) == (b"", 5)
    with pytest.raises(HttpError):
        read_chunked(b"zz\r\nabc\r\n", 0)
    with pytest.raises(HttpError):
        read_chunked(b"3\r\nabcXX0\r\n\r\n", 0)


def test_set_header_acts_like_mitmproxys_headers_setitem():
    headers = [("Content-Length", "5"), ("X", "1"), ("content-length", "6")]
    set_header(headers, "content-length", "9")
    assert headers == [("Content-Length", "9"), ("X", "1")]
    set_header(headers, "connection", "close")
    assert headers[-1] == ("connection", "close")
    set_header(headers, "x", None)
    assert headers == [("Content-Length", "9"), ("connection", "close")]


def test_assemble_sends_the_recorded_head_and_frames_a_chunked_body_as_one_chunk():
    plain = Response(201, "Created", (("A", "1"), ("Content-Length", "2")), b"hi")
    assert assemble(plain) == (b"HTTP/1.1 201 Created\r\nA: 1\r\nContent-Length: 2\r\n\r\nhi",
                               False)
    chunked = Response(200, "OK", (("Transfer-Encoding", "chunked"),), b"abc")
    assert assemble(chunked) == (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", False)
    h2 = Response(200, "", (("content-length", "0"),), b"", "HTTP/2.0")
    assert assemble(h2)[0] == b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    eof = Response(200, "OK", (), b"until close")
    assert assemble(eof)[1] and not assemble(eof, "HEAD")[1]
    assert assemble(Response(200, "OK", (("Connection", "close"), ("Content-Length", "0"))))[1]


def test_the_fast_engine_serves_replay_only_and_says_why_not():
    cassette = CassetteFile("c", ())
    assert fast_engine_can_serve(RecordMode.NONE, cassette) is None
    h2 = Interaction(Request("GET", "https", "a.test", 443, "/", http_version="HTTP/2.0"),
                     Response(200, http_version="HTTP/2.0"))
    assert fast_engine_can_serve(RecordMode.NONE, CassetteFile.from_interactions(
        "h2", [h2])) == "the cassette holds h2 records, served by mitmproxy only"
    streamed = replace(h2, cut="upstream reset", chunks=((0.1, 1),),
                       response=Response(200, body=b"x", trailers=(("grpc-status", "0"),)))
    assert fast_engine_can_serve(RecordMode.NONE, CassetteFile.from_interactions(
        "s", [streamed])) == \
        "the cassette holds chunks, cut, h2, trailers records, served by mitmproxy only"
    assert fast_engine_can_serve(RecordMode.ALL, cassette) == \
        "record mode all sends requests upstream"
    assert fast_engine_can_serve(RecordMode.NEW_EPISODES, cassette) == \
        "record mode new_episodes sends requests upstream"
    assert fast_engine_can_serve(RecordMode.NONE, cassette, mitmproxy_addons=True) == \
        "extra mitmproxy addons are loaded"
    faults = [parse_fault(s) for s in ("latency=10ms", "reset", "slow_body=1kb/s",
                                       "refuse_connect@https://x.test")]
    assert fast_engine_can_serve(RecordMode.NONE, cassette, faults) is None
    for spec in ("ws_close", "status,grpc=UNAVAILABLE"):
        assert fast_engine_can_serve(RecordMode.NONE, cassette, [parse_fault(spec)]) == \
            f"fault {spec!r} is carried out by mitmproxy only"
    assert choose_engine("auto", None) == ("fast", "replay only, nothing it cannot serve")
    assert choose_engine("auto", "why") == ("mitmproxy", "why")
    assert choose_engine("mitmproxy", None) == ("mitmproxy", "asked for")
    with pytest.raises(ConfigError, match="fast cannot serve this run: why"):
        choose_engine("fast", "why")
    with pytest.raises(ConfigError, match="unknown"):
        choose_engine("quick", None)


def test_an_existing_ca_is_checked_without_mitmproxy_and_a_damaged_one_refused(
        proxy_ca_dir, tmp_path):
    import shutil

    from replayproxy.engines.mitm.ca import ensure_ca

    made = ensure_ca(proxy_ca_dir)
    copy = tmp_path / "ca"
    shutil.copytree(made.directory, copy)
    assert ensure_ca(copy).cert.read_bytes() == made.cert.read_bytes()
    key = copy / "mitmproxy-ca.pem"
    key.write_bytes(key.read_bytes().replace(b"-----BEGIN CERTIFICATE-----", b"garbage"))
    with pytest.raises(ConfigError, match="cannot use CA directory"):
        ensure_ca(copy)
