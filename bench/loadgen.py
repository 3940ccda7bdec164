"""A small asyncio HTTP/1.1 load generator (no wrk/hey needed).

Keep-alive connections, one request in flight per connection, request bytes built
in advance, responses framed by Content-Length only. Every run is bounded both by
a request count and by wall-clock time, and closes its connections at the end.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["LoadResult", "build_requests", "percentile", "run_load"]


def build_requests(authority: str, targets: Sequence[str], *, proxy: bool) -> list[bytes]:
    """GET requests for ``targets`` (path?query) on http://authority.

    Absolute-form request lines (``GET http://authority/path``), as a client sends
    them to a forward proxy, when ``proxy``; origin-form otherwise.
    """
    out = []
    for t in targets:
        line = f"http://{authority}{t}" if proxy else t
        out.append(
            (
                f"GET {line} HTTP/1.1\r\n"
                f"Host: {authority}\r\n"
                "User-Agent: replayproxy-bench/1\r\n"
                "Accept: application/json\r\n"
                "\r\n"
            ).encode()
        )
    return out


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


@dataclass
class LoadResult:
    concurrency: int
    completed: int
    errors: int
    seconds: float
    latencies_ns: list[int] = field(repr=False, default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    def latency_ms(self, q: float) -> float:
        return percentile(sorted(self.latencies_ns), q) / 1e6


class _Run:
    """Shared state of one measured run."""

    def __init__(self, requests: Sequence[bytes], max_requests: int, deadline: float,
                 expect: Sequence[bytes | None] | None) -> None:
        self.requests = requests
        self.expect = expect
        self.max_requests = max_requests
        self.deadline = deadline
        self.issued = 0
        self.completed = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.latencies: list[int] = []
        self.active = 0
        self.holding = True
        """Connections wait until all are open (a TLS handshake is not load)."""
        self.finished = asyncio.get_running_loop().create_future()

    def error(self, why: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(why)

    def next_index(self) -> int | None:
        if self.issued >= self.max_requests or time.perf_counter() >= self.deadline:
            return None
        i = self.issued
        self.issued += 1
        return i

    def conn_done(self) -> None:
        self.active -= 1
        if self.active <= 0 and not self.finished.done():
            self.finished.set_result(None)


class _Client(asyncio.Protocol):
    def __init__(self, run: _Run, offset: int) -> None:
        self.run = run
        self.offset = offset
        self.buf = b""
        self.need = -1
        self.body_start = 0
        self.status = 0
        self.sent_at = 0
        self.index = 0
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.run.holding:
            self._send()

    def _send(self) -> None:
        assert self.transport is not None
        i = self.run.next_index()
        if i is None:
            self._finish()
            return
        reqs = self.run.requests
        self.index = (i + self.offset) % len(reqs)
        self.sent_at = time.perf_counter_ns()
        self.transport.write(reqs[self.index])

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            try:
                self.status = int(head[9:12])
                i = head.index(b"\r\ncontent-length:")
                j = head.find(b"\r\n", i + 2)
                length = int(head[i + 17 : j if j >= 0 else None])
            except ValueError:
                self.run.error("response without Content-Length or status")
                self._finish()
                return
            self.body_start = end + 4
            self.need = end + 4 + length
        if len(self.buf) < self.need:
            return
        now = time.perf_counter_ns()
        body = self.buf[self.body_start : self.need]
        self.buf = self.buf[self.need :]
        self.need = -1
        run = self.run
        expect = run.expect[self.index] if run.expect else None
        if self.status != 200:
            run.error(f"status {self.status}")
        elif expect is not None and body != expect:
            run.error(f"unexpected body {body[:60]!r}")
        else:
            run.completed += 1
            run.latencies.append(now - self.sent_at)
        self._send()

    def _finish(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self.run.conn_done()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.run.error(f"connection lost: {exc!r}")
            self.closed = True
            self.run.conn_done()


def _factory(client: _Client) -> Callable[[], _Client]:
    return lambda: client


def _tunnel(host: str, port: int, target: tuple[str, int]) -> socket.socket:
    """A connection to the proxy at host:port with a CONNECT tunnel to ``target`` open."""
    sock = socket.create_connection((host, port), timeout=5)
    authority = f"{target[0]}:{target[1]}"
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            sock.close()
            raise OSError("the proxy closed the tunnel")
        head += chunk
    if head.split(b" ", 2)[1:2] != [b"200"]:
        sock.close()
        raise OSError(f"CONNECT refused: {head[:60]!r}")
    sock.setblocking(False)
    return sock


async def _load(host: str, port: int, requests: Sequence[bytes], concurrency: int,
                max_requests: int, seconds: float,
                expect: Sequence[bytes | None] | None,
                tunnel: tuple[str, int] | None = None,
                cafile: str | None = None) -> LoadResult:
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    run = _Run(requests, max_requests, start + seconds, expect)
    clients: list[_Client] = []
    run.active = concurrency
    stride = max(1, len(requests) // concurrency)
    for k in range(concurrency):
        client = _Client(run, k * stride)
        clients.append(client)
        try:
            if tunnel is None:
                await asyncio.wait_for(loop.create_connection(_factory(client), host, port), 5)
            else:
                context = ssl.create_default_context(cafile=cafile)
                context.set_alpn_protocols(["http/1.1"])
                await asyncio.wait_for(loop.create_connection(
                    _factory(client), sock=_tunnel(host, port, tunnel), ssl=context,
                    server_hostname=tunnel[0]), 5)
        except (TimeoutError, OSError) as e:
            run.error(f"connect failed: {e!r}")
            run.conn_done()
    start = time.perf_counter()
    run.deadline = start + seconds
    run.holding = False
    for client in clients:
        if client.transport is not None and not client.closed:
            client._send()
    try:
        await asyncio.wait_for(asyncio.shield(run.finished), seconds + 10)
    except TimeoutError:
        run.error("run did not finish in time (a response never came)")
    elapsed = time.perf_counter() - start
    for c in clients:
        if c.transport is not None and not c.closed:
            c.closed = True
            c.transport.close()
    await asyncio.sleep(0)
    return LoadResult(concurrency, run.completed, run.errors, elapsed, run.latencies,
                      run.error_samples)


def run_load(host: str, port: int, requests: Sequence[bytes], *, concurrency: int,
             max_requests: int, seconds: float,
             expect: Sequence[bytes | None] | None = None,
             tunnel: tuple[str, int] | None = None, cafile: str | None = None) -> LoadResult:
    """Send ``requests`` round-robin over ``concurrency`` keep-alive connections.

    Stops after ``max_requests`` requests or ``seconds`` seconds, whichever comes
    first. ``expect[i]``, when given, is the body request ``i`` must get back.
    ``tunnel`` (host, port): each connection first opens a CONNECT tunnel through the
    proxy at host:port and speaks TLS (HTTP/1.1 over ALPN) in it, trusting ``cafile``.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the benchmark only targets loopback addresses")
    return asyncio.run(_load(host, port, requests, concurrency, max_requests, seconds, expect,
                             tunnel, cafile))
