"""Streamed bodies and memory: `make bench` (or `.venv/bin/python bench/stream_bench.py`).

Records, then replays (``--pace 0``), one chunked body of ``--mb`` MiB (default 200)
through the proxy, and prints how much the proxy process's memory grew while doing it,
against the same run with a ``--baseline-mb`` body (default 2): with streaming, the
growth should not depend on the body's size (target: under 64 MiB for 200 MiB).

Every part runs in its own process on 127.0.0.1: the upstream (sends the body in 64 KiB
chunks, generated as it goes), the proxy (a ``ProxyRun``, measuring itself) and the
client (this process: reads the body through the proxy 1 MiB at a time and checks its
SHA-256). The proxy resets its peak RSS (``/proc/self/clear_refs``) once it is up,
then reports:

- ``stream``: the peak RSS while the body streamed through and was recorded (the
  response hook turns the spooled body into one interaction, redacts, scans and
  journals it), minus the RSS before the request;
- ``fold``: the peak RSS while the run stopped and folded its journal into the cassette;
- ``replay: load``: the peak RSS while the replaying run started (loading the cassette),
  minus the RSS before;
- ``replay``: the peak RSS while replaying the body, minus the RSS with the cassette
  loaded (its bytes are the cassette's, counted once in that baseline).

Results also go to bench/.work/stream.json.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BLOCK = 64 * 1024
MIB = 1024 * 1024


def _block(i: int) -> bytes:
    """The ``i``th 64 KiB block of the body (not compressible, made as it is sent)."""
    seed = hashlib.sha256(b"%d" % i).digest()
    return (seed * (BLOCK // len(seed)))[:BLOCK]


def _expected(mb: int) -> str:
    h = hashlib.sha256()
    for i in range(mb * MIB // BLOCK):
        h.update(_block(i))
    return h.hexdigest()


# -- the upstream process ------------------------------------------------------------


class _Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        mb = int(self.path.rsplit("/", 1)[1])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(mb * MIB // BLOCK):
            data = _block(i)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")


def upstream_main() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# -- the proxy process ---------------------------------------------------------------


def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def proxy_main(mode: str, directory: str, ca_dir: str) -> None:
    import logging

    from replayproxy.run import ProxyRun

    logging.basicConfig(level=logging.WARNING)
    run = ProxyRun("big", mode, cassette_dir=directory, ca_dir=ca_dir, control=False,
                   upstream_proxy="none", pace=0)
    import replayproxy.engines.mitm.addon  # noqa: F401  (imported by start: not counted)

    _reset_peak()
    unloaded = _status()["VmRSS"]
    run.start()
    started = _status()
    _reset_peak()
    before = _status()["VmRSS"]
    print(json.dumps({"url": run.proxy_url, "rss": before,
                      "start_peak": started["VmHWM"] - unloaded}), flush=True)
    sys.stdin.readline()  # the client has its body
    streamed = _status()
    _reset_peak()
    folding = _status()["VmRSS"]
    run.stop()
    folded = _status()
    summary = run.summary
    print(json.dumps({"before": before, "stream_peak": streamed["VmHWM"],
                      "fold_before": folding, "fold_peak": folded["VmHWM"],
                      "after": folded["VmRSS"],
                      "replayed": summary.replayed if summary else 0,
                      "recorded": summary.recorded if summary else 0}), flush=True)


# -- the client (this process) --------------------------------------------------------


@contextlib.contextmanager
def _child(*args: str) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(30)


def _fetch(proxy_url: str, url: str) -> tuple[int, str, float]:
    """GET ``url`` through the proxy; bytes, SHA-256 and seconds."""
    host, port = proxy_url.removeprefix("http://").rsplit(":", 1)
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: {url.split('/')[2]}\r\n"
                     "Connection: close\r\n\r\n".encode())
        reader = sock.makefile("rb")
        status = reader.readline()
        assert b" 200 " in status, status
        chunked = False
        while (line := reader.readline()) not in (b"\r\n", b""):
            chunked = chunked or line.lower().startswith(b"transfer-encoding: chunked")
        h, size = hashlib.sha256(), 0
        if chunked:
            while (n := int(reader.readline().split(b";")[0], 16)):
                data = reader.read(n)
                h.update(data)
                size += len(data)
                reader.readline()
        else:
            while data := reader.read(MIB):
                h.update(data)
                size += len(data)
    return size, h.hexdigest(), time.monotonic() - start


def _run_proxy(mode: str, directory: Path, ca_dir: Path, url: str, mb: int,
               digest: str) -> dict[str, Any]:
    with _child("--proxy", mode, str(directory), str(ca_dir)) as proxy:
        assert proxy.stdout is not None and proxy.stdin is not None
        started = json.loads(proxy.stdout.readline())
        size, got, seconds = _fetch(started["url"], url)
        if size != mb * MIB or got != digest:
            raise SystemExit(f"{mode}: the body came through wrong ({size} bytes)")
        proxy.stdin.write("done\n")
        proxy.stdin.flush()
        report: dict[str, Any] = json.loads(proxy.stdout.readline())
    report["seconds"] = seconds
    report["start_peak"] = started["start_peak"]
    return report


def measure(mb: int, work: Path) -> dict[str, float]:
    directory, ca_dir = work / f"cassettes-{mb}", work / "ca"
    shutil.rmtree(directory, ignore_errors=True)
    digest = _expected(mb)
    with _child("--upstream") as upstream:
        assert upstream.stdout is not None
        port = int(upstream.stdout.readline())
        url = f"http://127.0.0.1:{port}/big/{mb}"
        record = _run_proxy("all", directory, ca_dir, url, mb, digest)
    replay = _run_proxy("none", directory, ca_dir, url, mb, digest)
    if record["recorded"] != 1 or replay["replayed"] != 1:
        raise SystemExit(f"expected 1 recorded and 1 replayed, got {record} / {replay}")
    return {
        "mb": mb,
        "record_stream_mib": (record["stream_peak"] - record["before"]) / MIB,
        "record_fold_mib": (record["fold_peak"] - record["fold_before"]) / MIB,
        "replay_mib": (replay["stream_peak"] - replay["before"]) / MIB,
        "replay_load_mib": replay["start_peak"] / MIB,
        "replay_loaded_rss_mib": replay["before"] / MIB,
        "record_seconds": record["seconds"],
        "replay_seconds": replay["seconds"],
        "cassette_mib": (directory / "big.cassette").stat().st_size / MIB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--baseline-mb", type=int, default=2)
    parser.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--proxy", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        upstream_main()
        return
    if args.proxy:
        proxy_main(*args.proxy)
        return
    work = HERE / ".work"
    work.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        rows = [measure(mb, Path(tmp)) for mb in (args.baseline_mb, args.mb)]
    print(f"streamed body through record and replay (--pace 0), proxy RSS growth in MiB; "
          f"baseline = the same with a {args.baseline_mb} MiB body")
    print(f"{'body':>8} {'record: stream':>15} {'record: fold':>13} {'replay: load':>13} "
          f"{'replay':>8} {'record s':>9} {'replay s':>9}")
    for r in rows:
        print(f"{r['mb']:>5} MiB {r['record_stream_mib']:>15.1f} {r['record_fold_mib']:>13.1f} "
              f"{r['replay_load_mib']:>13.1f} {r['replay_mib']:>8.1f} "
              f"{r['record_seconds']:>9.2f} {r['replay_seconds']:>9.2f}")
    base, big = rows
    print(f"replay growth for {big['mb']} MiB: {big['replay_mib']:.1f} MiB "
          f"({big['replay_mib'] - base['replay_mib']:+.1f} MiB over the baseline; target < 64 MiB)")
    (work / "stream.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
