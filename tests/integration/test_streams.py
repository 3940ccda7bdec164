"""Streamed responses through the real proxy: Server-Sent Events and chunked bodies reach
the client as they arrive while recording, are recorded with each chunk's arrival time,
and are replayed offline as a stream paced by ``--pace``; a stream the upstream breaks
off is replayed broken off at the same point; a client that leaves a stream (HTTP/1.1 or
an HTTP/2 stream reset) breaks nothing else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator

import h2.config
import h2.connection
import h2.errors
import h2.events
import httpx
import pytest
import requests
import urllib3

from replayproxy.cassette.store import cassette_path, load_cassette, save_cassette
from replayproxy.model import Interaction, RecordMode, Request, Response
from replayproxy.redaction.big import BIG_BODY
from replayproxy.run import ProxyRun
from replayproxy.streams import upstream_cut
from tests.conftest import UpstreamCA
from tests.integration.conftest import RunningProxy, serving
from tests.integration.stream_upstream import (
    BIG_EVENTS,
    EVENTS,
    GAP,
    PIECES,
    StreamHandler,
    big_event,
    event,
)
from tests.integration.support import Upstream, base_env, cli, offline, write_config


@pytest.fixture
def sse_upstream(upstream_ca: UpstreamCA) -> Iterator[Upstream]:
    server = Upstream(upstream_ca.server_context, StreamHandler)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stream_proxy(proxy_ca, upstream_ca, cassette_dir, tmp_path, caplog):
    """``with stream_proxy(mode, pace=1.0)``: a ProxyRun as the CLI builds it."""
    @contextlib.contextmanager
    def factory(mode: RecordMode, *, pace: float | None = None,
                http2: bool = True) -> Iterator[RunningProxy]:
        run = ProxyRun("streams", mode, cassette_dir=cassette_dir, upstream_ca=upstream_ca.pem,
                       ca_dir=proxy_ca.directory, control=False, upstream_proxy="none",
                       pace=pace)
        rp = RunningProxy(run, tmp_path)
        with serving(rp, caplog):
            yield rp
    return factory


def _client(p: RunningProxy, *, read: float = 30) -> httpx.Client:
    return httpx.Client(proxy=p.url, verify=ssl.create_default_context(
        cafile=str(p.proxy.ca.bundle)), trust_env=False, timeout=httpx.Timeout(30, read=read))


def _events(client: httpx.Client, url: str) -> tuple[list[tuple[float, bytes]], float]:
    """Each event of ``url`` with when it arrived (seconds from the request), and when
    the stream ended."""
    start = time.monotonic()
    got: list[tuple[float, bytes]] = []
    buffer = b""
    with client.stream("GET", url) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        for data in r.iter_raw():
            buffer += data
            while b"\n\n" in buffer:
                one, buffer = buffer.split(b"\n\n", 1)
                got.append((time.monotonic() - start, one + b"\n\n"))
    assert buffer == b""
    return got, time.monotonic() - start


def test_sse_streams_while_recording_and_replays_paced(sse_upstream, stream_proxy,
                                                       cassette_dir):
    """While recording, the first event reaches the client long before the stream ends;
    replayed offline, the spacing is kept at pace 1 and gone at pace 0, same events."""
    url = sse_upstream.url("/events")
    expected = [event(n) for n in range(EVENTS)]
    with stream_proxy(RecordMode.ALL) as p, _client(p) as client:
        got, ended = _events(client, url)
    assert [e for _, e in got] == expected
    assert ended - got[0][0] > 0.8 * (EVENTS - 1) * GAP, (got, ended)

    cassette = load_cassette(cassette_path(cassette_dir, "streams"))
    it = cassette.interaction(0)
    # each event's data: JSON carries a token: redacted in the recording, chunk by chunk
    recorded = [e + b"\n\n" for e in it.response.body.split(b"\n\n")[:-1]]
    assert len(recorded) == EVENTS and b"sk_live_" not in it.response.body
    assert all(e.startswith(b"id: %d\n" % n) and b'"access_token": "<' in e
               for n, e in enumerate(recorded))
    assert [n for _, n in it.chunks] == [len(e) for e in recorded]
    assert it.chunks[-1][0] - it.chunks[0][0] >= 0.8 * (EVENTS - 1) * GAP
    assert "chunks" in cassette.features and it.cut == ""
    expected = recorded

    sse_upstream.stop()
    with offline(sse_upstream):
        with stream_proxy(RecordMode.NONE, pace=1) as p, _client(p) as client:
            got, ended = _events(client, url)
        assert [e for _, e in got] == expected
        assert ended >= 0.8 * (EVENTS - 1) * GAP
        assert got[-1][0] - got[0][0] >= 0.8 * (EVENTS - 1) * GAP
        assert p.summary is not None and p.summary.replayed == 1

        with stream_proxy(RecordMode.NONE, pace=0) as p, _client(p) as client:
            got, ended = _events(client, url)
        assert [e for _, e in got] == expected
        # all at once: the 1.8 s the events were spread over is gone
        assert got[-1][0] - got[0][0] < 0.5 and ended - got[0][0] < 0.5


def test_chunked_body_without_sse(sse_upstream, stream_proxy, cassette_dir):
    """A chunked body that is not SSE streams too: pieces arrive as sent, recorded with
    their times, replayed with the recorded framing (chunked) and pacing."""
    url = sse_upstream.url("/slow-chunked")
    with stream_proxy(RecordMode.ALL) as p, _client(p) as client, \
            client.stream("GET", url) as r:
        arrivals = [(time.monotonic(), d) for d in r.iter_raw()]
    assert b"".join(d for _, d in arrivals) == b"".join(PIECES)
    assert arrivals[-1][0] - arrivals[0][0] > 0.8 * GAP * (len(PIECES) - 1)
    it = load_cassette(cassette_path(cassette_dir, "streams")).interaction(0)
    assert [n for _, n in it.chunks] == [len(piece) for piece in PIECES]

    sse_upstream.stop()
    with offline(sse_upstream), stream_proxy(RecordMode.NONE) as p, _client(p) as client:
        start = time.monotonic()
        with client.stream("GET", url) as r:
            assert r.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in r.headers
            body = b"".join(r.iter_raw())
        took = time.monotonic() - start
    assert body == b"".join(PIECES)
    assert took > 0.8 * GAP * (len(PIECES) - 1)


def _read_until_error(client: httpx.Client, url: str) -> tuple[bytes, type[Exception] | None]:
    got = b""
    try:
        with client.stream("GET", url) as r:
            for data in r.iter_raw():
                got += data
    except httpx.HTTPError as e:
        return got, type(e)
    return got, None


def test_stream_cut_by_upstream_is_recorded_and_replayed_cut(sse_upstream, stream_proxy,
                                                             cassette_dir, caplog):
    """Bad input: the upstream drops the connection mid-stream. What arrived is kept and
    marked; replay sends the same events, then breaks off the same way; other flows on
    the proxy are unaffected."""
    caplog.set_level(logging.INFO, logger="replayproxy")
    url, other = sse_upstream.url("/cut"), sse_upstream.url("/plain")
    with stream_proxy(RecordMode.ALL) as p, _client(p) as client:
        assert client.get(other).content == b"plain"
        recorded, error = _read_until_error(client, url)
        assert client.get(other).content == b"plain"
    assert error is httpx.RemoteProtocolError
    assert recorded == event(0) + event(1)
    cassette = load_cassette(cassette_path(cassette_dir, "streams"))
    it = next(i for i in cassette.interactions() if i.request.path == "/cut")
    assert it.cut.startswith("the upstream broke the stream off")
    assert len(it.chunks) == 2 and "cut" in cassette.features
    assert "recorded what arrived" in caplog.text
    # an upstream failure while recording: listed, and the run says so in its verdict
    assert p.summary is not None and p.summary.upstream_failures.total == 1
    assert "failed while recording" in p.run.verdict().reasons[0]

    sse_upstream.stop()
    with offline(sse_upstream), stream_proxy(RecordMode.NONE) as p, _client(p) as client:
        replayed, replay_error = _read_until_error(client, url)
        assert client.get(other).content == b"plain"
        replayed_again, _ = _read_until_error(client, url)
    assert replay_error is error
    assert replayed == replayed_again == it.response.body
    assert b"id: 0\n" in replayed and b"id: 1\n" in replayed and b"id: 2\n" not in replayed
    assert "replayed the recorded cut" in caplog.text
    assert p.summary is not None and p.summary.unmatched.total == 0


def _requests_cut(p: RunningProxy, url: str) -> tuple[bytes, str]:
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"https": p.url}
    session.verify = str(p.proxy.ca.bundle)
    got = b""
    try:
        with session.get(url, stream=True, timeout=30) as r:
            for data in r.raw.stream(1024, decode_content=False):
                got += data
    except (requests.RequestException, urllib3.exceptions.HTTPError) as e:
        return got, type(e).__name__
    finally:
        session.close()
    return got, ""


def _curl_cut(p: RunningProxy, url: str) -> tuple[bytes, int]:
    proc = subprocess.run(["curl", "-sN", "--max-time", "30", "--proxy", p.url, "--cacert",
                           str(p.proxy.ca.bundle), url], capture_output=True, timeout=60,
                          check=False, env=base_env())
    return proc.stdout, proc.returncode


def test_stream_cut_seen_the_same_by_requests_and_curl(sse_upstream, stream_proxy):
    """Bad input, other clients: requests and curl see the replayed cut as they saw the
    upstream's (the same events, the same exception, the same curl exit code)."""
    url = sse_upstream.url("/cut")
    with stream_proxy(RecordMode.ALL) as p:
        by_requests, by_curl = _requests_cut(p, url), _curl_cut(p, url)
    assert by_requests[1] and by_curl[1] not in (0, 28)
    assert by_requests[0].startswith(b"id: 0\n") and by_curl[0].startswith(b"id: 0\n")
    sse_upstream.stop()
    with offline(sse_upstream), stream_proxy(RecordMode.NONE, pace=0) as p:
        replayed = _requests_cut(p, url), _curl_cut(p, url)
    # the same events (their tokens redacted in the recording), then the same failure
    for (body, failure), (recorded, recorded_failure) in zip(
            replayed, (by_requests, by_curl), strict=True):
        assert failure == recorded_failure
        assert body.count(b"\n\n") == recorded.count(b"\n\n") == 2


def test_endless_stream_left_by_the_client(sse_upstream, stream_proxy, cassette_dir):
    """An endless stream reaches the client event by event; when the client leaves, what
    arrived is recorded; replay sends it and keeps the stream open as the upstream did."""
    url = sse_upstream.url("/endless")
    with stream_proxy(RecordMode.ALL) as p, _client(p) as client:
        with client.stream("GET", url) as r:
            got = b""
            for data in r.iter_raw():
                got += data
                if got.count(b"\n\n") >= 3:
                    break
        assert client.get(sse_upstream.url("/plain")).content == b"plain"
    it = next(i for i in load_cassette(cassette_path(cassette_dir, "streams")).interactions()
              if i.request.path == "/endless")
    assert it.cut == "the client closed the stream before it ended"
    # what arrived (the token in each event redacted), as far as the client read and on
    events = it.response.body.split(b"\n\n")[:-1]
    assert len(events) >= got.count(b"\n\n")
    assert all(e.startswith(b"id: %d\n" % n) for n, e in enumerate(events))

    sse_upstream.stop()
    with offline(sse_upstream), stream_proxy(RecordMode.NONE, pace=0) as p, \
            _client(p, read=1.0) as client:
        with client.stream("GET", url) as r:
            replayed = b""
            chunks = r.iter_raw()
            while len(replayed) < len(it.response.body):
                replayed += next(chunks)
            # nothing more comes, and the stream is not ended either
            with pytest.raises(httpx.ReadTimeout):
                next(chunks)
        assert replayed == it.response.body


def _tunnel(p: RunningProxy, host: str, port: int) -> ssl.SSLSocket:
    assert p.proxy.proxy_address is not None
    sock = socket.create_connection(p.proxy.proxy_address, timeout=10)
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        assert data, "the proxy closed the CONNECT"
        head += data
    assert head.startswith(b"HTTP/1.1 200"), head
    context = ssl.create_default_context(cafile=str(p.proxy.ca.bundle))
    context.set_alpn_protocols(["h2"])
    tls = context.wrap_socket(sock, server_hostname=host)
    assert tls.selected_alpn_protocol() == "h2"
    return tls


def _h2_client(p: RunningProxy, host: str, port: int
               ) -> tuple[ssl.SSLSocket, h2.connection.H2Connection]:
    tls = _tunnel(p, host, port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())
    return tls, conn


def _h2_events(tls: ssl.SSLSocket, conn: h2.connection.H2Connection
               ) -> Iterator[h2.events.Event]:
    """Every event of ``conn`` as it comes (data acknowledged, replies sent), for 15 s
    at most; the caller stops when it has what it waits for."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        data = tls.recv(65536)
        assert data, "the proxy closed the HTTP/2 connection"
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            yield ev
        tls.sendall(conn.data_to_send())


def _h2_reset_then_get(p: RunningProxy, upstream: Upstream) -> bytes:
    """Over one HTTP/2 connection: start /events, reset that stream after its first
    data, then GET /plain; return /plain's body."""
    tls, conn = _h2_client(p, upstream.host, upstream.port)
    authority = f"{upstream.host}:{upstream.port}"

    def get(stream_id: int, path: str) -> None:
        conn.send_headers(stream_id, [(":method", "GET"), (":scheme", "https"),
                                      (":authority", authority), (":path", path)],
                          end_stream=True)
        tls.sendall(conn.data_to_send())

    get(1, "/events")
    plain, reset, done = b"", False, False
    for ev in _h2_events(tls, conn):
        if isinstance(ev, h2.events.DataReceived) and ev.stream_id == 1 and not reset:
            conn.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
            reset = True
            get(3, "/plain")
        elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == 3:
            plain += ev.data
        elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == 3:
            done = True
            break
    tls.close()
    assert reset and done
    return plain


def test_http2_client_resets_a_stream(sse_upstream, stream_proxy, caplog):
    """Bad input: an HTTP/2 client resets a stream mid-way, recording and replaying: one
    clear line, no crash, the next request on the same connection is answered."""
    caplog.set_level(logging.INFO, logger="replayproxy")
    with stream_proxy(RecordMode.ALL) as p:
        assert _h2_reset_then_get(p, sse_upstream) == b"plain"
    assert "stream reset by client" in caplog.text
    assert "the client closed the stream before it ended" in caplog.text
    caplog.clear()
    sse_upstream.stop()
    with offline(sse_upstream), stream_proxy(RecordMode.NONE) as p:
        assert _h2_reset_then_get(p, sse_upstream) == b"plain"
    assert "the client closed the replayed stream before its end (stream reset by client" \
        in caplog.text
    assert p.summary is not None and p.summary.replayed == 2


def test_cli_show_scan_redact_a_streamed_cassette(cassette_dir, cli_env, tmp_path):
    """``cassette show`` lists a stream's chunks and cut; ``scan`` finds a secret in an
    event's ``data:`` JSON, ``redact`` replaces it and keeps each event its own chunk."""
    events = [b'data: {"n": %d, "session_secret": "s3cr3t-%d-value"}\n\n' % (n, n)
              for n in range(3)]
    streamed = Interaction(
        Request("GET", "https", "api.test", 443, "/events"),
        Response(200, "OK", (("Content-Type", "text/event-stream"),
                             ("Transfer-Encoding", "chunked")), b"".join(events)),
        recorded_at=1.7e9, ttfb=0.01, duration=1.1,
        chunks=tuple((0.01 + 0.5 * n, len(e)) for n, e in enumerate(events)),
        cut=upstream_cut("peer closed connection without sending complete message body"))
    save_cassette(cassette_path(cassette_dir, "sse"), [streamed])
    config = write_config(tmp_path, '[redact]\nfields = ["session_secret"]\n',
                          name="replayproxy.toml")
    common = ("--cassette-dir", str(cassette_dir), "--config", str(config))

    shown = cli("cassette", "show", "-c", "sse", *common, env=cli_env)
    assert shown.returncode == 0, shown.stderr
    assert "streamed 3 chunks  CUT" in shown.stdout
    assert "streamed in 3 chunks, first at 0.010 s, last at 1.010 s" in shown.stdout
    assert "CUT: the upstream broke the stream off: peer closed connection" in shown.stdout

    found = cli("scan", str(cassette_path(cassette_dir, "sse")), *common, env=cli_env)
    assert found.returncode == 1 and "session_secret" in found.stdout + found.stderr

    done = cli("redact", "-c", "sse", *common, env=cli_env)
    assert done.returncode == 0, done.stderr
    it = load_cassette(cassette_path(cassette_dir, "sse")).interaction(0)
    assert b"s3cr3t" not in it.response.body and it.cut == streamed.cut
    parts = [e + b"\n\n" for e in it.response.body.split(b"\n\n")[:-1]]
    assert [n for _, n in it.chunks] == [len(e) for e in parts]
    assert [t for t, _ in it.chunks] == [t for t, _ in streamed.chunks]
    clean = cli("scan", str(cassette_path(cassette_dir, "sse")), *common, env=cli_env)
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_drift_resends_a_finished_stream_and_skips_cut_ones(sse_upstream, stream_proxy,
                                                            cassette_dir, cli_env,
                                                            upstream_ca, tmp_path):
    """Drift re-sends a streamed GET that ended and compares its body; a stream the
    upstream broke off, or an endless one the client left, is skipped with the reason."""
    with stream_proxy(RecordMode.ALL) as p, _client(p) as client:
        _events(client, sse_upstream.url("/events"))
        _read_until_error(client, sse_upstream.url("/cut"))
        with client.stream("GET", sse_upstream.url("/endless")) as r:
            next(r.iter_raw())
    report = tmp_path / "drift.json"
    proc = cli("drift", "-c", "streams", "--cassette-dir", cassette_dir, "--upstream-ca",
               upstream_ca.pem, "--json", report, env=cli_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {r["url"].rsplit("/", 1)[1]: r for r in json.loads(report.read_text())["results"]}
    assert results["events"]["outcome"] == "passed"
    assert results["cut"]["outcome"] == "skipped"
    assert "the upstream broke off" in results["cut"]["message"]
    assert results["endless"]["outcome"] == "skipped"
    assert "an endless stream" in results["endless"]["message"]


def test_replayed_stream_keeps_its_trailers_for_an_http2_client(stream_proxy, cassette_dir):
    """A recorded stream with trailers (gRPC's ``grpc-status``) is replayed over HTTP/2
    with its pieces paced and its trailers after the body."""
    frames = [b"\x00\x00\x00\x00\x03abc", b"\x00\x00\x00\x00\x02de"]
    recorded = Interaction(
        Request("POST", "https", "grpc.test", 443, "/pkg.Svc/Watch",
                headers=(("content-type", "application/grpc"),), http_version="HTTP/2.0"),
        Response(200, "", (("content-type", "application/grpc"),), b"".join(frames),
                 "HTTP/2.0", (("grpc-status", "0"), ("grpc-message", "done"))),
        recorded_at=1.7e9, ttfb=0.01, duration=0.6,
        chunks=((0.01, len(frames[0])), (0.5, len(frames[1]))))
    save_cassette(cassette_path(cassette_dir, "streams"), [recorded])
    with stream_proxy(RecordMode.NONE) as p:
        tls, conn = _h2_client(p, "grpc.test", 443)
        conn.send_headers(1, [(":method", "POST"), (":scheme", "https"),
                              (":authority", "grpc.test"), (":path", "/pkg.Svc/Watch"),
                              ("content-type", "application/grpc")], end_stream=True)
        tls.sendall(conn.data_to_send())
        body, trailers, ended = b"", None, False
        start, arrivals = time.monotonic(), []
        for ev in _h2_events(tls, conn):
            if isinstance(ev, h2.events.DataReceived):
                body += ev.data
                arrivals.append(time.monotonic() - start)
            elif isinstance(ev, h2.events.TrailersReceived):
                trailers = [(bytes(k), bytes(v)) for k, v in ev.headers]
            elif isinstance(ev, h2.events.StreamEnded):
                ended = True
                break
        tls.close()
    assert ended and body == b"".join(frames)
    assert trailers == [(b"grpc-status", b"0"), (b"grpc-message", b"done")]
    assert arrivals[-1] - arrivals[0] > 0.3


@pytest.mark.parametrize("value", ["-1", "nan"])
def test_a_bad_pace_is_one_line(value, cli_env, tmp_path):
    proc = cli("replay", "-c", "sse", "--pace", value, "--", "true", env=cli_env, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("replayproxy: error: --pace: the pace should be a number from 0")


def _body(client: httpx.Client, url: str) -> bytes:
    with client.stream("GET", url) as r:
        assert r.status_code == 200
        return b"".join(r.iter_raw())


def test_a_big_stream_is_redacted_from_its_file_and_replayed(sse_upstream, stream_proxy,
                                                              cassette_dir):
    """A 9 MiB event stream (over the size kept in memory while recording): the client
    gets it as sent, the cassette holds it redacted in every event, a new_episodes run
    replays what it just recorded (from its journal), and offline replay gives the
    recorded bytes."""
    sent = b"".join(big_event(n) for n in range(BIG_EVENTS))
    assert len(sent) > BIG_BODY
    with stream_proxy(RecordMode.ALL) as p, _client(p) as client:
        assert _body(client, sse_upstream.url("/big-events")) == sent
    cassette = load_cassette(cassette_path(cassette_dir, "streams"))
    it = cassette.interaction(0)
    recorded = it.response.body
    assert b"sk_live_" not in recorded
    events = recorded.split(b"\n\n")[:-1]
    assert len(events) == BIG_EVENTS
    assert all(b'"access_token": "<redacted:access_token:' in e for e in events)
    assert sum(n for _, n in it.chunks) == len(recorded)

    with stream_proxy(RecordMode.NEW_EPISODES) as p, _client(p) as client:
        url = sse_upstream.url("/big-events?again=1")
        assert _body(client, url) == sent  # recorded now: the upstream's bytes
        assert _body(client, url) == recorded  # replayed from the journal: redacted
    assert p.summary is not None
    assert (p.summary.recorded, p.summary.replayed) == (1, 1)
    assert sse_upstream.hits("/big-events?again=1") == 1

    sse_upstream.stop()
    with offline(sse_upstream), stream_proxy(RecordMode.NONE, pace=0) as p, \
            _client(p) as client:
        assert _body(client, sse_upstream.url("/big-events")) == recorded
        assert _body(client, sse_upstream.url("/big-events?again=1")) == recorded
