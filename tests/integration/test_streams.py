"""Streamed responses through the real proxy: Server-Sent Events and chunked bodies reach
the client as they arrive while recording, are recorded with each chunk's arrival time,
and are replayed offline as a stream paced by ``--pace``; a stream the upstream breaks
off is replayed broken off at the same point; a client that leaves a stream (HTTP/1.1 or
an HTTP/2 stream reset) breaks nothing else.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from replayproxy.cassette.store import cassette_path, load_cassette
from replayproxy.model import RecordMode
from replayproxy.run import ProxyRun
from tests.conftest import UpstreamCA
from tests.integration.conftest import RunningProxy, serving
from tests.integration.stream_upstream import EVENTS, GAP, PIECES, StreamHandler, event
from tests.integration.support import Upstream, offline



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


def _client(p: RunningProxy, *, http2: bool = False) -> httpx.Client:
    return httpx.Client(proxy=p.url, verify=ssl.create_default_context(
        cafile=str(p.proxy.ca.bundle)), trust_env=False, timeout=30, http2=http2)


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
        assert ended < 0.5 * (EVENTS - 1) * GAP


def test_chunked_body_without_sse(sse_upstream, stream_proxy, cassette_dir):
    """A chunked body that is not SSE streams too: pieces arrive as sent, recorded with
    their times, replayed with the recorded framing (chunked) and pacing."""
    url = sse_upstream.url("/slow-chunked")
    with stream_proxy(RecordMode.ALL) as p, _client(p) as client:
        with client.stream("GET", url) as r:
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
