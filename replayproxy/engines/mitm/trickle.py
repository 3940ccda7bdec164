"""Slow bodies for real: a loopback server that sends a response a few bytes at a time.

mitmproxy sends a response it holds in full (one an addon made, or a buffered upstream
one) in one piece, and only streams a body as it comes in from a server. So a body
with a ``slow_body`` fault is served by ``TrickleServer``, a loopback server in the
proxy that the flow is pointed at, with the response streamed through
(``flow.response.stream``): the client gets the headers at once and the body at the
given rate.

A live request is first sent upstream as a copy (``fetch_copy``), through mitmproxy's
own client replay: it takes the same way as any live request (upstream TLS and its
trust, HTTP/2, every addon's hooks), so the cassette records the upstream's full,
unmodified response from it, and the client's flow, answered by the trickle server,
is never recorded.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.addons.clientplayback import ReplayHandler
from mitmproxy.flow import Error
from mitmproxy.net.http import status_codes

from replayproxy.engines.mitm.convert import bad_gateway

__all__ = ["Sender", "TrickleServer", "fetch_copy", "fetchable", "has_body", "point_at"]

log = logging.getLogger("replayproxy")

Sender = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
"""Sends one registered response on the connection that asked for it (the request head
has been read); the server closes the connection afterwards."""


class TrickleServer:
    """A loopback server that sends registered responses at a given byte rate (or as
    another ``Sender`` says)."""

    def __init__(self) -> None:
        self.pending: dict[str, Sender] = {}
        self.address: tuple[str, int] | None = None
        self._server: asyncio.Server | None = None
        self._sending: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def start(self) -> None:
        # a generous line limit: the request head is the client's, cookies and all
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=2**20)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = (str(host), int(port))

    async def stop(self) -> None:
        """Stop listening and end the trickles still being sent.

        ``Server.wait_closed()`` alone differs by Python: from 3.12.1 it waits for every
        open connection (a slow body could hold up shutdown for as long as it takes),
        before that it returns at once and ``asyncio.run()`` then cancels the handlers
        still sleeping between two writes (3.11 logs each as an "Exception in callback
        ... CancelledError"). So drop those connections and wait for their handlers,
        which end at their next write.
        """
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._sending.values()):
            writer.transport.abort()
        if self._sending:
            await asyncio.wait(list(self._sending), timeout=5)
        await self._server.wait_closed()

    def register(self, response: http.Response, rate: int,
                 content_length: int | None = None) -> str:
        """Keep ``response`` for one request; return the path that fetches it.

        The body goes out as it is on the wire (still content-encoded), announced with
        ``Content-Length: content_length`` (default: its length; more to cut it short).
        """
        body = response.raw_content or b""
        reason = response.data.reason or status_codes.RESPONSES.get(
            response.status_code, "").encode("latin-1")
        lines = [b"HTTP/1.1 %d %s" % (response.status_code, reason)]
        for name, value in response.headers.fields:
            if name.lower() not in (b"content-length", b"transfer-encoding", b"connection"):
                lines.append(name + b": " + value)
        length = len(body) if content_length is None else content_length
        lines += [b"Content-Length: %d" % length, b"Connection: close", b"", b""]
        return self.add(_trickle_sender(b"\r\n".join(lines), body, max(rate, 1)))

    def add(self, sender: Sender) -> str:
        """Keep ``sender`` for one request; return the path that runs it."""
        token = secrets.token_hex(8)
        self.pending[token] = sender
        return f"/replayproxy-trickle/{token}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._sending[task] = writer
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            token = head.split(b" ", 2)[1].rsplit(b"/", 1)[-1].decode("ascii", "replace")
            sender = self.pending.pop(token, None)
            if sender is None:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                return
            await sender(reader, writer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                IndexError):
            pass  # the client went away: nothing more to send
        finally:
            writer.close()
            if task is not None:
                self._sending.pop(task, None)


def _trickle_sender(head: bytes, body: bytes, rate: int) -> Sender:
    async def send(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head)
        await writer.drain()
        step = max(1, rate // 10)  # ten writes a second
        for start in range(0, len(body), step):
            writer.write(body[start:start + step])
            await writer.drain()
            if start + step < len(body):
                await asyncio.sleep(step / rate)

    return send


def has_body(request: http.Request, response: http.Response) -> bool:
    """Whether there is a body to trickle (a HEAD, 1xx, 204 or 304 never has one)."""
    status = response.status_code
    return bool(response.raw_content) and request.method.upper() != "HEAD" \
        and not (100 <= status < 200 or status in (204, 304))


def fetchable(flow: http.HTTPFlow) -> bool:
    """Whether a live request can be sent upstream as a copy first: not a protocol
    upgrade (WebSocket), and its body is at hand (not streamed)."""
    request = flow.request
    return request.raw_content is not None and "upgrade" not in request.headers \
        and flow.websocket is None


def point_at(flow: http.HTTPFlow, address: tuple[str, int], path: str) -> None:
    """Send ``flow``'s request to the trickle server at ``address`` for ``path``."""
    flow.response = None
    request = flow.request
    request.scheme, request.host, request.port, request.path = "http", *address, path
    if request.raw_content or "transfer-encoding" in request.headers:
        # the trickle server never reads a request body (the upstream had it)
        request.headers.pop("transfer-encoding", None)
        request.raw_content = b""
        request.headers["content-length"] = "0"


async def fetch_copy(flow: http.HTTPFlow, mark: Callable[[http.HTTPFlow], None]
                     ) -> tuple[http.Response, float] | None:
    """Send a copy of the live request ``flow`` upstream; return the response and its
    time to first byte.

    ``mark`` marks the copy for every addon (ours records it as a plain live exchange).
    If it fails, ``flow`` gets what the client would have got without the fault
    (mitmproxy's 502, or a killed connection) and this returns None.
    """
    fetch = flow.copy()
    mark(fetch)
    try:
        await ReplayHandler(fetch, ctx.options).replay()
    except Exception as e:  # a crash here must not send the request upstream again
        log.exception("replayproxy failed to fetch %s", flow.request.pretty_url)
        flow.response = bad_gateway(f"replayproxy internal error: {e!r}")
        return None
    response = fetch.response
    if fetch.error is not None or response is None:
        if fetch.error is not None and fetch.error.msg == Error.KILLED_MESSAGE:
            flow.kill()  # e.g. the cassette could not record it
        else:
            flow.response = bad_gateway(fetch.error.msg if fetch.error else
                                        "no response from the upstream")
        return None
    ttfb = max(0.0, response.timestamp_start - fetch.request.timestamp_start)
    return response, ttfb
