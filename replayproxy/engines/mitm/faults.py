"""The mitmproxy addon that carries out fault decisions.

The core ``FaultPlan`` decides which fault applies to a request; these addons only act:
they answer with an error status, drop the connection, hold the request, sleep,
truncate or corrupt the body, or refuse a CONNECT. Load them around ``CassetteAddon``::

    [FaultAddon(plan, lock), CassetteAddon(session), FaultResponses()]

``FaultAddon`` decides before the cassette is asked, so a request a fault answers never
uses up a recorded interaction (a polling sequence stays in step, as against a live
API); ``FaultResponses`` acts on the response after the cassette has recorded it, so
a cassette only ever holds the upstream's real response.

``slow_body`` is a real trickle, replayed or live. mitmproxy sends a response it
has in full (one an addon made, or a buffered upstream one) in one piece, and only
streams a body as it comes in from a server; so a slow body is served by a loopback
server in the proxy (``_Trickle``) that the flow is pointed at, with the response
streamed through. A live request is first sent upstream as a copy, through
mitmproxy's own client replay (``_fetch``): every addon sees that copy as the live
exchange it is, so the cassette records the upstream's full, unmodified response from
it, and the client's flow, answered by the trickle server, is never recorded.
"""

from __future__ import annotations

import asyncio
import html
import logging
import secrets
import threading
import time
from typing import Any

from mitmproxy import ctx, http, version
from mitmproxy.addons.clientplayback import ReplayHandler
from mitmproxy.flow import Error
from mitmproxy.net.http import status_codes
from mitmproxy.proxy import server_hooks

from replayproxy.engines.mitm.cassette import request_from_flow
from replayproxy.faults.effects import Corrupt, Hold, RefuseConnect, Reset, Respond, Truncate
from replayproxy.faults.mangle import corrupt_body, truncate_body
from replayproxy.faults.plan import FaultAction, FaultPlan

__all__ = ["FaultAddon", "FaultResponses"]

log = logging.getLogger("replayproxy")

_META = "replayproxy"
_ACTION = "replayproxy_fault"
_TTFB = "replayproxy_recorded_ttfb"
_TRICKLE = "replayproxy_trickle"
_FETCH = "replayproxy_fault_fetch"
"""Marks the copy of a live request that ``FaultResponses`` sends upstream itself."""


def _respond(effect: Respond) -> http.Response:
    headers = {"X-Replayproxy": "fault", **dict(effect.headers)}
    response = http.Response.make(effect.status, effect.body, headers)
    response.reason = status_codes.RESPONSES.get(effect.status, "")
    return response


class FaultAddon:
    """Inject the faults of a ``FaultPlan`` (shared with the control API under ``lock``)."""

    def __init__(self, plan: FaultPlan, lock: threading.Lock | None = None) -> None:
        self.plan = plan
        self.lock = lock or threading.Lock()

    def _decide(self, flow: http.HTTPFlow) -> FaultAction | None:
        with self.lock:
            return self.plan.decide(request_from_flow(flow.request), time.monotonic())

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if not len(self.plan):
            return
        with self.lock:
            action = self.plan.decide_connect(flow.request.host, flow.request.port, "https",
                                              time.monotonic())
        if action is not None and isinstance(action.terminal, RefuseConnect):
            log.info("fault: refusing CONNECT %s:%d", flow.request.host, flow.request.port)
            flow.response = http.Response.make(
                502, b"replayproxy fault: connection refused\n", {"X-Replayproxy": "fault"})

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or not len(self.plan) or flow.metadata.get(_FETCH):
            # answered already (e.g. proxy authentication), no faults at all, or the
            # upstream copy of a request that was decided already
            return
        if flow.request.scheme == "http":
            with self.lock:
                refused = self.plan.decide_connect(flow.request.host, flow.request.port,
                                                   "http", time.monotonic())
            if refused is not None:
                self._mark(flow, "refused")
                flow.response = http.Response.make(
                    502, b"replayproxy fault: connection refused\n", {"X-Replayproxy": "fault"})
                return
        action = self._decide(flow)
        if action is None:
            return
        flow.metadata[_ACTION] = action
        terminal = action.terminal
        if isinstance(terminal, Respond):
            self._mark(flow, "status")
            flow.response = _respond(terminal)
        elif isinstance(terminal, Reset):
            self._mark(flow, "reset")
            flow.response = None
            # latency rules apply here too: a slow server that then drops the connection
            await _wait(flow, action, None)
            flow.kill()
        elif isinstance(terminal, Hold):
            self._mark(flow, "timeout")
            flow.response = None
            # an async hook holds only this flow; the others go on (measured)
            await asyncio.sleep(terminal.max_seconds)
            flow.kill()

    def _mark(self, flow: http.HTTPFlow, what: str) -> None:
        """Mark a flow the fault answered, so the cassette never records it."""
        flow.metadata[_META] = f"fault:{what}"
        log.info("fault: %s on %s %s", what, flow.request.method, flow.request.pretty_url)



async def _wait(flow: http.HTTPFlow, action: FaultAction, recorded: float | None) -> None:
    """Sleep for every latency rule that fired, in rule order."""
    for delay in action.delays:
        elapsed = time.time() - flow.request.timestamp_start
        seconds = delay.wait(elapsed, recorded)
        if seconds > 0:
            await asyncio.sleep(seconds)


class _Trickle:
    """A loopback server that sends registered responses at a given byte rate.

    mitmproxy sends a response it holds in full in one piece; to trickle a body, the
    flow is pointed at this server and its response streamed through
    (``flow.response.stream``), so the client gets the headers at once and the body a
    few bytes at a time.
    """

    def __init__(self) -> None:
        self.pending: dict[str, tuple[bytes, bytes, int]] = {}
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
        token = secrets.token_hex(8)
        self.pending[token] = (b"\r\n".join(lines), body, max(rate, 1))
        return f"/replayproxy-trickle/{token}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._sending[task] = writer
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            token = head.split(b" ", 2)[1].rsplit(b"/", 1)[-1].decode("ascii", "replace")
            entry = self.pending.pop(token, None)
            if entry is None:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                return
            response_head, body, rate = entry
            writer.write(response_head)
            await writer.drain()
            step = max(1, rate // 10)  # ten writes a second
            for start in range(0, len(body), step):
                writer.write(body[start:start + step])
                await writer.drain()
                if start + step < len(body):
                    await asyncio.sleep(step / rate)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                IndexError):
            pass  # the client went away: nothing more to send
        finally:
            writer.close()
            if task is not None:
                self._sending.pop(task, None)


def _has_body(request: http.Request, response: http.Response) -> bool:
    """Whether there is a body to trickle (a HEAD, 1xx, 204 or 304 never has one)."""
    status = response.status_code
    return bool(response.raw_content) and request.method.upper() != "HEAD" \
        and not (100 <= status < 200 or status in (204, 304))


def _fetchable(flow: http.HTTPFlow) -> bool:
    """Whether a live request can be sent upstream as a copy first: not a protocol
    upgrade (WebSocket), and its body is at hand (not streamed)."""
    request = flow.request
    return request.raw_content is not None and "upgrade" not in request.headers \
        and flow.websocket is None


def _bad_gateway(message: str) -> http.Response:
    """The 502 mitmproxy answers when the upstream fails (its own page, here rebuilt:
    its helper is private)."""
    title = f"502 {status_codes.RESPONSES[502]}"
    page = (f"<html>\n<head>\n    <title>{title}</title>\n</head>\n<body>\n"
            f"    <h1>{title}</h1>\n    <p>{html.escape(message)}</p>\n</body>\n</html>")
    return http.Response.make(502, page.encode("utf-8", "replace"),
                              {"Server": version.MITMPROXY, "Content-Type": "text/html"})


def _break_body(flow: http.HTTPFlow, terminal: object, resp: http.Response) -> int | None:
    """Apply a ``truncate`` or ``corrupt`` to ``resp``; for a truncate, return the
    length announced for the whole body (the part sent is shorter)."""
    if isinstance(terminal, Truncate):
        body = resp.raw_content or b""
        part = truncate_body(body, terminal)
        resp.raw_content = part
        announced = max(len(body), 1)
        resp.headers["content-length"] = str(announced)
        resp.headers.pop("transfer-encoding", None)
        resp.headers["connection"] = "close"
        log.info("fault: truncate %d of %d bytes on %s", len(part), len(body),
                 flow.request.pretty_url)
        return announced
    if isinstance(terminal, Corrupt):
        # decode and drop Content-Encoding by hand: mitmproxy 12's ``Message.decode()``
        # does nothing on an empty body, so an empty gzip body kept its header and the
        # mangled bytes went out gzip-encoded again (11 and 12 now send the same)
        decoded = resp.get_content(strict=False) or b""
        resp.headers.pop("content-encoding", None)
        resp.content = corrupt_body(decoded, terminal)
        log.info("fault: corrupt body on %s", flow.request.pretty_url)
    return None


class FaultResponses:
    """Apply the response side of a fault ``FaultAddon`` decided: delays, truncation,
    corruption, a slow body. Load it after ``CassetteAddon``."""

    def __init__(self) -> None:
        self._trickle = _Trickle()

    async def running(self) -> None:
        await self._trickle.start()

    async def done(self) -> None:
        await self._trickle.stop()

    async def request(self, flow: http.HTTPFlow) -> None:
        """Send the response of a request with a slow_body fault through the trickle
        server: the replayed one, or, live, the upstream's (fetched first)."""
        action = flow.metadata.get(_ACTION)
        if not isinstance(action, FaultAction) or action.trickle is None or \
                self._trickle.address is None:
            return
        state = flow.metadata.get(_META)
        if state == "replayed" and flow.response is not None:
            response, recorded = flow.response, flow.metadata.get(_TTFB)
        elif state is None and flow.response is None and flow.error is None and \
                _fetchable(flow):
            # the client's flow is answered from the copy's response: never record it;
            # and the response hook leaves it alone (also mitmproxy's 502 if the
            # upstream fails: no fault delays that, as none would without the copy)
            flow.metadata[_META] = "fault:slow_body"
            flow.metadata[_TRICKLE] = True
            fetched = await self._fetch(flow)
            if fetched is None:
                return
            response, recorded = fetched
        else:
            return  # a fault's own answer, an upgrade: see the response hook
        flow.metadata[_TRICKLE] = True  # the response hook has nothing more to do
        await _wait(flow, action, recorded)
        announced = _break_body(flow, action.terminal, response)
        if not _has_body(flow.request, response):
            flow.response = response  # nothing to trickle: sent as it is
            return
        rate = action.trickle.bytes_per_second
        log.info("fault: slow_body at %d B/s on %s", rate, flow.request.pretty_url)
        path = self._trickle.register(response, rate, announced)
        flow.response = None
        request = flow.request
        host, port = self._trickle.address
        request.scheme, request.host, request.port, request.path = "http", host, port, path
        if request.raw_content or "transfer-encoding" in request.headers:
            # the trickle server never reads a request body (the upstream had it)
            request.headers.pop("transfer-encoding", None)
            request.raw_content = b""
            request.headers["content-length"] = "0"

    async def _fetch(self, flow: http.HTTPFlow) -> tuple[http.Response, float] | None:
        """Send a copy of the live request ``flow`` upstream and return the response
        and its time to first byte.

        The copy goes through mitmproxy's client replay, so it takes the same way as
        any live request (upstream TLS and its trust, HTTP/2, every addon's hooks): the
        cassette decides and records it as usual. If it fails, ``flow`` gets what the
        client would have got without the fault (mitmproxy's 502, or a killed
        connection) and this returns None.
        """
        fetch = flow.copy()
        for key in (_ACTION, _META, _TRICKLE, _TTFB):  # a plain live request to all addons
            fetch.metadata.pop(key, None)
        fetch.metadata[_FETCH] = True
        try:
            await ReplayHandler(fetch, ctx.options).replay()
        except Exception as e:  # a crash here must not send the request upstream again
            log.exception("replayproxy failed to fetch %s", flow.request.pretty_url)
            flow.response = _bad_gateway(f"replayproxy internal error: {e!r}")
            return None
        response = fetch.response
        if fetch.error is not None or response is None:
            if fetch.error is not None and fetch.error.msg == Error.KILLED_MESSAGE:
                flow.kill()  # e.g. the cassette could not record it
            else:
                flow.response = _bad_gateway(fetch.error.msg if fetch.error else
                                             "no response from the upstream")
            return None
        ttfb = max(0.0, response.timestamp_start - fetch.request.timestamp_start)
        return response, ttfb

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        # replay refuses every upstream connection; the trickle server is not upstream
        if self._trickle.address is not None and data.server.address == self._trickle.address:
            data.server.error = None

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(_TRICKLE) and flow.response is not None:
            flow.response.stream = True

    async def response(self, flow: http.HTTPFlow) -> None:
        action = flow.metadata.get(_ACTION)
        if not isinstance(action, FaultAction) or flow.response is None or \
                flow.metadata.get(_TRICKLE):
            return
        resp = flow.response
        recorded = flow.metadata.get(_TTFB)
        if recorded is None and resp.timestamp_start and flow.request.timestamp_start:
            recorded = max(0.0, resp.timestamp_start - flow.request.timestamp_start)
        await _wait(flow, action, recorded)
        _break_body(flow, action.terminal, resp)
        trickle = action.trickle
        if trickle is not None:
            # not trickled (a fault's own answer, an unmatched request, an upgrade): it
            # waits as long as sending it at that rate would take, then goes in one piece
            size = len(resp.raw_content or b"")
            await asyncio.sleep(size / max(trickle.bytes_per_second, 1))
