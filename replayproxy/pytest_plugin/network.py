"""No silent network: while a test replays, its process may connect only to the proxy.

A client that ignores the proxy variables would otherwise reach the internet (or fail
on DNS) without anyone noticing. ``NetworkGuard`` replaces ``socket.socket.connect``,
``connect_ex`` and ``socket.create_connection`` for the duration of a test: a TCP
connection to anywhere but the allowed addresses raises ``BlockedConnection`` (an
``OSError``, so clients fail as on a refused connection) and is listed in ``blocked``,
which the plugin turns into the test's failure even if the code swallowed the error.
Unix sockets, and the proxy's own threads (named ``replayproxy*``), are never blocked.
Host names are shown as the client gave them, also when it connects to an address it
looked up (``getaddrinfo`` is watched to remember which name an address came from).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterable
from typing import Any

__all__ = ["BlockedConnection", "NetworkGuard", "parse_hosts"]

_INET = (socket.AF_INET, socket.AF_INET6)


class BlockedConnection(ConnectionRefusedError):
    """A connection the guard refused (the message names the host and the fix)."""


def parse_hosts(values: Iterable[str]) -> list[tuple[str, int | None]]:
    """``HOST`` or ``HOST:PORT`` items (also comma-separated, ``[::1]:80``) as pairs;
    ValueError on a malformed one."""
    out: list[tuple[str, int | None]] = []
    for value in values:
        for item in filter(None, (v.strip() for v in value.split(","))):
            host, port = item, None
            if item.startswith("["):
                host, _, rest = item[1:].partition("]")
                port_text = rest.removeprefix(":") if rest else ""
            elif item.count(":") == 1:
                host, _, port_text = item.partition(":")
            else:
                port_text = ""
            if port_text:
                if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                    raise ValueError(f"allowed host {item!r}: the port must be 1-65535")
                port = int(port_text)
            if not host:
                raise ValueError(f"allowed host {item!r}: give HOST or HOST:PORT")
            out.append((host.lower(), port))
    return out


class NetworkGuard:
    """Blocks connections of this process to anywhere but ``allowed`` while installed.

    Args:
        allowed: ``(host, port)`` pairs (port None: any); names are also allowed as the
            addresses they resolve to when installed.
        reason: why connections are blocked, ending the message (the fix).
    """

    def __init__(self, allowed: Iterable[tuple[str, int | None]], reason: str) -> None:
        self.allowed: set[tuple[str, int | None]] = set()
        for host, port in allowed:
            self.allowed.add((host.lower(), port))
            with contextlib.suppress(OSError, UnicodeError):
                for *_, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
                    self.allowed.add((str(address[0]), port))
        self.reason = reason
        self.blocked: list[str] = []
        """``host:port`` of each refused connection, in order (each once)."""
        self._names: dict[str, str] = {}
        self._saved: dict[str, Any] = {}

    def _permitted(self, host: str, port: int) -> bool:
        host = host.lower().strip("[]")
        return (host, port) in self.allowed or (host, None) in self.allowed

    def _check(self, host: str, port: int) -> None:
        if threading.current_thread().name.startswith("replayproxy"):
            return  # the proxy itself (its trickle server for slow_body faults)
        if self._permitted(host, port):
            return
        shown = self._names.get(host.lower(), host)
        where = f"[{shown}]:{port}" if ":" in shown else f"{shown}:{port}"
        if shown != host:
            where += f" ({host})"
        if where not in self.blocked:
            self.blocked.append(where)
        raise BlockedConnection(f"replayproxy blocked a direct connection to {where}: "
                                f"{self.reason}")

    def install(self) -> None:
        """Start blocking (idempotent)."""
        if self._saved:
            return
        cls = socket.socket
        real_connect, real_connect_ex = cls.connect, cls.connect_ex
        real_create, real_lookup = socket.create_connection, socket.getaddrinfo
        guard = self

        def checked(sock: socket.socket, address: Any) -> None:
            if sock.family in _INET and isinstance(address, tuple):
                guard._check(str(address[0]), int(address[1]))

        def connect(self: socket.socket, address: Any) -> None:
            checked(self, address)
            real_connect(self, address)

        def connect_ex(self: socket.socket, address: Any) -> int:
            checked(self, address)
            return real_connect_ex(self, address)

        def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any
                              ) -> socket.socket:
            guard._check(str(address[0]), int(address[1]))  # the name, before any lookup
            return real_create(address, *args, **kwargs)

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            found = real_lookup(host, *args, **kwargs)
            if isinstance(host, str) and len(guard._names) < 1000:
                for *_, address in found:
                    guard._names.setdefault(str(address[0]).lower(), host)
            return found

        self._saved = {"connect": real_connect, "connect_ex": real_connect_ex,
                       "create_connection": real_create, "getaddrinfo": real_lookup}
        setattr(cls, "connect", connect)  # noqa: B010 - mypy refuses the assignment
        setattr(cls, "connect_ex", connect_ex)  # noqa: B010
        setattr(socket, "create_connection", create_connection)  # noqa: B010
        setattr(socket, "getaddrinfo", getaddrinfo)  # noqa: B010

    def uninstall(self) -> None:
        """Stop blocking (idempotent)."""
        if not self._saved:
            return
        for name in ("connect", "connect_ex"):
            setattr(socket.socket, name, self._saved[name])
        for name in ("create_connection", "getaddrinfo"):
            setattr(socket, name, self._saved[name])
        self._saved = {}

