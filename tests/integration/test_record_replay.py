"""Record real traffic through the proxy, then replay it: the client sees the same bytes.

Each client (curl, requests, httpx) runs over HTTPS (a CONNECT tunnel through the
proxy) and over plain HTTP against a local upstream with its own CA.
"""

from __future__ import annotations

import gzip
import json
import re
from types import SimpleNamespace

import pytest
from cryptography import x509
from mitmproxy import http
from mitmproxy.addons import tlsconfig

from replayproxy.cassette.store import cassette_path, load_cassette
from replayproxy.config import Settings
from replayproxy.model import RecordMode, header_value
from replayproxy.run import ProxyRun
from tests.integration.conftest import serving
from tests.integration.support import (
    BIG_BODY,
    CHUNKS,
    GZIP_BODY,
    GZIP_PAYLOAD,
    JSON_BODY,
    PNG_BODY,
    RequestsClient,
    Resp,
    Upstream,
)

# (method, path, request body) sent during record and again during replay
TRAFFIC = [
    ("GET", "/json", None),
    ("GET", "/gzip", None),
    ("GET", "/png", None),
    ("GET", "/big", None),
    ("GET", "/chunked", None),
    ("GET", "/headers", None),
    ("GET", "/status/404", None),
    ("POST", "/echo", b'{"amount": 1200, "currency": "eur"}'),
    ("POST", "/echo", bytes(range(256)) * 4),
]

CLIENT_KINDS = ["curl", "requests", "httpx"]


def _cookie_names(view: tuple[int, list[tuple[str, str]], bytes]) -> tuple:
    """A comparable view with each Set-Cookie reduced to the cookie's name."""
    status, headers, body = view
    return status, [(k, v.split("=")[0] if k == "set-cookie" else v) for k, v in headers], body


def _cookies_redacted(view: tuple[int, list[tuple[str, str]], bytes]) -> tuple:
    """The same for a replayed response, checking each cookie value is a placeholder
    (secrets are redacted before anything is written; see test_redaction.py)."""
    for k, v in view[1]:
        if k == "set-cookie":
            assert re.fullmatch(r"\w+=<redacted:set-cookie:[0-9a-f]{6}>", v), v
    return _cookie_names(view)


def _send(client, upstream: Upstream) -> list[Resp]:
    out = []
    for method, path, body in TRAFFIC:
        headers = {"Accept-Encoding": "gzip"} if path == "/gzip" else None
        out.append(client.request(method, upstream.url(path), body=body, headers=headers))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_replay_gives_the_recorded_bytes(kind, upstream, run_proxy, cassette_dir):
    with run_proxy("traffic", RecordMode.ALL) as p, p.client(kind) as client:
        recorded = _send(client, upstream)
    assert p.summary is not None and p.summary.recorded == len(TRAFFIC)

    # what the client got while recording is what the upstream sent
    by_path = dict(zip([t[1] for t in TRAFFIC], recorded, strict=False))
    assert by_path["/json"].body == JSON_BODY
    assert by_path["/gzip"].body == GZIP_BODY  # still gzip on the wire, not decoded
    assert by_path["/gzip"].header("content-encoding") == "gzip"
    assert by_path["/png"].body == PNG_BODY
    assert by_path["/big"].body == BIG_BODY
    assert by_path["/chunked"].body == b"".join(CHUNKS)
    assert by_path["/status/404"].status == 404
    assert json.loads(recorded[-1].body)["length"] == 1024

    connections = upstream.connections
    with run_proxy("traffic", RecordMode.NONE) as p, p.client(kind) as client:
        replayed = _send(client, upstream)
    assert p.summary is not None and p.summary.replayed == len(TRAFFIC)
    assert not p.summary.unmatched
    assert upstream.connections == connections, "replay connected to the upstream"

    for (method, path, _), rec, rep in zip(TRAFFIC, recorded, replayed, strict=True):
        assert _cookies_redacted(rep.comparable()) == _cookie_names(rec.comparable()), (
            f"{method} {path} differs on replay")
    assert replayed[3].body == BIG_BODY
    chunked = replayed[4]
    if not (kind == "curl" and upstream.scheme == "https"):  # curl speaks h2 in the tunnel
        assert chunked.header("transfer-encoding") == "chunked"
        assert chunked.header("content-length") is None
    assert replayed[1].body == GZIP_BODY
    assert gzip.decompress(replayed[1].body) == GZIP_PAYLOAD


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_cassette_keeps_wire_bytes(kind, https_upstream, run_proxy, cassette_dir):
    """The cassette stores gzip bytes as sent, the full request, duplicate headers."""
    with run_proxy("wire", RecordMode.ALL) as p, p.client(kind) as client:
        client.get(https_upstream.url("/gzip"), headers={"Accept-Encoding": "gzip"})
        client.get(https_upstream.url("/headers?x=1"))
        client.post(https_upstream.url("/echo"), b"payload-bytes")
        rec = client.get(https_upstream.url("/headers?x=1"))
    assert rec.header_all("set-cookie") == ["a=1", "b=2"]  # the client saw the real ones

    cassette = load_cassette(cassette_path(cassette_dir, "wire"))
    its = list(cassette.interactions())
    assert len(its) == 4
    gz, hdrs, echo = its[0], its[1], its[2]
    assert gz.request.method == "GET"
    assert (gz.request.scheme, gz.request.host, gz.request.port, gz.request.path) == (
        "https", "127.0.0.1", https_upstream.port, "/gzip")
    assert gz.response.body == GZIP_BODY
    assert header_value(gz.response.headers, "Content-Encoding") == "gzip"
    assert hdrs.request.query == "x=1"
    # duplicates and original case as the upstream sent them; cookie values redacted
    cookies = [v for k, v in hdrs.response.headers if k == "Set-Cookie"]
    assert [c.split("=")[0] for c in cookies] == ["a", "b"]
    assert all(re.fullmatch(r"[ab]=<redacted:set-cookie:[0-9a-f]{6}>", c) for c in cookies)
    assert ("X-MiXed-Case", "Yes") in hdrs.response.headers
    assert echo.request.body == b"payload-bytes"
    assert echo.request.method == "POST"
    assert not any(k.lower().startswith("proxy-") for k, _ in echo.request.headers)
    assert its[3].ttfb >= 0 and its[3].duration >= its[3].ttfb
    assert its[3].recorded_at > 1_700_000_000


def test_query_order_does_not_matter_on_replay(upstream, run_proxy):
    with run_proxy("query", RecordMode.ALL) as p, p.client("requests") as client:
        recorded = client.get(upstream.url("/query?a=1&b=two&c=3"))
    assert recorded.body == b"query=a=1&b=two&c=3"

    with run_proxy("query", RecordMode.NONE) as p, p.client("requests") as client:
        replayed = client.get(upstream.url("/query?c=3&a=1&b=two"))
        other = client.get(upstream.url("/query?c=3&a=1&b=three"))
    assert replayed.status == 200
    assert replayed.body == recorded.body
    assert other.status == 502  # a different value is a different request
    assert other.header("x-replayproxy") == "unmatched"


def _poll(client, upstream: Upstream, times: int) -> list[str | int]:
    out: list[str | int] = []
    for _ in range(times):
        r = client.get(upstream.url("/poll?id=job-1"))
        out.append(json.loads(r.body)["status"] if r.status == 200 else r.status)
    return out


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_repeated_requests_replay_in_recorded_order(kind, https_upstream, run_proxy):
    with run_proxy("poll", RecordMode.ALL) as p, p.client(kind) as client:
        assert _poll(client, https_upstream, 2) == ["pending", "done"]

    with run_proxy("poll", RecordMode.NONE) as p, p.client(kind) as client:
        # used up: the last recorded response repeats
        assert _poll(client, https_upstream, 4) == ["pending", "done", "done", "done"]
    assert p.summary is not None and not p.summary.unmatched


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_strict_replay_treats_extra_repeats_as_unmatched(kind, https_upstream, run_proxy):
    with run_proxy("poll", RecordMode.ALL) as p, p.client(kind) as client:
        assert _poll(client, https_upstream, 2) == ["pending", "done"]

    connections = https_upstream.connections
    with run_proxy("poll", RecordMode.NONE, strict=True) as p, p.client(kind) as client:
        assert _poll(client, https_upstream, 3) == ["pending", "done", 502]
        extra = client.get(https_upstream.url("/poll?id=job-1"))
    assert extra.header("X-Replayproxy") == "unmatched"
    assert p.summary is not None and len(p.summary.unmatched) == 2
    assert https_upstream.connections == connections


def test_recorded_order_holds_across_clients(https_upstream, run_proxy):
    """Recorded order holds across clients: a curl poll continues where requests left."""
    with run_proxy("poll2", RecordMode.ALL) as p, p.client("requests") as client:
        assert _poll(client, https_upstream, 3) == ["pending", "done", "done"]
    with run_proxy("poll2", RecordMode.NONE) as p:
        with p.client("requests") as first:
            assert _poll(first, https_upstream, 1) == ["pending"]
        with p.client("curl") as second:
            assert _poll(second, https_upstream, 1) == ["done"]


class _AnswersOnePath:
    """An addon ahead of the cassette that answers one path itself."""

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.path == "/answered-by-an-addon":
            flow.response = http.Response.make(200, b"not from the upstream")


def test_a_response_another_addon_made_is_never_recorded(http_upstream, proxy_ca,
                                                         cassette_dir, tmp_path, caplog):
    """Only upstream responses are recorded, not one an addon ahead of the cassette made:
    ours here, and from mitmproxy 12 on TlsConfig's, which answers any request for the
    CRL its certificates name (``/mitmproxy-<CA serial>.crl``) itself."""
    run = ProxyRun("answered", RecordMode.ALL, cassette_dir=cassette_dir, settings=Settings(),
                   ca_dir=proxy_ca.directory, control=False, addons=[_AnswersOnePath()])
    running = SimpleNamespace(run=run, summary=None)
    serial = x509.load_pem_x509_certificate(proxy_ca.cert.read_bytes()).serial_number
    crl_path = f"/mitmproxy-{serial}.crl"
    serves_crl = hasattr(tlsconfig.TlsConfig, "crl_path")  # mitmproxy >= 12
    with serving(running, caplog), \
            RequestsClient(run.proxy_url, proxy_ca.bundle, tmp_path) as client:
        got = client.get(http_upstream.url("/answered-by-an-addon"))
        assert (got.status, got.body) == (200, b"not from the upstream")
        crl = client.get(http_upstream.url(crl_path))
        assert crl.header("Content-Type") == \
            ("application/pkix-crl" if serves_crl else "text/plain")
        assert client.get(http_upstream.url("/json")).body == JSON_BODY
    paths = [it.request.path for it in
             load_cassette(cassette_path(cassette_dir, "answered")).interactions()]
    assert paths == ([] if serves_crl else [crl_path]) + ["/json"]
    assert http_upstream.hits("/answered-by-an-addon") == 0
    assert http_upstream.hits(crl_path) == (0 if serves_crl else 1)
