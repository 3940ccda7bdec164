"""WebSocket record and replay through the real proxy: a ``websockets`` upstream over
TLS with its own CA, clients that send, wait for replies and send again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from replayproxy.cassette.store import cassette_path, load_cassette
from replayproxy.model import RecordMode
from tests.conftest import UpstreamCA
from tests.integration.ws_upstream import TICK_GAP, RawClient, Seen, WsUpstream, converse

EXPECTED = ["welcome", '{"ack": 1}', "tick 1", b"\x03\x02\x01"]


@pytest.fixture
def wss_upstream(upstream_ca: UpstreamCA) -> Iterator[WsUpstream]:
    server = WsUpstream(upstream_ca.server_context)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ws_upstream() -> Iterator[WsUpstream]:
    server = WsUpstream(None)
    try:
        yield server
    finally:
        server.stop()


def _record(run_proxy, upstream: WsUpstream, name: str = "ws", **kw) -> Seen:
    with run_proxy(name, RecordMode.ALL) as p:
        seen = converse(upstream.url(), proxy=p.url, ca_bundle=p.proxy.ca.bundle, **kw)
    assert p.summary is not None and p.summary.recorded == 1
    return seen


def test_record_then_replay_offline_through_a_connect_tunnel(wss_upstream, run_proxy,
                                                             cassette_dir):
    recorded = _record(run_proxy, wss_upstream)
    assert recorded.received == EXPECTED
    assert (recorded.close_code, recorded.close_reason) == (4000, "see you")
    assert wss_upstream.handshakes == 1

    it = load_cassette(cassette_path(cassette_dir, "ws")).interaction(0)
    assert it.response.status == 101 and it.websocket is not None
    log = it.websocket
    assert [(m.from_client, m.is_text, m.content) for m in log.messages] == [
        (False, True, b"welcome"), (True, True, b'{"op": "sub", "n": 1}'),
        (False, True, b'{"ack": 1}'), (False, True, b"tick 1"),
        (True, False, b"\x01\x02\x03"), (False, False, b"\x03\x02\x01"),
        (True, True, b"bye")]
    assert (log.close_code, log.close_reason, log.closed_by) == (4000, "see you", "server")
    assert log.messages[3].at - log.messages[2].at > TICK_GAP * 0.8

    wss_upstream.stop()
    with run_proxy("ws", RecordMode.NONE) as p:
        replayed = converse(wss_upstream.url(), proxy=p.url, ca_bundle=p.proxy.ca.bundle)
    assert replayed.received == EXPECTED
    assert (replayed.close_code, replayed.close_reason) == (4000, "see you")
    assert replayed.extensions is None  # never permessage-deflate on replay
    assert wss_upstream.handshakes == 1
    assert p.summary is not None and p.summary.replayed == 1
    assert not p.summary.unexpected_messages and not p.summary.errors
    assert p.run.verdict().exit_code == 0


def test_plain_ws_through_a_connect_tunnel_and_as_an_absolute_form_upgrade(ws_upstream,
                                                                           run_proxy):
    recorded = _record(run_proxy, ws_upstream)  # websockets tunnels ws:// with CONNECT too
    assert recorded.received == EXPECTED
    ws_upstream.stop()
    with run_proxy("ws", RecordMode.NONE) as p:
        tunnelled = converse(ws_upstream.url(), proxy=p.url, ca_bundle=None)
        # a client that sends the upgrade itself to the proxy, no CONNECT
        host, port = p.url.removeprefix("http://").split(":")
        raw = RawClient((host, int(port)), ws_upstream.url().replace("ws:", "http:", 1),
                        f"127.0.0.1:{ws_upstream.port}")
        try:
            assert raw.accepted
            assert raw.read(1) == ["welcome"]
            raw.send('{"op": "sub", "n": 1}')
            assert raw.read(3) == ["welcome", '{"ack": 1}', "tick 1"]
            raw.send(b"\x01\x02\x03")
            raw.send("bye")
            closed = raw.wait_closed()
        finally:
            raw.close()
    assert tunnelled.received == EXPECTED and tunnelled.close_code == 4000
    assert raw.received[-1] == b"\x03\x02\x01"
    assert closed is not None and (closed.code, closed.reason) == (4000, "see you")
    assert ws_upstream.handshakes == 1
    assert p.summary is not None and p.summary.replayed == 2


def test_reverse_mode_record_then_replay(wss_upstream, run_proxy):
    with run_proxy("rev", RecordMode.ALL, reverse=wss_upstream.base_url) as p:
        base = p.proxy.reverse_url
        assert base is not None
        recorded = converse(base.replace("http:", "ws:", 1) + "/ws", proxy=None,
                            ca_bundle=None)
    assert recorded.received == EXPECTED
    wss_upstream.stop()
    with run_proxy("rev", RecordMode.NONE, reverse=wss_upstream.base_url) as p:
        base = p.proxy.reverse_url
        assert base is not None
        replayed = converse(base.replace("http:", "ws:", 1) + "/ws", proxy=None,
                            ca_bundle=None)
    assert replayed.received == EXPECTED
    assert (replayed.close_code, replayed.close_reason) == (4000, "see you")
    assert wss_upstream.handshakes == 1


def test_recorded_pacing_is_kept(wss_upstream, run_proxy):
    _record(run_proxy, wss_upstream)
    wss_upstream.stop()
    with run_proxy("ws", RecordMode.NONE) as p:
        seen = converse(wss_upstream.url(), proxy=p.url, ca_bundle=p.proxy.ca.bundle)
    assert seen.received[1:3] == ['{"ack": 1}', "tick 1"]
    # the tick came as long after the ack as it did when recording
    assert seen.times[2] - seen.times[1] > TICK_GAP * 0.8
