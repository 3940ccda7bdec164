"""HTTP/2 and trailers through the proxy (issue 13).

Clients that negotiate HTTP/2 with the proxy (httpx ``http2=True``, curl ``--http2``)
are recorded over it and answered over it on replay, offline; trailers sent by an
HTTP/2 upstream (the ``h2`` library) or after a chunked HTTP/1.1 body are recorded and
replayed; a client that cannot take the recorded trailers gets the rest, and a log line.
"""

from __future__ import annotations

import logging
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from replayproxy.cassette.store import cassette_path, load_cassette
from replayproxy.model import RecordMode
from tests.conftest import UpstreamCA
from tests.integration.h2_upstream import H2_JSON, TRAILERS, H2Upstream
from tests.integration.support import QuietHandler, Upstream, base_env

pytestmark = pytest.mark.slow


def server_context(upstream_ca: UpstreamCA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    upstream_ca.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def h2_upstream(upstream_ca: UpstreamCA) -> Iterator[H2Upstream]:
    server = H2Upstream(server_context(upstream_ca))
    try:
        yield server
    finally:
        server.stop()


class _ChunkedTrailers(QuietHandler):
    """A chunked HTTP/1.1 body followed by trailers."""

    def do_GET(self) -> None:
        self.server.count_request("GET", self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Trailer", "x-checksum")
        self.end_headers()
        for chunk in (b"first,", b"second"):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\nx-checksum: sha1-chunked\r\nx-served-by: h1\r\n\r\n")


@pytest.fixture
def chunked_upstream(upstream_ca: UpstreamCA) -> Iterator[Upstream]:
    server = Upstream(upstream_ca.server_context, _ChunkedTrailers)
    try:
        yield server
    finally:
        server.stop()


def httpx_h2(proxy_url: str, ca: Path) -> httpx.Client:
    return httpx.Client(proxy=proxy_url, http2=True, trust_env=False, timeout=30,
                        verify=ssl.create_default_context(cafile=str(ca)))


def curl(proxy_url: str, ca: Path, workdir: Path, url: str, *args: str
         ) -> tuple[str, dict[str, str], bytes, list[tuple[str, str]]]:
    """curl through the proxy: (protocol line, headers, body, trailers)."""
    head, body = workdir / "head", workdir / "body"
    env = base_env(CURL_CA_BUNDLE=str(ca), https_proxy=proxy_url, HTTPS_PROXY=proxy_url)
    proc = subprocess.run(["curl", "-sS", "--max-time", "30", "--suppress-connect-headers",
                           *args, "-D", str(head), "-o", str(body), url],
                          env=env, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    blocks = [b for b in head.read_bytes().decode("latin-1").replace("\r\n", "\n")
              .split("\n\n") if b.strip()]
    status_block = [b for b in blocks if b.startswith("HTTP/")][-1]
    status_line, *lines = status_block.split("\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    trailers = [] if blocks[-1].startswith("HTTP/") else [
        (k.lower(), v.strip()) for k, _, v in (line.partition(":")
                                               for line in blocks[-1].split("\n") if line)]
    return status_line.split()[0], headers, body.read_bytes(), trailers


def test_httpx_http2_is_recorded_and_replayed_over_h2(h2_upstream, run_proxy, cassette_dir):
    with run_proxy("h2", RecordMode.ALL) as p, httpx_h2(p.url, p.proxy.ca.bundle) as c:
        live = c.get(h2_upstream.url("/json"))
    assert live.http_version == "HTTP/2"
    assert live.content == H2_JSON
    recorded = load_cassette(cassette_path(cassette_dir, "h2")).interaction(0)
    assert recorded.request.http_version == "HTTP/2.0"
    assert "h2" in load_cassette(cassette_path(cassette_dir, "h2")).features
    h2_upstream.stop()
    seen = h2_upstream.connections
    with run_proxy("h2", RecordMode.NONE) as p, httpx_h2(p.url, p.proxy.ca.bundle) as c:
        replayed = c.get(h2_upstream.url("/json"))
    assert replayed.http_version == "HTTP/2"
    assert (replayed.status_code, replayed.content) == (200, H2_JSON)
    assert replayed.headers["server"] == "h2-upstream"
    assert p.summary is not None and p.summary.replayed == 1
    assert h2_upstream.connections == seen


def test_httpx_is_answered_over_http1_when_that_was_recorded(https_upstream, run_proxy):
    """The stdlib upstream speaks HTTP/1.1: recorded with requests, a replaying httpx
    client offering h2 gets HTTP/1.1, as when it was recorded."""
    with run_proxy("h1", RecordMode.ALL) as p, p.client("requests") as c:
        c.get(https_upstream.url("/json"))
    https_upstream.stop()
    with run_proxy("h1", RecordMode.NONE) as p, httpx_h2(p.url, p.proxy.ca.bundle) as c:
        replayed = c.get(https_upstream.url("/json"))
    assert replayed.http_version == "HTTP/1.1"
    assert replayed.status_code == 200


def test_curl_http2_trailers_are_recorded_and_replayed(h2_upstream, run_proxy, cassette_dir,
                                                       tmp_path):
    with run_proxy("tr", RecordMode.ALL) as p:
        live = curl(p.url, p.proxy.ca.bundle, tmp_path, h2_upstream.url("/trailers"),
                    "--http2")
    assert live[0] == "HTTP/2"
    assert live[3] == TRAILERS
    stored = load_cassette(cassette_path(cassette_dir, "tr")).interaction(0).response
    assert list(stored.trailers) == TRAILERS
    h2_upstream.stop()
    seen = h2_upstream.connections
    with run_proxy("tr", RecordMode.NONE) as p:
        replayed = curl(p.url, p.proxy.ca.bundle, tmp_path, h2_upstream.url("/trailers"),
                        "--http2")
    assert replayed[0] == "HTTP/2"
    assert replayed[2:] == live[2:]  # body and trailers
    assert h2_upstream.connections == seen


def test_chunked_http1_trailers_are_recorded_and_replayed(chunked_upstream, run_proxy,
                                                          cassette_dir, tmp_path):
    """The upstream speaks HTTP/1.1; curl talks HTTP/1.1, then HTTP/2, to the proxy."""
    url = chunked_upstream.url("/trailers")
    with run_proxy("chunked", RecordMode.ALL) as p:
        live_h1 = curl(p.url, p.proxy.ca.bundle, tmp_path, url, "--http1.1")
        live_h2 = curl(p.url, p.proxy.ca.bundle, tmp_path, url, "--http2")
    expected = [("x-checksum", "sha1-chunked"), ("x-served-by", "h1")]
    assert (live_h1[0], live_h1[2], live_h1[3]) == ("HTTP/1.1", b"first,second", expected)
    assert live_h1[1]["transfer-encoding"] == "chunked"
    assert (live_h2[0], live_h2[2], live_h2[3]) == ("HTTP/2", b"first,second", expected)
    stored = load_cassette(cassette_path(cassette_dir, "chunked")).interaction(0).response
    assert list(stored.trailers) == expected
    chunked_upstream.stop()
    with run_proxy("chunked", RecordMode.NONE) as p:
        over_h1 = curl(p.url, p.proxy.ca.bundle, tmp_path, url, "--http1.1")
        over_h2 = curl(p.url, p.proxy.ca.bundle, tmp_path, url, "--http2")
    assert over_h1 == live_h1
    assert (over_h2[0], over_h2[2], over_h2[3]) == ("HTTP/2", b"first,second", expected)
    assert chunked_upstream.hits("/trailers") == 2


def test_http1_client_gets_h2_recording_without_its_trailers(h2_upstream, run_proxy,
                                                              tmp_path, caplog):
    with run_proxy("tr1", RecordMode.ALL) as p:
        curl(p.url, p.proxy.ca.bundle, tmp_path, h2_upstream.url("/trailers"), "--http2")
    h2_upstream.stop()
    caplog.set_level(logging.WARNING, "replayproxy")
    with run_proxy("tr1", RecordMode.NONE) as p:
        got = curl(p.url, p.proxy.ca.bundle, tmp_path, h2_upstream.url("/trailers"),
                   "--http1.1")
        again = curl(p.url, p.proxy.ca.bundle, tmp_path, h2_upstream.url("/trailers"),
                     "--http2")
    assert (got[0], got[2], got[3]) == ("HTTP/1.1", b"body before the trailers\n", [])
    assert again[3] == TRAILERS  # the same proxy still serves HTTP/2 clients in full
    warnings = [r.getMessage() for r in caplog.records if r.name == "replayproxy"
                and r.levelno == logging.WARNING]
    assert any("x-checksum, x-served-by" in w and "not sent" in w for w in warnings), warnings
    assert "mitmproxy has crashed" not in caplog.text

