"""Flows to replayproxy's model and back: the only place that reads mitmproxy's types.

Headers are kept as they were on the wire (order, case, duplicates), bodies as sent
(still content-encoded), so a replay is byte for byte what was recorded.
"""

from __future__ import annotations

import html
import time

from mitmproxy import http, version
from mitmproxy.net.http import status_codes

from replayproxy.engines.reasons import reason_for
from replayproxy.faults.effects import Respond
from replayproxy.model import Headers, Interaction, Request, Response

__all__ = [
    "bad_gateway",
    "fault_response",
    "interaction_from_flow",
    "plain_response",
    "request_from_flow",
    "response_from_flow",
    "to_flow_response",
]


def _headers(h: http.Headers, *, drop_proxy: bool = False) -> tuple[tuple[str, str], ...]:
    """Headers as (name, value) str pairs; ``drop_proxy`` drops Proxy-* headers, which
    a client sends to the proxy itself and which never reach the upstream."""
    return tuple(
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in h.fields
        if not (drop_proxy and k.lower().startswith(b"proxy-"))
    )


def request_from_flow(req: http.Request) -> Request:
    """Convert a mitmproxy request to the model (body as on the wire)."""
    path, _, query = req.path.partition("?")
    return Request(
        method=req.method,
        scheme=req.scheme,
        host=req.host,
        port=req.port,
        path=path,
        query=query,
        headers=_headers(req.headers, drop_proxy=True),
        body=req.raw_content or b"",
        http_version=req.http_version,
    )


def response_from_flow(resp: http.Response) -> Response:
    """Convert a mitmproxy response to the model (body as on the wire)."""
    return Response(
        status=resp.status_code,
        reason=resp.reason,
        headers=_headers(resp.headers),
        body=resp.raw_content or b"",
        http_version=resp.http_version,
        trailers=_headers(resp.trailers) if resp.trailers else (),
    )


def interaction_from_flow(flow: http.HTTPFlow, request: Request | None = None) -> Interaction:
    """The completed exchange of ``flow``, timed from the request's start; ``request``
    is the one converted when the flow came in (converted again if not given)."""
    assert flow.response is not None
    req, resp = flow.request, flow.response
    start = req.timestamp_start
    return Interaction(
        request=request if request is not None else request_from_flow(req),
        response=response_from_flow(resp),
        recorded_at=round(start, 3),
        ttfb=round(max(0.0, resp.timestamp_start - start), 6),
        duration=round(max(0.0, (resp.timestamp_end or resp.timestamp_start) - start), 6),
    )


def _flow_headers(headers: Headers) -> http.Headers:
    return http.Headers(tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers))


def to_flow_response(recorded: Response) -> http.Response:
    """A mitmproxy response that sends ``recorded`` exactly as it was recorded, trailers
    included (``h2.fit_trailers`` drops them for a client that cannot take them)."""
    now = time.time()
    return http.Response(
        http_version=recorded.http_version.encode("latin-1"),
        status_code=recorded.status,
        reason=recorded.reason.encode("latin-1"),
        headers=_flow_headers(recorded.headers),
        content=recorded.body,
        trailers=_flow_headers(recorded.trailers) if recorded.trailers else None,
        timestamp_start=now,
        timestamp_end=now,
    )


def plain_response(status: int, text: str, marker: str) -> http.Response:
    """A text answer of replayproxy's own, marked ``X-Replayproxy: marker``."""
    response = http.Response.make(
        status,
        text.encode("utf-8"),
        {"Content-Type": "text/plain; charset=utf-8", "X-Replayproxy": marker},
    )
    response.reason = reason_for(status)
    return response


def fault_response(effect: Respond) -> http.Response:
    """The answer of a ``status`` or ``rate_limit`` fault."""
    headers = {"X-Replayproxy": "fault", **dict(effect.headers)}
    response = http.Response.make(effect.status, effect.body, headers)
    response.reason = reason_for(effect.status)  # the same on mitmproxy 11 and 12
    if effect.trailers:
        response.trailers = _flow_headers(effect.trailers)
    return response


def bad_gateway(message: str) -> http.Response:
    """The 502 mitmproxy answers when the upstream fails (its own page, here rebuilt:
    its helper is private)."""
    title = f"502 {status_codes.RESPONSES[502]}"
    page = (f"<html>\n<head>\n    <title>{title}</title>\n</head>\n<body>\n"
            f"    <h1>{title}</h1>\n    <p>{html.escape(message)}</p>\n</body>\n</html>")
    return http.Response.make(502, page.encode("utf-8", "replace"),
                              {"Server": version.MITMPROXY, "Content-Type": "text/html"})
