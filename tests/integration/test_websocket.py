"""WebSocket record and replay through the real proxy: a ``websockets`` upstream over
TLS with its own CA, clients that send, wait for replies and send again."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace

import pytest

from replayproxy.cassette.store import cassette_path, load_cassette, save_cassette
from replayproxy.model import RecordMode
from tests.conftest import UpstreamCA
from tests.integration.support import cli
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
    recorded = _record(run_proxy, wss_upstream, subprotocols=["feed.v1"])
    assert recorded.received == EXPECTED
    assert recorded.subprotocol == "feed.v1"
    assert recorded.extensions is not None and "permessage-deflate" in recorded.extensions
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
        replayed = converse(wss_upstream.url(), proxy=p.url, ca_bundle=p.proxy.ca.bundle,
                            subprotocols=["other", "feed.v1"])
    assert replayed.received == EXPECTED
    assert (replayed.close_code, replayed.close_reason) == (4000, "see you")
    assert replayed.subprotocol == "feed.v1"  # as recorded
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


CLIENT_SCRIPT = textwrap.dedent("""
    import sys
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    # proxy and CA from the environment replayproxy gives the command
    with connect(sys.argv[1], open_timeout=5, ping_interval=None) as ws:
        print(ws.recv(timeout=5))
        ws.send(sys.argv[2])
        try:
            print(ws.recv(timeout=5))
        except ConnectionClosed as e:
            print("closed", e.rcvd.code if e.rcvd else None)
""")


def test_an_unexpected_client_message_is_reported_and_fails_the_run(
        wss_upstream, run_proxy, cassette_dir, cli_env, tmp_path):
    _record(run_proxy, wss_upstream)
    wss_upstream.stop()
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    proc = cli("replay", "-c", "ws", "--cassette-dir", cassette_dir, "--", sys.executable,
               script, wss_upstream.url(), '{"op": "sub", "n": 2}', env=cli_env, cwd=tmp_path)
    assert proc.stdout.splitlines() == ["welcome", "closed 1008"]
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "client message 1 was not expected" in proc.stderr
    assert 'Closest recorded: client message 1 "{\\"op\\": \\"sub\\", \\"n\\": 1}"' \
        in proc.stderr
    assert "message $.n: recorded 1, received 2" in proc.stderr
    assert "some WebSocket messages were unexpected" in proc.stderr


def test_a_recording_stopped_with_the_socket_open_keeps_what_was_seen(
        wss_upstream, run_proxy, cassette_dir):
    from websockets.sync.client import connect

    from tests.integration.ws_upstream import client_context

    with run_proxy("open", RecordMode.ALL) as p, \
            connect(wss_upstream.url(), proxy=p.url, open_timeout=5, ping_interval=None,
                    close_timeout=1, ssl=client_context(p.proxy.ca.bundle)) as ws:
        assert ws.recv(timeout=5) == "welcome"
        ws.send("hello")
        assert ws.recv(timeout=5) == "echo:hello"
        p.run.stop()  # the proxy stops first, the socket still open
    it = load_cassette(cassette_path(cassette_dir, "open")).interaction(0)
    assert it.websocket is not None
    assert [m.content for m in it.websocket.messages] == [b"welcome", b"hello", b"echo:hello"]


def test_a_handshake_only_recording_fails_loudly(wss_upstream, run_proxy, cassette_dir,
                                                 caplog):
    from websockets.exceptions import InvalidStatus

    _record(run_proxy, wss_upstream)
    path = cassette_path(cassette_dir, "ws")
    old = load_cassette(path)
    # what replayproxy wrote before it kept messages: the 101 alone
    save_cassette(path, [replace(it, websocket=None) for it in old.interactions()])
    wss_upstream.stop()
    # the error is logged (the fixture fails a run that logged one), the client refused
    with pytest.raises(AssertionError, match="only the handshake"), \
            run_proxy("ws", RecordMode.NONE) as p, pytest.raises(InvalidStatus) as refused:
        converse(wss_upstream.url(), proxy=p.url, ca_bundle=p.proxy.ca.bundle)
    assert refused.value.response.status_code == 502
    assert b"only the handshake" in refused.value.response.body
    assert p.summary is not None and p.summary.errors
    verdict = p.run.verdict()
    assert verdict.exit_code == 1 and "could not answer 1 request" in verdict.reasons[0]


def test_a_client_sending_garbage_frames_is_logged_and_others_go_on(ws_upstream, run_proxy,
                                                                    caplog):
    _record(run_proxy, ws_upstream)
    ws_upstream.stop()
    with run_proxy("ws", RecordMode.NONE) as p:
        host, port = p.url.removeprefix("http://").split(":")
        raw = RawClient((host, int(port)), ws_upstream.url().replace("ws:", "http:", 1),
                        f"127.0.0.1:{ws_upstream.port}")
        try:
            assert raw.accepted and raw.read(1) == ["welcome"]
            raw.send_raw(b"\x8f\x85garbage that is no WebSocket frame\r\n" * 4)
            closed = raw.wait_closed()
        finally:
            raw.close()
        others = converse(ws_upstream.url(), proxy=p.url, ca_bundle=None)
    assert closed is not None and closed.code == 1002
    assert others.received == EXPECTED and others.close_code == 4000
    warnings = [r.getMessage() for r in caplog.records if r.name == "replayproxy"
                and "not valid WebSocket frames" in r.getMessage()]
    assert len(warnings) == 1 and f"127.0.0.1:{ws_upstream.port}/ws" in warnings[0]
    assert not [r for r in caplog.records if "Traceback" in r.getMessage()
                or "crashed" in r.getMessage()]


def _replay_with(run_proxy, upstream: WsUpstream, fault: str) -> Seen:
    with run_proxy("ws", RecordMode.NONE, faults=(fault,)) as p:
        return converse(upstream.url(), proxy=p.url, ca_bundle=p.proxy.ca.bundle)


def test_fault_ws_close_after_n_messages(wss_upstream, run_proxy):
    _record(run_proxy, wss_upstream)
    wss_upstream.stop()
    seen = _replay_with(run_proxy, wss_upstream, "ws_close=2,code=1011,reason=restart@*/ws")
    assert seen.received == ["welcome", '{"ack": 1}']
    assert (seen.close_code, seen.close_reason) == (1011, "restart")


def test_fault_ws_drop_drops_the_connection(wss_upstream, run_proxy):
    _record(run_proxy, wss_upstream)
    wss_upstream.stop()
    seen = _replay_with(run_proxy, wss_upstream, "ws_drop=1")
    assert seen.received == ["welcome"]
    assert seen.close_code is None  # the connection dropped: no close frame


def test_fault_ws_delay_delays_every_server_message(wss_upstream, run_proxy):
    import time

    _record(run_proxy, wss_upstream)
    wss_upstream.stop()
    with run_proxy("ws", RecordMode.NONE, faults=("ws_delay=400ms",)) as p:
        started = time.monotonic()
        seen = converse(wss_upstream.url(), proxy=p.url, ca_bundle=p.proxy.ca.bundle)
    assert seen.received == EXPECTED and seen.close_code == 4000
    assert seen.times[0] - started > 0.3  # the greeting waited
    assert seen.times[3] - seen.times[2] > 0.3  # and every message after it


def test_drift_skips_websockets_and_says_so(wss_upstream, run_proxy, cassette_dir, cli_env,
                                            upstream_ca, tmp_path):
    import json

    _record(run_proxy, wss_upstream)
    proc = cli("drift", "--cassette-dir", cassette_dir, "--upstream-ca", upstream_ca.pem,
               "-c", "ws", "-v", "--json", tmp_path / "r.json", env=cli_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"]["skipped"] == 1
    [result] = report["results"]
    assert "drift does not re-send WebSockets" in json.dumps(result)
    assert "drift does not re-send WebSockets" in proc.stdout  # the terminal report too
    assert wss_upstream.handshakes == 1  # the recording's only


def test_ws_faults_while_recording_say_they_do_not_apply(wss_upstream, run_proxy, caplog):
    with run_proxy("ws", RecordMode.ALL, faults=("ws_close=1",)) as p:
        seen = converse(wss_upstream.url(), proxy=p.url, ca_bundle=p.proxy.ca.bundle)
    assert seen.received == EXPECTED  # live: untouched
    assert any("act on replayed WebSockets only" in r.getMessage() for r in caplog.records)


def test_the_documented_example_runs(cli_env, tmp_path):
    import subprocess
    from pathlib import Path

    example = Path(__file__).parents[2] / "docs" / "examples" / "websocket_feed.py"
    done = subprocess.run([sys.executable, str(example), str(tmp_path / "cassettes")],
                          env=cli_env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "welcome", '{"subscribed": "ACME"}', '{"symbol": "ACME", "price": 42.5}',
        "closed 1000"]


def test_a_plain_request_matching_a_recorded_websocket_fails_loudly(wss_upstream, run_proxy):
    _record(run_proxy, wss_upstream)
    wss_upstream.stop()
    with pytest.raises(AssertionError, match="no WebSocket handshake"), \
            run_proxy("ws", RecordMode.NONE) as p, p.client("requests") as client:
        got = client.get(f"https://127.0.0.1:{wss_upstream.port}/ws")
    assert got.status == 502 and b"no WebSocket handshake" in got.body
    assert p.run.verdict().exit_code == 1
