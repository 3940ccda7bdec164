"""Header-read and idle timeouts and a cap on client connections (``replayproxy.limits``).

mitmproxy 11 and 12 close a connection only after 10 minutes without any event, and
accept connections until the process runs out of file descriptors: a "slowloris" client
sending a header byte every few seconds, or thousands of connections that never send
anything, hold the proxy's resources for good. ``ConnectionLimits`` applies the policy
of ``replayproxy.limits.ConnectionTable``: the hooks tell the table what each client
connection is doing, a sweep every fraction of the shorter timeout closes what it names.

When bytes last came in on a connection is read from mitmproxy's own inactivity
watchdog (``timeout_watchdog.last_activity`` of the connection's handler, updated on
every event of the connection, the same in 11.0 and 12.3). A connection is closed by
closing the client's socket, as if the client had left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import Hashable
from typing import Any

from mitmproxy import connection, ctx, http, tcp

from replayproxy.limits import ConnectionTable, Limits, connection_cap

__all__ = ["ConnectionLimits"]

log = logging.getLogger("replayproxy")

_REFUSED_LOG_EVERY = 10.0
"""Seconds between two warnings about connections refused at the cap."""


def _open_files() -> int | None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


class ConnectionLimits:
    """Close client connections that stay silent too long; cap how many are open.

    Args:
        limits: the timeouts and the cap (the cap is lowered to what the process's
            open-file limit allows, see ``connection_cap``).
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.table = ConnectionTable(limits, connection_cap(limits.max_connections,
                                                            _open_files()))
        self._sweeper: asyncio.Task[None] | None = None
        self._refused = 0
        self._refused_logged = float("-inf")

    # -- lifecycle ----------------------------------------------------------------------

    def running(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def done(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_forever(self) -> None:
        tick = min(1.0, max(0.05, min(self.limits.header_timeout,
                                      self.limits.idle_timeout) / 5))
        while True:
            await asyncio.sleep(tick)
            try:
                self.sweep(time.time())
            except Exception:  # a sweep that fails must not end the sweeping
                log.exception("replayproxy: checking connection timeouts failed")

    def sweep(self, now: float) -> None:
        """Close every connection the table says has timed out."""
        handlers = ctx.master.addons.get("proxyserver").connections
        expired = list(self.table.expired(now, lambda conn: _last_received(handlers, conn)))
        for conn, reason in expired:
            handler = handlers.get(conn)
            self.table.closed(conn)
            if handler is not None:
                log.info("closing the connection from %s: %s", _peer(handler.client), reason)
                _close(handler)

    # -- connections --------------------------------------------------------------------

    def client_connected(self, client: connection.Client) -> None:
        admitted, evict = self.table.admit(client.id, time.time())
        if not admitted:
            client.error = "replayproxy: too many connections"
            self._note_refused()
            return
        if evict is not None:
            handler = ctx.master.addons.get("proxyserver").connections.get(evict)
            if handler is not None:
                log.info("closing the connection from %s, the longest waiting, to make "
                         "room (%d connections open)", _peer(handler.client), len(self.table))
                _close(handler)

    def client_disconnected(self, client: connection.Client) -> None:
        self.table.closed(client.id)

    def _note_refused(self) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_logged >= _REFUSED_LOG_EVERY:
            log.warning("refused %d connection(s): %d are open with a request in progress "
                        "each, the most allowed; raise max_connections in [limits] if "
                        "this is not a flood", self._refused, self.table.cap)
            self._refused, self._refused_logged = 0, now

    # -- what each connection is doing --------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.table.begin(flow.client_conn.id, flow.id)

    def response(self, flow: http.HTTPFlow) -> None:
        self.table.end(flow.client_conn.id, flow.id, time.time())

    def error(self, flow: http.HTTPFlow) -> None:
        self.table.end(flow.client_conn.id, flow.id, time.time())

    def http_connect(self, flow: http.HTTPFlow) -> None:
        # the tunnel is open: what comes next is the TLS handshake and the first request
        self.table.end(flow.client_conn.id, flow.id, time.time())
        self.table.ready(flow.client_conn.id, time.time())

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        self.table.begin(flow.client_conn.id, ("websocket", flow.id))

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self.table.end(flow.client_conn.id, ("websocket", flow.id), time.time())

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        self.table.begin(flow.client_conn.id, ("tcp", flow.id))

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self.table.end(flow.client_conn.id, ("tcp", flow.id), time.time())

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self.tcp_end(flow)


def _last_received(handlers: dict[Any, Any], conn: Hashable) -> float | None:
    watchdog = getattr(handlers.get(conn), "timeout_watchdog", None)
    last = getattr(watchdog, "last_activity", None)
    return last if isinstance(last, float) else None


def _peer(client: connection.Client) -> str:
    host, port = (client.peername or ("?", 0))[:2]
    return f"{host}:{port}"


def _close(handler: Any) -> None:
    """Close the client's socket: its reader sees the end of the stream and mitmproxy
    tears the connection down as for any client that leaves (this works also before
    the handler's task is set, when ``close_connection`` would fail)."""
    io = handler.transports.get(handler.client)
    if io is not None and io.writer is not None:
        io.writer.close()
