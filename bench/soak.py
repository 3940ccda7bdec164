"""Soak: 32 clients replaying a mixed cassette for 10 minutes (`make soak`).

Not part of `make test` or `make bench`. Starts `replayproxy serve --record-mode none`
in its own process over a cassette made here (no upstream at all: replay is offline)
and drives it from this process with asyncio clients, on 127.0.0.1 only:

- plain HTTP through the forward proxy, keep-alive (absolute-form requests);
- HTTPS through CONNECT, with tunnel churn: each tunnel carries 5 requests, then closes
  and a new CONNECT + TLS handshake follows;
- large bodies (1 MiB);
- unmatched requests (a 502 with `X-Replayproxy: unmatched` is the expected answer).

Every interval (default 60 s) it prints requests, requests/s, p50/p99 latency, failed
requests and the proxy's RSS. At the end: the RSS growth after the first interval
(warm-up) must stay under 10 % and no request may fail; the exit code says whether both
held. Bounded in time (`--minutes`) and in requests (`--max-requests`).

    python bench/soak.py [--minutes 10] [--clients 32] [--interval 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from loadgen import percentile  # noqa: E402

from replayproxy.cassette.store import cassette_path, save_cassette  # noqa: E402
from replayproxy.model import Interaction, Request, Response  # noqa: E402

HOST = "soak.test"
PATHS = 50
LARGE = 1024 * 1024
TUNNEL_REQUESTS = 5


def _json(n: int) -> bytes:
    return b'{"id": %d, "name": "item %d", "tags": ["a", "b"], "ok": true}' % (n, n)


def _interaction(scheme: str, path: str, body: bytes, ctype: str) -> Interaction:
    port = 443 if scheme == "https" else 80
    return Interaction(
        Request("GET", scheme, HOST, port, path, "", (("Host", HOST),)),
        Response(200, "OK", (("Content-Type", ctype), ("Content-Length", str(len(body)))),
                 body),
        recorded_at=1_767_225_600.0)


def build_cassette(directory: Path) -> None:
    """Plain and HTTPS JSON items, and two large bodies on each."""
    interactions = [_interaction(scheme, f"/v1/items/{n}", _json(n), "application/json")
                    for scheme in ("http", "https") for n in range(PATHS)]
    big = bytes(range(256)) * (LARGE // 256)
    interactions += [_interaction(scheme, "/v1/blob", big, "application/octet-stream")
                     for scheme in ("http", "https")]
    save_cassette(cassette_path(directory, "soak"), interactions)


@dataclass
class Stats:
    requests: int = 0
    failures: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    failure_samples: list[str] = field(default_factory=list)

    def fail(self, why: str) -> None:
        self.failures += 1
        if len(self.failure_samples) < 5:
            self.failure_samples.append(why)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def _request(target: str) -> bytes:
    return (f"GET {target} HTTP/1.1\r\nHost: {HOST}\r\nAccept: application/json\r\n"
            "User-Agent: replayproxy-soak/1\r\n\r\n").encode()


class Load:
    """The clients; ``stats`` is swapped for a fresh one at every interval."""

    def __init__(self, port: int, ca: Path, deadline: float, max_requests: int) -> None:
        self.port = port
        self.tls = ssl.create_default_context(cafile=str(ca))
        self.deadline = deadline
        self.max_requests = max_requests
        self.total = 0
        self.stats = Stats()

    def running(self) -> bool:
        return time.monotonic() < self.deadline and self.total < self.max_requests

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        target: str, expect: int, size: int | None = None) -> None:
        start = time.perf_counter_ns()
        writer.write(_request(target))
        await writer.drain()
        status, headers, body = await _read_response(reader)
        self.total += 1
        stats = self.stats
        stats.requests += 1
        stats.latencies_ns.append(time.perf_counter_ns() - start)
        if status != expect or (size is not None and len(body) != size):
            stats.fail(f"{target}: {status} ({len(body)} bytes), {headers.get('x-replayproxy')}")
        elif expect == 502 and headers.get("x-replayproxy") != "unmatched":
            stats.fail(f"{target}: 502 without X-Replayproxy: unmatched")

    async def plain(self, n: int) -> None:
        """Keep-alive plain HTTP; every 10th request unmatched, every 25th large."""
        while self.running():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError as e:
                self.stats.fail(f"connect: {e}")
                await asyncio.sleep(0.1)
                continue
            try:
                for i in range(200):
                    if not self.running():
                        break
                    k = n * 7 + i
                    if k % 10 == 0:
                        await self._exchange(reader, writer, f"http://{HOST}/v1/missing/{k}",
                                             502)
                    elif k % 25 == 1:
                        await self._exchange(reader, writer, f"http://{HOST}/v1/blob", 200,
                                             LARGE)
                    else:
                        await self._exchange(reader, writer,
                                             f"http://{HOST}/v1/items/{k % PATHS}", 200)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
                self.stats.fail(f"plain: {type(e).__name__}: {e}")
            finally:
                writer.close()
                await asyncio.gather(writer.wait_closed(), return_exceptions=True)

    async def tunnel(self, n: int) -> None:
        """HTTPS through CONNECT; a new tunnel and TLS handshake every 5 requests."""
        loop = asyncio.get_running_loop()
        while self.running():
            writer = None
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n"
                             .encode())
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                if b" 200" not in head.split(b"\r\n", 1)[0]:
                    self.stats.fail(f"CONNECT: {head[:40]!r}")
                    continue
                transport = await loop.start_tls(writer.transport, writer.transport
                                                 .get_protocol(), self.tls,
                                                 server_hostname=HOST)
                assert transport is not None
                reader2 = asyncio.StreamReader()
                protocol = asyncio.StreamReaderProtocol(reader2)
                transport.set_protocol(protocol)
                protocol.connection_made(transport)
                writer2 = asyncio.StreamWriter(transport, protocol, reader2, loop)
                for i in range(TUNNEL_REQUESTS):
                    if not self.running():
                        break
                    k = n * 11 + i
                    if k % 10 == 3:
                        await self._exchange(reader2, writer2, f"/v1/missing/{k}", 502)
                    elif k % 40 == 7:
                        await self._exchange(reader2, writer2, "/v1/blob", 200, LARGE)
                    else:
                        await self._exchange(reader2, writer2, f"/v1/items/{k % PATHS}", 200)
                writer2.close()
                writer = None
                await asyncio.gather(writer2.wait_closed(), return_exceptions=True)
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError, ValueError,
                    IndexError) as e:
                self.stats.fail(f"tunnel: {type(e).__name__}: {e}")
            finally:
                if writer is not None:
                    writer.close()


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def _drive(load: Load, clients: int, interval: float, pid: int,
                 rows: list[tuple[float, Stats, int]]) -> None:
    tasks = [asyncio.create_task(load.plain(n) if n % 2 else load.tunnel(n))
             for n in range(clients)]
    started = time.monotonic()
    while load.running():
        await asyncio.sleep(min(interval, max(0.0, load.deadline - time.monotonic())))
        stats, load.stats = load.stats, Stats()
        rows.append((time.monotonic() - started, stats, _rss(pid)))
        _print_row(rows[-1], interval)
    await asyncio.gather(*tasks, return_exceptions=True)


def _print_row(row: tuple[float, Stats, int], interval: float) -> None:
    at, stats, rss = row
    lat = sorted(stats.latencies_ns)
    print(f"{at / 60:5.1f} min  {stats.requests:8,} requests  "
          f"{stats.requests / interval:7,.0f} req/s  p50 {percentile(lat, 50) / 1e6:6.2f} ms  "
          f"p99 {percentile(lat, 99) / 1e6:7.2f} ms  failed {stats.failures}  "
          f"RSS {rss / 2**20:6.1f} MiB", flush=True)
    for sample in stats.failure_samples:
        print(f"           failed: {sample}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--interval", type=float, default=60.0, help="seconds per printed row")
    ap.add_argument("--max-requests", type=int, default=20_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="replayproxy-soak-") as scratch:
        work = Path(scratch)
        build_cassette(work / "cassettes")
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
        env.update(REPLAYPROXY_HOME=str(work / "home"), REPLAYPROXY_CA_DIR=str(work / "ca"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "replayproxy", "serve", "-c", "soak", "-m", "none",
             "--cassette-dir", str(work / "cassettes"), "-p", "0", "-q"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=work)
        try:
            port = 0
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("export REPLAYPROXY_URL="):
                    port = int(line.strip().rsplit(":", 1)[1])
                    break
            if not port:
                print("the proxy did not start", file=sys.stderr)
                return 2
            print(f"replayproxy serve PID {proc.pid} on 127.0.0.1:{port}; {args.clients} "
                  f"clients for {args.minutes:g} min (half plain keep-alive, half HTTPS "
                  f"tunnels of {TUNNEL_REQUESTS} requests; 1 MiB bodies; unmatched)",
                  flush=True)
            load = Load(port, work / "ca" / "mitmproxy-ca-cert.pem",
                        time.monotonic() + args.minutes * 60, args.max_requests)
            rows: list[tuple[float, Stats, int]] = []
            asyncio.run(_drive(load, args.clients, args.interval, proc.pid, rows))
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    failed = sum(r[1].failures for r in rows)
    warm, last = rows[0][2], rows[-1][2]
    growth = (last - warm) / warm if warm else 0.0
    print(f"total {sum(r[1].requests for r in rows):,} requests, {failed} failed; RSS after "
          f"warm-up {warm / 2**20:.1f} MiB, at the end {last / 2**20:.1f} MiB "
          f"({growth:+.1%}; must stay under +10 %)")
    ok = failed == 0 and growth < 0.10
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
