"""HTTP/2 in the mitm engine: the client's protocol, trailers, reset streams.

- ``choose_protocol`` (the ``tls_start_client`` hook, after mitmproxy's TLS addon has
  built the connection): with no upstream connected yet, pick the client's protocol
  with ``replayproxy.decision.alpn.AlpnPolicy`` instead of mitmproxy's "client's first
  offer", so httpx (``http/1.1, h2``) gets HTTP/2 and a replay answers over what was
  recorded.
- ``upstream_offers`` (``tls_start_server``): gRPC clients offer ``grpc-exp`` besides
  ``h2``; mitmproxy copies the offers upstream, and a gRPC server that picks
  ``grpc-exp`` would be spoken to over HTTP/1. Only ``h2`` and HTTP/1 go upstream.
- ``fit_trailers``: an HTTP/1 client takes trailers only after a chunked body (see
  ``http1_trailers``); for one that gets a response of fixed length (recorded over
  HTTP/2), the trailers are left out with a log line rather than crash the connection.
- ``grpc_error``: replayproxy's own answers (an unmatched call) to a gRPC client as a
  gRPC status with the text in ``grpc-message``, which the client shows, rather than
  an HTTP 502 it would report as "Received http2 header with status: 502".
- ``stream_reset``: a client that resets an HTTP/2 stream (a cancelled gRPC call): one
  log line, that flow only.
- ``unfinished_request``: a client that gave up before its request was whole, as a
  bidirectional gRPC call waiting for each reply does (replayproxy answers, and records,
  a call once its request has ended): one line saying so, for the run's errors.
"""

from __future__ import annotations

import logging

from mitmproxy import http, tls

from replayproxy import grpc_wire
from replayproxy.decision.alpn import HTTP1, AlpnPolicy
from replayproxy.engines.mitm import http1_trailers

__all__ = ["choose_protocol", "fit_trailers", "grpc_error", "stream_reset",
           "unfinished_request", "upstream_offers"]

log = logging.getLogger("replayproxy")

_HTTP = (b"h2", b"http/1.1", b"http/1.0")
_RESET = "stream reset by client"
"""mitmproxy's words for an RST_STREAM (11 and 12; an upstream's reset reads the same)."""


def _host_port(data: tls.TlsData) -> tuple[str, int] | None:
    address = data.context.server.address
    if address:
        return str(address[0]), int(address[1])
    if data.conn.sni:
        return data.conn.sni, 443
    return None


def choose_protocol(data: tls.TlsData, policy: AlpnPolicy | None) -> None:
    """Pick the client's protocol when mitmproxy has nothing upstream to mirror."""
    conn = data.ssl_conn
    if policy is None or conn is None or not data.conn.alpn_offers:
        return
    app_data = conn.get_app_data()
    if not isinstance(app_data, dict) or app_data.get("client_alpn") is not None \
            or app_data.get("server_alpn") is not None:
        return  # HTTP/1 forced (a TLS proxy listener), or the upstream's choice to mirror
    target = _host_port(data)
    if target is None:
        return
    offers = [o.decode("ascii", "replace") for o in data.conn.alpn_offers]
    choice = policy.choose(*target, offers)
    if choice is not None:
        app_data["client_alpn"] = choice.encode("ascii")
        log.debug("client of %s:%d offered %s: %s", *target, ", ".join(offers), choice)


def upstream_offers(data: tls.TlsData) -> None:
    """Offer the upstream only the protocols mitmproxy speaks to servers."""
    server = data.conn
    offers = tuple(server.alpn_offers or ())
    kept = tuple(o for o in offers if o in _HTTP)
    if kept != offers and kept:
        server.alpn_offers = kept
        if data.ssl_conn is not None:
            data.ssl_conn.set_alpn_protos(list(kept))


def fit_trailers(flow: http.HTTPFlow) -> None:
    """Leave out a replayed response's trailers when the client cannot take them."""
    response = flow.response
    if response is None or not response.trailers or flow.request.is_http2 \
            or flow.request.is_http3:
        return
    chunked = "chunked" in response.headers.get("transfer-encoding", "").lower()
    if chunked and http1_trailers.installed():
        return
    names = ", ".join(dict.fromkeys(response.trailers.keys()))
    log.warning("%s %s: the recorded trailers (%s) are not sent: the client speaks %s "
                "and the recorded body is not chunked (trailers need HTTP/2 or a chunked "
                "body; use an HTTP/2 client)",
                flow.request.method, flow.request.pretty_url, names,
                flow.request.http_version or HTTP1)
    response.trailers = None


_GRPC_MESSAGE_LIMIT = 2000
"""Longest ``grpc-message`` sent (clients and proxies cap header sizes)."""


def grpc_error(flow: http.HTTPFlow, code: int, text: str, marker: str) -> bool:
    """Answer a gRPC call with status ``code`` and ``text``; False if it is no gRPC call."""
    if not grpc_wire.is_grpc(_pairs(flow.request.headers)):
        return False
    message = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    if len(message) > _GRPC_MESSAGE_LIMIT:
        message = message[:_GRPC_MESSAGE_LIMIT] + "…"
    flow.response = http.Response.make(200, b"", {"Content-Type": "application/grpc",
                                                  "X-Replayproxy": marker})
    flow.response.trailers = http.Headers(
        tuple((k.encode(), v.encode()) for k, v in grpc_wire.status_trailers(code, message)))
    fit_trailers(flow)
    return True


def _pairs(headers: http.Headers) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in headers.items(multi=True))


def stream_reset(flow: http.HTTPFlow) -> bool:
    """True (and one log line) if ``flow`` ended because its HTTP/2 stream was reset: a
    client cancelling a call (a gRPC stream it stopped reading). Nothing was answered in
    full, so nothing is recorded; the connection's other streams go on."""
    error = flow.error
    if error is None or not flow.request.is_http2 or not error.msg.startswith(_RESET):
        return False
    log.warning("%s %s: the client reset its HTTP/2 stream (%s) before the response ended: "
             "not recorded; the other streams go on", flow.request.method,
             flow.request.pretty_url, error.msg.removeprefix(_RESET).strip(" ()") or "reset")
    return True


def unfinished_request(flow: http.HTTPFlow) -> str | None:
    """The one-line reason (also logged) when ``flow`` is a gRPC call whose client gave up
    before its request ended (a client-streaming or bidirectional call that waited for a
    reply before sending the rest: replayproxy forwards and answers a call once its
    request is whole, so such a call stalls until the client's deadline). None for any
    other flow."""
    if flow.error is None or flow.request.timestamp_end is not None \
            or not grpc_wire.is_grpc(tuple((k.decode("latin-1"), v.decode("latin-1"))
                                           for k, v in flow.request.headers.fields)):
        return None
    message = (f"{flow.request.method} {flow.request.pretty_url}: the client gave up before "
               f"its request ended ({' '.join(flow.error.msg.split())}): a client-streaming "
               "or bidirectional gRPC call that waits for a reply before sending the rest "
               "cannot be recorded or replayed (replayproxy answers a call once its request "
               "is whole); nothing recorded for it")
    log.error("%s", message)
    return message
