"""The mitm engine's routes to upstreams: an egress proxy, and the reverse listeners.

``EgressAddon`` sends recorded traffic through a corporate HTTP proxy. In regular mode
mitmproxy 11 and 12 open a request's server connection through an upstream HTTP proxy
when ``flow.server_conn.via`` is set in the ``request`` hook: it sends ``CONNECT
host:port`` to the proxy (for plain http too) and speaks to the upstream inside the
tunnel; with ``connection_strategy=lazy`` nothing is opened before that. The addon
adds ``Proxy-Authorization`` to those CONNECTs when the proxy URL has credentials
(mitmproxy's ``upstream_auth`` addon does this only in upstream mode). It runs after
replayproxy's own addon, so it sees the final destination: a replayed answer needs
no connection, and the loopback servers replayproxy points flows at itself are never
sent through the egress.

``OwnListeners`` lets clients that honour proxy variables use the reverse base URLs:
their request for ``http://127.0.0.1:PORT/...`` reaches the forward proxy, which
serves it as the reverse listener on that port would (the upstream's URL), instead of
treating the listener as an upstream of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from mitmproxy import http
from mitmproxy.proxy import mode_specs

from replayproxy.engines.mitm.addon import STATE
from replayproxy.upstream import Egress

__all__ = ["EgressAddon", "OwnListeners"]

log = logging.getLogger("replayproxy")

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _local(flow: http.HTTPFlow) -> bool:
    """Whether replayproxy pointed the flow at one of its own loopback servers (the
    trickle server of a ``slow_body`` fault)."""
    return bool(getattr(flow.metadata.get(STATE), "trickled", False))


class EgressAddon:
    """Send upstream connections through the egress proxy ``Egress`` names."""

    def __init__(self, egress: Egress) -> None:
        self.egress = egress
        self._auth = {p.address: p.authorization for p in egress.proxies()
                      if p.authorization}

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None:
            return  # answered here: no connection
        request = flow.request
        proxy = None if _local(flow) else self.egress.for_url(request.scheme, request.host,
                                                              request.port)
        flow.server_conn.via = (proxy.scheme, proxy.address) if proxy else None  # type: ignore[assignment]

    def http_connect_upstream(self, flow: http.HTTPFlow) -> None:
        auth = self._auth.get(tuple(flow.server_conn.address or ()))  # type: ignore[arg-type]
        if auth:
            flow.request.headers["Proxy-Authorization"] = auth


class OwnListeners:
    """Serve requests sent through the forward proxy to a reverse listener as that
    listener would.

    Args:
        targets: called when a flow comes in; the reverse listeners' ports mapped to
            their upstream base URLs (scheme, host, port).
    """

    def __init__(self, targets: Callable[[], Mapping[int, tuple[str, str, int]]]) -> None:
        self.targets = targets

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not isinstance(flow.client_conn.proxy_mode, mode_specs.RegularMode):
            return
        request = flow.request
        if request.scheme != "http" or request.host.lower() not in _LOOPBACK:
            return
        target = self.targets().get(request.port)
        if target is None:
            return
        scheme, host, port = target
        request.scheme, request.host, request.port = scheme, host, port
        default = 443 if scheme == "https" else 80
        request.host_header = host if port == default else f"{host}:{port}"
