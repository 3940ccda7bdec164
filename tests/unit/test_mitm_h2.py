"""The HTTP/2 helpers of the mitm engine (issue 13) on mitmproxy's own test flows:
trailers converted both ways, left out for HTTP/1 clients that cannot take them, a
client's stream reset recognised, gRPC errors as gRPC statuses."""

from __future__ import annotations

import logging

import pytest
from mitmproxy import flow as mflow
from mitmproxy import http, tls
from mitmproxy.test import tflow

from replayproxy.cassette.store import CassetteFile
from replayproxy.decision.alpn import AlpnPolicy
from replayproxy.engines.mitm import h2, http1_trailers
from replayproxy.engines.mitm.convert import fault_response, response_from_flow, to_flow_response
from replayproxy.faults.spec import parse_fault
from replayproxy.model import Interaction, Request, Response

TRAILERS = (("grpc-status", "0"), ("x-checksum", "abc"))


def _flow(version: str = "HTTP/2.0", *, chunked: bool = False) -> http.HTTPFlow:
    f = tflow.tflow()
    f.request.http_version = version
    headers = (("transfer-encoding", "chunked"),) if chunked else ()
    f.response = to_flow_response(Response(200, headers=headers, body=b"x",
                                           http_version=version, trailers=TRAILERS))
    return f


def test_trailers_go_both_ways_through_convert() -> None:
    resp = to_flow_response(Response(200, body=b"x", trailers=TRAILERS))
    assert resp.trailers is not None and list(resp.trailers.items(multi=True)) == list(TRAILERS)
    assert response_from_flow(resp).trailers == TRAILERS
    assert to_flow_response(Response(200)).trailers is None
    assert response_from_flow(to_flow_response(Response(200))).trailers == ()


def test_an_http2_client_keeps_the_trailers() -> None:
    f = _flow("HTTP/2.0")
    h2.fit_trailers(f)
    assert f.response is not None and f.response.trailers is not None


def test_an_http1_client_keeps_them_after_a_chunked_body() -> None:
    http1_trailers.install()
    assert http1_trailers.installed()
    f = _flow("HTTP/1.1", chunked=True)
    h2.fit_trailers(f)
    assert f.response is not None and f.response.trailers is not None


def test_an_http1_client_of_a_fixed_length_body_gets_none_and_a_log_line(caplog) -> None:
    caplog.set_level(logging.WARNING, "replayproxy")
    f = _flow("HTTP/1.1")
    h2.fit_trailers(f)
    assert f.response is not None and f.response.trailers is None
    assert "recorded trailers (grpc-status, x-checksum) are not sent" in caplog.text


def test_a_grpc_fault_answer_carries_its_status_in_trailers() -> None:
    effect = parse_fault("status,grpc=UNAVAILABLE,body=later").params
    resp = fault_response(effect)  # type: ignore[arg-type]
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/grpc"
    assert resp.trailers is not None
    assert dict(resp.trailers) == {"grpc-status": "14", "grpc-message": "later"}


@pytest.mark.parametrize(("version", "message", "reset"), [
    ("HTTP/2.0", "stream reset by client (CANCEL)", True),
    ("HTTP/2.0", "Client disconnected.", False),
    ("HTTP/1.1", "stream reset by client (CANCEL)", False),
])
def test_stream_reset(version: str, message: str, reset: bool, caplog) -> None:
    f = tflow.tflow()
    f.request.http_version = version
    f.error = mflow.Error(message)
    assert h2.stream_reset(f) is reset
    assert ("reset its HTTP/2 stream (CANCEL)" in caplog.text) is reset


def test_grpc_error_answers_grpc_calls_only() -> None:
    f = tflow.tflow()
    f.request.http_version = "HTTP/2.0"
    f.request.headers["content-type"] = "application/grpc"
    assert h2.grpc_error(f, 14, "no match\n  body grpc message 1: differs", "unmatched")
    assert f.response is not None and f.response.trailers is not None
    assert f.response.headers["x-replayproxy"] == "unmatched"
    assert dict(f.response.trailers) == {
        "grpc-status": "14", "grpc-message": "no match | body grpc message 1: differs"}
    plain = tflow.tflow()
    assert not h2.grpc_error(plain, 14, "x", "unmatched") and plain.response is None


def _tls(offers: list[bytes], client_alpn: bytes | None = None,
         server_alpn: bytes | None = None) -> tls.TlsData:
    from mitmproxy import options
    from mitmproxy.proxy import context
    from OpenSSL import SSL

    client, server = tflow.tclient_conn(), tflow.tserver_conn()
    client.alpn_offers = offers
    server.address = ("api.example.com", 443)
    ctx = context.Context(client, options.Options())
    ctx.server = server
    conn = SSL.Connection(SSL.Context(SSL.TLS_METHOD))
    conn.set_app_data({"client_alpn": client_alpn, "server_alpn": server_alpn, "http2": True})
    return tls.TlsData(client, ctx, conn)


def _policy(version: str) -> AlpnPolicy:
    it = Interaction(Request("GET", "https", "api.example.com", 443, "/", http_version=version),
                     Response(200))
    return AlpnPolicy(CassetteFile.from_interactions("c", [it]), records=False)


def test_choose_protocol_sets_the_clients_alpn_from_the_cassette() -> None:
    data = _tls([b"http/1.1", b"h2"])  # httpx's order
    h2.choose_protocol(data, _policy("HTTP/2.0"))
    assert data.ssl_conn is not None and data.ssl_conn.get_app_data()["client_alpn"] == b"h2"
    data = _tls([b"h2", b"http/1.1"])  # curl's
    h2.choose_protocol(data, _policy("HTTP/1.1"))
    assert data.ssl_conn is not None
    assert data.ssl_conn.get_app_data()["client_alpn"] == b"http/1.1"


@pytest.mark.parametrize(("client_alpn", "server_alpn"), [(b"http/1.1", None), (None, b"h2")])
def test_choose_protocol_leaves_forced_or_mirrored_choices(client_alpn, server_alpn) -> None:
    data = _tls([b"http/1.1", b"h2"], client_alpn, server_alpn)
    h2.choose_protocol(data, _policy("HTTP/2.0"))
    assert data.ssl_conn is not None
    assert data.ssl_conn.get_app_data()["client_alpn"] == client_alpn


def test_upstream_is_offered_only_http_protocols() -> None:
    data = _tls([])
    server = tflow.tserver_conn()
    server.alpn_offers = (b"grpc-exp", b"h2")
    data.conn = server
    h2.upstream_offers(data)
    assert server.alpn_offers == (b"h2",)
    server.alpn_offers = (b"h2", b"http/1.1")
    h2.upstream_offers(data)
    assert server.alpn_offers == (b"h2", b"http/1.1")
