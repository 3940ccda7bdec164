"""Run mitmproxy in-process with only the addons replayproxy needs.

mitmdump's ~35 default addons cost about half of its per-request time, so the
master here gets just the proxy server, TLS, layer selection and our addons. It runs
on its own thread and event loop, so it can be started from synchronous code (the
CLI, a pytest fixture) and never shares a loop with the application under test.

One master per process: mitmproxy keeps the running master in module globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from mitmproxy import ctx, master, options
from mitmproxy.addons import core, next_layer, proxyserver, tlsconfig
from mitmproxy.proxy import mode_specs

from replayproxy.engines.listening import Listening
from replayproxy.engines.mitm.ca import CA
from replayproxy.engines.mitm.limits import ConnectionLimits
from replayproxy.engines.mitm.upstream import EgressAddon, OwnListeners
from replayproxy.errors import ConfigError, ProxyStartError
from replayproxy.limits import DEFAULT_LIMITS, Limits
from replayproxy.upstream import (
    Egress,
    read_pem_ca,
    reverse_spec,
    reverse_targets,
    trust_bundle,
)

__all__ = ["Proxy", "reverse_spec"]

log = logging.getLogger("replayproxy")

_START_TIMEOUT = 30.0
_PROXY_LOCK = threading.Lock()


def _write_trust(data: bytes) -> Path:
    """A temporary file holding the upstream trust bundle (mitmproxy's option names a
    file). The caller deletes it."""
    fd, name = tempfile.mkstemp(prefix="replayproxy-upstream-", suffix=".pem")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return Path(name)


def _tcp_only(spec: str) -> None:
    """Make mitmproxy serve the mode ``spec`` over TCP only.

    mitmproxy 11 also listens on UDP (for HTTP/3) in ``reverse:https://`` mode, through
    mitmproxy_rs, whose tokio threads outlive the master and crash the interpreter at
    exit (SIGSEGV or SIGBUS in about one run in six, measured with
    ``replayproxy replay --reverse https://...``). ``ProxyMode.parse`` caches the parsed
    spec, so the proxy server later gets this very object. mitmproxy 12 (checked up to
    12.3.1) parses, caches and listens the same way, so this holds there too.
    """
    mode = mode_specs.ProxyMode.parse(spec)
    if mode.transport_protocol == "both":
        object.__setattr__(mode, "transport_protocol", "tcp")


class _Lifecycle:
    """Signals readiness with the listen addresses; closes connections on shutdown."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.addresses: list[tuple[str, tuple[str, int] | None, str | None]] = []

    def running(self) -> None:
        ps = ctx.master.addons.get("proxyserver")
        for server in ps.servers:
            addrs = server.listen_addrs
            error = str(server.last_exception) if server.last_exception else None
            self.addresses.append(
                (server.mode.full_spec, tuple(addrs[0][:2]) if addrs else None, error)
            )
        self.ready.set()

    async def done(self) -> None:
        ps = ctx.master.addons.get("proxyserver")
        await ps.servers.update([])
        for handler in list(ps.connections.values()):
            # KeyError: the client is already disconnecting (its transport is gone);
            # without the suppress, the other connections stay open and asyncio.run()
            # cancels them with CancelledError tracebacks
            with contextlib.suppress(KeyError):
                handler.close_connection(handler.client)
        for _ in range(100):
            if not ps.connections:
                break
            await asyncio.sleep(0.01)


class Proxy(Listening):
    """A mitmproxy master on its own thread, with the given addons.

    Use as a context manager, or call ``start()`` and ``stop()``::

        with Proxy([ReplayproxyAddon(pipeline)], ca=ensure_ca()) as proxy:
            env = proxy.environment()

    Args:
        addons: our addons, added after mitmproxy's proxy server, TLS and layer ones.
        ca: the CA to intercept TLS with.
        host: listen address (default 127.0.0.1 only).
        port: forward-proxy port; 0 picks a free one.
        reverse: upstream base URLs to also serve, each on its own port, for clients
            that take a base URL instead of honouring proxy variables.
        upstream_ca: PEM CAs to trust for upstream servers besides this machine's
            (certifi, the system store, ``SSL_CERT_FILE``, ``SSL_CERT_DIR``).
        upstream_insecure: do not verify upstream certificates at all.
        egress: the proxy to reach upstreams through (None: direct).
        environ: the environment whose ``SSL_CERT_FILE``/``SSL_CERT_DIR`` count
            [default: this process's].
        lazy: never connect upstream before a request needs it (replay stays offline).
        limits: header-read and idle timeouts and the cap on client connections.
    """

    ca: CA

    def __init__(
        self,
        addons: Sequence[Any],
        *,
        ca: CA,
        host: str = "127.0.0.1",
        port: int = 0,
        reverse: str | Sequence[str] | None = None,
        upstream_ca: Path | Sequence[Path] | None = None,
        upstream_insecure: bool = False,
        egress: Egress | None = None,
        environ: Mapping[str, str] | None = None,
        lazy: bool = True,
        http2: bool = True,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"invalid {{port}} {port}: use 0 (a free port) up to 65535")
        self.addons = list(addons)
        self.ca = ca
        self.host = host
        self.port = port
        self.reverses = reverse_targets(reverse)
        self.reverse = self.reverses[0] if self.reverses else None
        cas = [upstream_ca] if isinstance(upstream_ca, (str, Path)) else list(upstream_ca or ())
        self._upstream_pems = [read_pem_ca(Path(p)) for p in cas]
        self.upstream_insecure = upstream_insecure
        self.egress = egress if egress else None
        self._environ = dict(os.environ if environ is None else environ)
        self.upstream_trust: Path | None = None
        self.lazy = lazy
        self.http2 = http2
        self.limits = limits
        self.proxy_address: tuple[str, int] | None = None
        self.reverse_addresses: dict[str, tuple[str, int]] = {}
        """The local address serving each ``reverse`` upstream, in order."""
        self._lifecycle = _Lifecycle()
        self._thread: threading.Thread | None = None
        self._master: master.Master | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Proxy:
        """Start listening; return when the proxy accepts connections.

        Raises:
            ProxyStartError: a port could not be bound, or mitmproxy failed to start.
        """
        if not _PROXY_LOCK.acquire(blocking=False):
            raise ProxyStartError(
                "a replayproxy proxy is already running in this process; stop it first "
                "(mitmproxy allows one master per process)"
            )
        if not self.upstream_insecure:
            self.upstream_trust = _write_trust(trust_bundle(self._upstream_pems,
                                                            self._environ))
        self._thread = threading.Thread(target=self._run, name="replayproxy", daemon=True)
        self._thread.start()
        if not self._lifecycle.ready.wait(_START_TIMEOUT) or self._failure:
            self.stop()
            raise ProxyStartError(f"the proxy did not start: {self._failure!r}")
        reverses = iter(self.reverses)
        for spec, addr, error in self._lifecycle.addresses:
            if addr is None:
                self.stop()
                port = spec.rsplit(":", 1)[-1]
                if error and "in use" in error.lower():
                    raise ProxyStartError(
                        f"cannot listen on {self.host}:{port}: the port is taken; choose "
                        "another with {port}, or {port} 0 for a free one", port=int(port))
                # mitmproxy's text: "HTTP(S) proxy failed to listen on HOST:PORT with ..."
                why = (error or "unknown error").rpartition(" with ")[2]
                raise ProxyStartError(f"cannot listen on {self.host}:{port}: {why}; choose "
                                      "another address or {port}", port=int(port))
            if spec.startswith("reverse:"):
                self.reverse_addresses[next(reverses)] = addr
            else:
                self.proxy_address = addr
        return self

    def stop(self) -> None:
        """Stop the proxy and wait for its addons' ``done`` hooks. Idempotent."""
        if self._thread is None:
            return
        if self._master is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._master.shutdown()
        self._thread.join(60)
        self._thread = None
        if self.upstream_trust is not None:
            with contextlib.suppress(OSError):
                self.upstream_trust.unlink()
            self.upstream_trust = None
        _PROXY_LOCK.release()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _modes(self) -> list[str]:
        modes = [f"regular@{self.host}:{self.port}"]
        modes.extend(f"reverse:{target}@{self.host}:0" for target in self.reverses)
        return modes

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # report start-up failures to start()
            self._failure = e
            self._lifecycle.ready.set()

    async def _main(self) -> None:
        for spec in self._modes():
            _tcp_only(spec)
        opts = options.Options(confdir=str(self.ca.directory), mode=self._modes())
        m = master.Master(opts)
        m.addons.add(
            core.Core(),
            proxyserver.Proxyserver(),
            next_layer.NextLayer(),
            tlsconfig.TlsConfig(),
        )
        updates: dict[str, Any] = {
            "connection_strategy": "lazy" if self.lazy else "eager",
            "http2": self.http2,
        }
        if self.upstream_trust:
            updates["ssl_verify_upstream_trusted_ca"] = str(self.upstream_trust)
        if self.upstream_insecure:
            updates["ssl_insecure"] = True
        m.options.update(**updates)
        # only with reverse listeners: every addon costs every request a hook call
        own = [OwnListeners(self._reverse_ports)] if self.reverse else []
        m.addons.add(ConnectionLimits(self.limits), *own, *self.addons)
        if self.egress:
            # after ours: it sees where a request really goes (see upstream.py)
            m.addons.add(EgressAddon(self.egress))
        # last: ready once every addon is running (our loopback servers too); on shutdown
        # it closes the connections that remain after the addons' own ``done`` (which
        # drops the loopback servers' connections) and waits for them, so no stream is
        # left to be collected after the loop has closed
        m.addons.add(self._lifecycle)
        self._master = m
        self._loop = asyncio.get_running_loop()
        await m.run()

    def add_listener(self) -> tuple[str, int]:
        """Listen on one more (free) port as a forward proxy, while running; its address.
        Thread-safe: called from the control API's thread.

        Raises:
            ProxyStartError: no port could be bound.
        """
        if self._loop is None or self._master is None:
            raise RuntimeError("the proxy is not running")
        future = asyncio.run_coroutine_threadsafe(self._add_listener(), self._loop)
        return future.result(_START_TIMEOUT)

    async def _add_listener(self) -> tuple[str, int]:
        assert self._master is not None
        opts = self._master.options
        servers = self._master.addons.get("proxyserver").servers
        for _ in range(5):  # a free port found here may be taken before mitmproxy binds it
            spec = f"regular@{self.host}:{_free_port(self.host)}"
            _tcp_only(spec)
            opts.update(mode=[*opts.mode, spec])
            for _ in range(1000):
                found = next((s for s in servers if s.mode.full_spec == spec), None)
                if found is not None and found.listen_addrs:
                    host, port = found.listen_addrs[0][:2]
                    return str(host), int(port)
                if found is not None and found.last_exception is not None:
                    break
                await asyncio.sleep(0.005)
            opts.update(mode=[m for m in opts.mode if m != spec])
        raise ProxyStartError(f"cannot listen on one more port on {self.host}")

    def _reverse_ports(self) -> dict[int, tuple[str, str, int]]:
        out = {}
        for target, (_host, port) in self.reverse_addresses.items():
            parts = urlsplit(target)
            assert parts.hostname is not None
            out[port] = (parts.scheme, parts.hostname,
                         parts.port or (443 if parts.scheme == "https" else 80))
        return out


def _free_port(host: str) -> int:
    """A port free on ``host`` now (bound to port 0 and read back)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
