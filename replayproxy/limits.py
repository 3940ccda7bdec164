"""How long a client connection may stay silent, and how many may be open at once.

The policy the mitm engine applies to client connections (engine-neutral, no sockets):

- **header timeout**: once a client has started sending a request (the first bytes
  arrived), its headers must be complete within ``header_timeout``; a "slowloris" client
  that sends a header one byte every few seconds is closed.
- **idle timeout**: a connection with no request in progress that sends nothing for
  ``idle_timeout`` is closed (a fresh connection, one between keep-alive requests, a
  tunnel before its first request). A request in progress, however long (a held fault, a
  slow upload, a streamed answer, a WebSocket), is never timed out here.
- **connection cap**: at most ``max_connections`` client connections are open at once
  (never more than the process's file descriptors allow, see ``connection_cap``). When
  a new one arrives at the cap, the connection that has waited longest for a request is
  closed to make room; if every open connection has a request in progress, the new one
  is refused. An idle flood therefore never locks working clients out.

``ConnectionTable`` keeps the state and answers which connections to close; the engine
feeds it events and closes what it names. Times are seconds of any one clock.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field

__all__ = ["DEFAULT_LIMITS", "ConnectionTable", "Limits", "connection_cap"]


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits on client connections (``[limits]`` in the configuration)."""

    header_timeout: float = 30.0
    """Seconds a request's headers may take once its first bytes arrived."""
    idle_timeout: float = 300.0
    """Seconds a connection with no request in progress may send nothing."""
    max_connections: int = 1000
    """Client connections open at once."""

    def __post_init__(self) -> None:
        if not self.header_timeout > 0 or not self.idle_timeout > 0:
            raise ValueError("timeouts must be more than 0 seconds")
        if self.max_connections < 1:
            raise ValueError("max_connections must be 1 or more")


DEFAULT_LIMITS = Limits()

_FDS_PER_CONNECTION = 2
"""A recorded connection holds the client's socket and the upstream's."""
_FDS_RESERVED = 64
"""Descriptors kept for the cassette, journals, logs, listeners and the control API."""


def connection_cap(limit: int, open_files: int | None) -> int:
    """The client connections to allow: ``limit``, lowered so that they cannot use up
    ``open_files`` (the soft ``RLIMIT_NOFILE``; None: no such limit), never below 8."""
    if open_files is None or open_files <= 0:
        return limit
    room = (open_files - _FDS_RESERVED) // _FDS_PER_CONNECTION
    return max(8, min(limit, room))


@dataclass(slots=True)
class _Connection:
    waiting_since: float
    """When the connection started waiting for a request (meaningless while busy)."""
    busy: set[Hashable] = field(default_factory=set)
    """Requests (and tunnels, WebSockets) in progress."""
    baseline: float | None = None
    """When bytes had last come in, as first seen while waiting (the end of the previous
    exchange counts as activity too)."""
    first: float | None = None
    """The first activity seen after ``baseline``."""
    started: float | None = None
    """When the next request began to arrive: a second, later activity was seen (one
    alone may be the upstream closing its side, not the client sending)."""

    def wait(self, now: float) -> None:
        self.waiting_since, self.baseline, self.first, self.started = now, None, None, None

    def saw(self, last: float | None) -> None:
        """Note when bytes last came in (None: unknown)."""
        if self.baseline is None:
            self.baseline = last if last is not None else self.waiting_since
        elif last is not None and last > (self.first or self.baseline):
            if self.first is None:
                self.first = last
            else:
                self.started = self.first


class ConnectionTable:
    """The open client connections and what each is doing.

    Args:
        limits: the policy.
        cap: the connections allowed at once [default: ``limits.max_connections``].
    """

    def __init__(self, limits: Limits, cap: int | None = None) -> None:
        self.limits = limits
        self.cap = cap if cap is not None else limits.max_connections
        self._open: dict[Hashable, _Connection] = {}

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, conn: Hashable, now: float) -> tuple[bool, Hashable | None]:
        """A new connection ``conn``: whether to keep it, and a waiting connection to
        close to make room for it (None when there is room)."""
        evict = None
        if len(self._open) >= self.cap:
            waiting = [(c.waiting_since, i) for i, c in self._open.items() if not c.busy]
            if not waiting:
                return False, None
            evict = min(waiting, key=lambda w: w[0])[1]
            del self._open[evict]
        self._open[conn] = _Connection(now)
        return True, evict

    def closed(self, conn: Hashable) -> None:
        """``conn`` has gone."""
        self._open.pop(conn, None)

    def begin(self, conn: Hashable, what: Hashable) -> None:
        """A request (tunnel, WebSocket) ``what`` is in progress on ``conn``."""
        state = self._open.get(conn)
        if state is not None:
            state.busy.add(what)

    def end(self, conn: Hashable, what: Hashable, now: float) -> None:
        """``what`` is over; with nothing else in progress ``conn`` waits for a request."""
        state = self._open.get(conn)
        if state is None or what not in state.busy:
            return
        state.busy.discard(what)
        if not state.busy:
            state.wait(now)

    def ready(self, conn: Hashable, now: float) -> None:
        """``conn`` waits for a request from ``now`` (a tunnel was just opened)."""
        state = self._open.get(conn)
        if state is not None and not state.busy:
            state.wait(now)

    def expired(self, now: float, last_received: Callable[[Hashable], float | None]
                ) -> Iterator[tuple[Hashable, str]]:
        """The connections to close at ``now``, each with the reason; ``last_received``
        tells when bytes last came in on a connection (None: unknown). Called every
        fraction of the shorter timeout: the first call after a connection starts waiting
        notes where its activity stands, later ones see new bytes."""
        limits = self.limits
        for conn, state in list(self._open.items()):
            if state.busy:
                continue
            if state.started is None:
                state.saw(last_received(conn))
            if state.started is not None:
                if now - state.started > limits.header_timeout:
                    yield conn, (f"request headers not complete after "
                                 f"{limits.header_timeout:g} s")
            elif now - state.waiting_since > limits.idle_timeout:
                yield conn, f"idle for {limits.idle_timeout:g} s"
