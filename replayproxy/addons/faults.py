"""The mitmproxy addon that carries out fault decisions.

The core ``FaultPlan`` decides which fault applies to a request; these addons only act:
they answer with an error status, drop the connection, hold the request, sleep,
truncate or corrupt the body, or refuse a CONNECT. Load them around ``CassetteAddon``::

    [FaultAddon(plan, lock), CassetteAddon(session), FaultResponses()]

``FaultAddon`` decides before the cassette is asked, so a request a fault answers never
uses up a recorded interaction (a polling sequence stays in step, as against a live
API); ``FaultResponses`` acts on the response after the cassette has recorded it, so
a cassette only ever holds the upstream's real response.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time

from mitmproxy import http
from mitmproxy.net.http import status_codes
from mitmproxy.proxy import server_hooks

from replayproxy.addons.cassette import request_from_flow
from replayproxy.core.faults import (
    Corrupt,
    FaultAction,
    FaultPlan,
    Hold,
    RefuseConnect,
    Reset,
    Respond,
    Truncate,
    corrupt_body,
    truncate_body,
)

__all__ = ["FaultAddon", "FaultResponses"]

log = logging.getLogger("replayproxy")

_META = "replayproxy"
_ACTION = "replayproxy_fault"
_TTFB = "replayproxy_recorded_ttfb"
_TRICKLE = "replayproxy_trickle"


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
        if flow.response is not None or not len(self.plan):
            return  # answered already (e.g. proxy authentication), or no faults at all
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

    mitmproxy sends a response an addon made in one piece; to trickle a replayed body,
    the flow is pointed at this server and its response streamed through
    (``flow.response.stream``), so the client gets the headers at once and the body
    a few bytes at a time.
    """

    def __init__(self) -> None:
        self.pending: dict[str, tuple[bytes, bytes, int]] = {}
        self.address: tuple[str, int] | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = (str(host), int(port))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def register(self, response: http.Response, rate: int) -> str:
        """Keep ``response`` for one request; return the path that fetches it."""
        body = response.raw_content or b""
        lines = [f"HTTP/1.1 {response.status_code} {response.reason}".encode("latin-1")]
        for name, value in response.headers.fields:
            if name.lower() not in (b"content-length", b"transfer-encoding", b"connection"):
                lines.append(name + b": " + value)
        lines += [b"Content-Length: %d" % len(body), b"Connection: close", b"", b""]
        token = secrets.token_hex(8)
        self.pending[token] = (b"\r\n".join(lines), body, max(rate, 1))
        return f"/replayproxy-trickle/{token}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
        """Send a replayed response with a slow_body fault through the trickle server."""
        action = flow.metadata.get(_ACTION)
        if not isinstance(action, FaultAction) or action.trickle is None or \
                flow.response is None or flow.metadata.get(_META) != "replayed" or \
                self._trickle.address is None:
            return
        await _wait(flow, action, flow.metadata.get(_TTFB))
        path = self._trickle.register(flow.response, action.trickle.bytes_per_second)
        flow.response = None
        flow.metadata[_TRICKLE] = True
        host, port = self._trickle.address
        flow.request.scheme, flow.request.host, flow.request.port = "http", host, port
        flow.request.path = path
        log.info("fault: slow_body at %d B/s", action.trickle.bytes_per_second)

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
        terminal = action.terminal
        if isinstance(terminal, Truncate):
            body = resp.raw_content or b""
            part = truncate_body(body, terminal)
            resp.raw_content = part
            resp.headers["content-length"] = str(max(len(body), 1))
            resp.headers.pop("transfer-encoding", None)
            resp.headers["connection"] = "close"
            log.info("fault: truncate %d of %d bytes on %s", len(part), len(body),
                     flow.request.pretty_url)
        elif isinstance(terminal, Corrupt):
            resp.decode(strict=False)
            resp.content = corrupt_body(resp.content or b"", terminal)
            log.info("fault: corrupt body on %s", flow.request.pretty_url)
        trickle = action.trickle
        if trickle is not None:
            # a live response goes out in one piece from here (replayed ones are trickled
            # above), so it waits as long as sending it at that rate would take
            size = len(resp.raw_content or b"")
            await asyncio.sleep(size / max(trickle.bytes_per_second, 1))
