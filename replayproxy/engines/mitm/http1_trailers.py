"""Trailers on chunked HTTP/1.1 responses, which mitmproxy's HTTP/1 layer lacks.

mitmproxy (11 and 12, checked up to 12.3.1) passes trailers over HTTP/2 only: an
HTTP/1.1 upstream that ends a chunked response with trailers crashes the connection
("HTTP trailers are not implemented yet"), and a response with trailers cannot be sent
to an HTTP/1.1 client at all. ``install()`` teaches the two places what they miss:

- receiving (``Http1Client.read_body``): the trailers h11 parses after the last chunk
  become mitmproxy's ``ResponseTrailers`` event, so ``flow.response.trailers`` holds
  them, as for HTTP/2;
- sending (``Http1Server.send``): a chunked response's trailers go after its last chunk
  (``0\\r\\n`` + trailers + ``\\r\\n``) instead of the bare end.

Request trailers are left as mitmproxy handles them. ``install()`` is idempotent and
does nothing on a mitmproxy whose layer does not look as expected (then HTTP/1
trailers stay unsupported, as ``installed()`` says).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Any

import h11
from mitmproxy import http
from mitmproxy.proxy import commands
from mitmproxy.proxy.layers.http import _http1
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._events import (
    ResponseEndOfMessage,
    ResponseHeaders,
    ResponseTrailers,
)

__all__ = ["install", "installed"]

log = logging.getLogger("replayproxy")

_LAST_CHUNK = b"0\r\n\r\n"
_done = False


class _KeepTrailers:
    """A body reader that hands h11's trailers to the layer instead of raising."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.trailers: list[tuple[bytes, bytes]] = []

    def _strip(self, event: Any) -> Any:
        if isinstance(event, h11.EndOfMessage) and event.headers:
            self.trailers = [(bytes(k), bytes(v)) for k, v in event.headers.raw_items()]
            return h11.EndOfMessage()
        return event

    def __call__(self, buf: Any) -> Any:
        return self._strip(self.reader(buf))

    def read_eof(self) -> Any:
        return self._strip(self.reader.read_eof())


Gen = Generator[commands.Command, Any, None]


def _read_body(original: Callable[..., Gen]) -> Callable[..., Gen]:
    def read_body(self: Any, event: Any) -> Gen:
        keeper = self.body_reader
        if not isinstance(keeper, _KeepTrailers):
            keeper = self.body_reader = _KeepTrailers(keeper)
        for command in original(self, event):
            if isinstance(command, ReceiveHttp) and keeper.trailers \
                    and isinstance(command.event, ResponseEndOfMessage):
                trailers, keeper.trailers = keeper.trailers, []
                yield ReceiveHttp(ResponseTrailers(command.event.stream_id,
                                                   http.Headers(trailers)))
            yield command
    return read_body


def _send(original: Callable[..., Gen]) -> Callable[..., Gen]:
    def send(self: Any, event: Any) -> Gen:
        if isinstance(event, ResponseHeaders):
            self.replayproxy_trailers = None
        if isinstance(event, ResponseTrailers):
            response = self.response
            if response is not None and "chunked" in response.headers.get(
                    "transfer-encoding", "").lower():
                self.replayproxy_trailers = event.trailers
            else:
                log.warning("trailers (%s) not sent to an HTTP/1 client: the response is "
                            "not chunked", ", ".join(event.trailers.keys()))
            return
        trailers = getattr(self, "replayproxy_trailers", None)
        for command in original(self, event):
            if trailers and isinstance(event, ResponseEndOfMessage) \
                    and isinstance(command, commands.SendData) and command.data == _LAST_CHUNK:
                command = commands.SendData(command.connection, b"0\r\n" + bytes(trailers)
                                            + b"\r\n")
                self.replayproxy_trailers = None
            yield command
    return send


def installed() -> bool:
    """Whether HTTP/1 trailers are handled in this process."""
    return _done


def install() -> None:
    """Patch mitmproxy's HTTP/1 layer as described above (once)."""
    global _done
    if _done:
        return
    client, server = getattr(_http1, "Http1Client", None), getattr(_http1, "Http1Server", None)
    if client is None or server is None or not hasattr(client, "read_body") \
            or not hasattr(server, "send"):
        log.debug("mitmproxy's HTTP/1 layer is not as expected: HTTP/1 trailers unsupported")
        return
    client.read_body = _read_body(client.read_body)
    server.send = _send(server.send)
    _done = True
