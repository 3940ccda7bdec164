"""The HTTP/2 helpers of the mitm engine (issue 13) on mitmproxy's own test flows:
trailers converted both ways, left out for HTTP/1 clients that cannot take them, a
client's stream reset recognised, gRPC errors as gRPC statuses."""

from __future__ import annotations

import logging

import pytest
from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.test import tflow

from replayproxy.engines.mitm import h2, http1_trailers
from replayproxy.engines.mitm.convert import fault_response, response_from_flow, to_flow_response
from replayproxy.faults.spec import parse_fault
from replayproxy.model import Response

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
