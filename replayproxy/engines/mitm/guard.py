"""Keep the fault control API out of the proxy's own traffic.

The control API listens on 127.0.0.1 beside the proxy. A client that sends everything
through the proxy (``HTTP_PROXY`` without a ``NO_PROXY`` for loopback) would otherwise
reach it *through* the proxy: in a recording run the call is forwarded, answered and
recorded, token and all. ``OwnControl`` answers such requests (and refuses such
``CONNECT`` tunnels) itself with a 403 saying how to call the API, before replayproxy's
addon sees them, so they are never forwarded and never recorded.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from mitmproxy import http

__all__ = ["OwnControl"]

log = logging.getLogger("replayproxy")

_REFUSAL = ("replayproxy: the control API is not served through the proxy; call "
            "$REPLAYPROXY_CONTROL_URL directly (put 127.0.0.1 in NO_PROXY)\n")


def _loopback(host: str) -> bool:
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


class OwnControl:
    """Refuse requests and tunnels through the proxy to the control API's port.

    Args:
        control_url: called per request; the control API's URL, or None when there
            is none.
    """

    def __init__(self, control_url: Callable[[], str | None]) -> None:
        self.control_url = control_url

    def _is_control(self, host: str, port: int) -> bool:
        url = self.control_url()
        return url is not None and port == urlsplit(url).port and _loopback(host)

    def _refuse(self, flow: http.HTTPFlow) -> None:
        log.warning("refused a request through the proxy to the control API (%s %s:%d)",
                    flow.request.method, flow.request.host, flow.request.port)
        flow.response = http.Response.make(403, _REFUSAL.encode(),
                                           {"Content-Type": "text/plain",
                                            "X-Replayproxy": "refused"})

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is None and self._is_control(flow.request.host, flow.request.port):
            self._refuse(flow)

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is None and self._is_control(flow.request.host, flow.request.port):
            self._refuse(flow)
