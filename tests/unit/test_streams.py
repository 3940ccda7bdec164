"""The core of streamed responses: which stream, chunk logs, pacing, refitting, --pace."""

from __future__ import annotations

from dataclasses import replace

import pytest

from replayproxy.config import parse_settings
from replayproxy.errors import ConfigError
from replayproxy.model import Interaction, Request, Response
from replayproxy.redaction.redactor import RedactionConfig, Redactor
from replayproxy.redaction.scan import scan_interaction
from replayproxy.redaction.secrets import body_text
from replayproxy.streams import (
    CLIENT_CUT,
    ChunkLog,
    Send,
    Spool,
    broken_off,
    client_cut,
    describe_chunks,
    parse_pace,
    refit,
    schedule,
    should_stream,
    upstream_cut,
)


@pytest.mark.parametrize(("method", "status", "headers", "streams"), [
    ("GET", 200, [("Content-Type", "text/event-stream")], True),
    ("GET", 200, [("content-type", "text/event-stream; charset=utf-8"),
                  ("Content-Length", "10")], True),
    ("GET", 200, [("Transfer-Encoding", "chunked")], True),
    ("GET", 200, [], True),  # no length: until the connection closes, or HTTP/2
    ("GET", 200, [("Content-Length", "100")], False),
    ("GET", 200, [("Content-Length", str(1 << 20))], False),
    ("GET", 200, [("Content-Length", str((1 << 20) + 1))], True),
    ("GET", 200, [("Content-Length", "nonsense")], True),
    ("HEAD", 200, [("Transfer-Encoding", "chunked")], False),
    ("GET", 204, [], False),
    ("GET", 304, [], False),
    ("GET", 101, [("Upgrade", "websocket")], False),
])
def test_should_stream(method, status, headers, streams):
    assert should_stream(method, status, tuple(headers)) is streams


def test_chunk_log_merges_pieces_arriving_together():
    log = ChunkLog()
    for at, size in [(0.1, 10), (0.1005, 5), (0.5, 7), (0.5, 0), (0.9, 1), (0.9015, 2)]:
        log.add(at, size)
    assert log.chunks == ((0.1, 15), (0.5, 7), (0.9, 3))
    assert log.size == 25


def test_spool_keeps_a_big_body_in_a_file():
    spool = Spool(limit=8)
    for piece in (b"abcd", b"efgh", b"ijkl"):
        spool.write(piece)
    spool.write(b"m")
    assert spool.read() == b"abcdefghijklm" and spool.size == 13
    spool.write(b"n")  # reading does not lose the place
    assert spool.read() == b"abcdefghijklmn"
    spool.close()


def test_schedule_scales_by_pace():
    chunks = ((0.1, 3), (0.6, 2), (1.1, 4))
    assert schedule(chunks, 1) == [Send(0.1, 0, 3), Send(0.6, 3, 2), Send(1.1, 5, 4)]
    assert [s.at for s in schedule(chunks, 0)] == [0, 0, 0]
    assert [round(s.at, 6) for s in schedule(chunks, 2.5)] == [0.25, 1.5, 2.75]
    # times out of order (hand-edited) never send a piece before the one ahead of it
    assert [s.at for s in schedule(((0.5, 1), (0.2, 1)), 1)] == [0.5, 0.5]


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "fast", -0.5, ""])
def test_parse_pace_refuses(value):
    with pytest.raises(ValueError, match="the pace should be a number from 0"):
        parse_pace(value)


def test_parse_pace_accepts():
    assert parse_pace("0") == 0 and parse_pace("1") == 1 and parse_pace(0.25) == 0.25


def test_cuts():
    assert client_cut(CLIENT_CUT)
    cut = upstream_cut("peer closed connection\n without body")
    assert not client_cut(cut)
    it = Interaction(Request("GET", "https", "api.test", 443, "/"), Response(200))
    assert broken_off(replace(it, cut=cut))
    assert not broken_off(replace(it, cut=CLIENT_CUT)) and not broken_off(it)
    assert cut == "the upstream broke the stream off: peer closed connection without body"


def test_refit_follows_replacements():
    old = b"data: A secret-1 x\n\ndata: B\n\ndata: C secret-1\n\n"
    new = old.replace(b"secret-1", b"<redacted:token:abcdef>")
    chunks = ((0.0, 20), (0.5, 9), (1.0, len(old) - 29))
    fitted = refit(chunks, old, new)
    assert [t for t, _ in fitted] == [0.0, 0.5, 1.0]
    assert sum(n for _, n in fitted) == len(new)
    pieces, at = [], 0
    for _, n in fitted:
        pieces.append(new[at:at + n])
        at += n
    assert pieces == [b"data: A <redacted:token:abcdef> x\n\n", b"data: B\n\n",
                      b"data: C <redacted:token:abcdef>\n\n"]
    assert refit(chunks, old, old) == chunks
    assert refit((), old, new) == ()


def test_redaction_keeps_event_boundaries():
    body = b"".join(b'data: {"n": %d, "access_token": "tok-%d-0123456789abcdef"}\n\n' % (n, n)
                    for n in range(3))
    sizes = [len(e) + 2 for e in body.split(b"\n\n")[:-1]]
    chunks = tuple((0.5 * i, n) for i, n in enumerate(sizes))
    it = Interaction(Request("GET", "https", "api.test", 443, "/events"),
                     Response(200, "OK", (("Content-Type", "text/event-stream"),), body),
                     chunks=chunks)
    out = Redactor(RedactionConfig(fields=("access_token",))).redact(it)
    assert b"tok-" not in out.response.body
    events = [e + b"\n\n" for e in out.response.body.split(b"\n\n")[:-1]]
    assert [n for _, n in out.chunks] == [len(e) for e in events]


def test_describe_chunks():
    assert describe_chunks(((0.01, 10), (0.51, 20))) == \
        "streamed in 2 chunks, first at 0.010 s, last at 0.510 s (0.010s:10B, 0.510s:20B)"
    assert describe_chunks(((0.2, 5),), "the upstream broke the stream off: reset") == \
        "streamed in 1 chunk, first at 0.200 s, last at 0.200 s CUT: the upstream broke " \
        "the stream off: reset"
    many = tuple((i / 10, 1) for i in range(10))
    assert describe_chunks(many).endswith(", …)")
    assert describe_chunks((), CLIENT_CUT) == f"streamed, no body arrived CUT: {CLIENT_CUT}"


def test_config_pace():
    assert parse_settings({}).pace == 1.0
    assert parse_settings({"pace": 0}).pace == 0.0
    assert parse_settings({"pace": 2.5}).pace == 2.5
    for bad in (-1, True, "fast"):
        with pytest.raises(ConfigError, match="pace"):
            parse_settings({"pace": bad})


def test_scan_and_redact_read_json_in_event_data():
    """A secret field in an event's ``data:`` JSON (split over two data lines) is found
    by the scanner and replaced by redaction; a non-JSON event is left alone."""
    body = (b'event: delta\ndata: {"n": 1,\ndata:  "password": "hunter2-horse"}\n\n'
            b'data: [DONE]\n\n')
    it = Interaction(Request("GET", "https", "api.test", 443, "/events"),
                     Response(200, "OK", (("Content-Type", "text/event-stream"),), body),
                     chunks=((0.1, body.index(b"data: [DONE]")), (0.6, 14)))
    findings = scan_interaction(it)
    assert [(f.location, f.rule) for f in findings] == \
        [("response body event $.password", "password")]
    out = Redactor(RedactionConfig()).redact(it)
    assert b"hunter2" not in out.response.body and b"data: [DONE]\n\n" in out.response.body
    assert scan_interaction(out) == []
    assert out.chunks[1][1] == len(b"data: [DONE]\n\n")


def test_body_text():
    assert body_text("zoë".encode()) == "zoë"
    assert body_text(b"\xff\xfe") == "\xff\xfe"
    big = "é".encode() * (1 << 20)  # 2 MiB, checked piece by piece (pieces split a char)
    assert body_text(big) == "é" * (1 << 20)
    assert body_text(big + b"\xff") == (big + b"\xff").decode("latin-1")
