"""replayproxy benchmark: `make bench` (or `.venv/bin/python bench/run.py`).

Measures in one run, on 127.0.0.1 only:

1. requests/second and p50/p99 latency at concurrency 1 and 32 of
   (a) the client talking to a local upstream directly (baseline),
   (b) `replayproxy serve --record-mode none` replaying a cassette, and
   (c) `mitmdump --server-replay` replaying the same interactions,
   all driven by the same asyncio load generator (bench/loadgen.py) in this process,
   with each server in its own process; plus replayproxy serving the smallest and the
   largest synthetic cassette below with requests of the same shape, to show that
   cassette size does not slow replay down;
2. how long a cassette of 1k/10k/100k small interactions takes to be ready
   (load_cassette + ReplayIndex) and at what peak memory, in a fresh process, and the
   per-request lookup time; the same for mitmdump's flow-file loader at 10k;
3. cassette bytes against VCR.py's YAML for the same recorded traffic.

The machine is shared and noisy: compare the ratios measured within one run rather
than absolute numbers across runs. Results also go to bench/.work/results.json.
``--variants`` adds replay runs with candidate product changes (``gc.freeze()`` after
start-up, ``python -O``) and times the proxy's garbage collections.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from loadgen import LoadResult, build_requests, run_load  # noqa: E402
from upstream import item_body  # noqa: E402

from replayproxy.cassette.format import encode_interaction  # noqa: E402
from replayproxy.cassette.store import load_cassette, save_cassette  # noqa: E402
from replayproxy.model import Interaction, Request, Response  # noqa: E402

PY = sys.executable
BIN = Path(PY).parent
HOST = "127.0.0.1"
URLS = 100
CONCURRENCY = (1, 32)
MIB = 1024 * 1024
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


# -- processes ------------------------------------------------------------------------------


class Child:
    """A subprocess we started; stopped by its own PID (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, argv: Sequence[str], *, env: dict[str, str], stderr: Path,
                 cwd: Path = ROOT) -> None:
        self.name = name
        self.stderr_path = stderr
        self._stderr = stderr.open("wb")
        self.proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self.pid = self.proc.pid
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.name}: no {prefix!r} line within {timeout} s")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"{self.name} exited (rc {self.proc.wait()}): "
                                   f"{self.stderr_path.read_text()[-2000:]}")
            if line.startswith(prefix):
                return line

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._stderr.close()
        return self.proc.returncode


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    try:
        yield started
    finally:
        for c in reversed(started):
            c.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_accepting(port: int, child: Child, timeout: float) -> float:
    """Poll until 127.0.0.1:port accepts a connection; return the monotonic time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited (rc {child.proc.returncode}): "
                               f"{child.stderr_path.read_text()[-2000:]}")
        with socket.socket() as s:
            try:
                s.connect((HOST, port))
                return time.monotonic()
            except OSError:
                pass
        time.sleep(0.005)
    raise RuntimeError(f"{child.name}: port {port} not accepting after {timeout} s")


def upstream_count(port: int) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", "/__count")
        return int(conn.getresponse().read())
    finally:
        conn.close()


def start_upstream(work: Path, started: list[Child]) -> tuple[Child, int]:
    up = Child("upstream", [PY, str(BENCH / "upstream.py")], env=clean_env(),
               stderr=work / "upstream.err")
    started.append(up)
    return up, int(up.wait_line("PORT ", 10).split()[1])


def start_serve(work: Path, cassette_dir: Path, name: str, started: list[Child], *,
                variant: str = "", env: dict[str, str] | None = None
                ) -> tuple[Child, int, float]:
    """`replayproxy serve` in replay-only mode; returns (child, port, seconds to ready).

    ``variant`` "timed" or "freeze" runs bench/serve_variant.py instead (same proxy,
    GC pauses timed, optionally ``gc.freeze()``); ``env`` adds environment variables.
    """
    t0 = time.monotonic()
    if variant:
        argv = [PY, str(BENCH / "serve_variant.py"), str(cassette_dir), name, str(work / "ca")]
        argv += ["--freeze"] if variant == "freeze" else []
    else:
        argv = [PY, "-m", "replayproxy", "serve", "-c", name, "--cassette-dir",
                str(cassette_dir), "--record-mode", "none", "--ca-dir", str(work / "ca"),
                "--port", "0", "--quiet"]
    tag = "-".join(x for x in (name, variant, *(env or {})) if x)
    child = Child(f"replayproxy serve {tag}", argv,
                  env=clean_env(REPLAYPROXY_HOME=str(work / "home"), **(env or {})),
                  stderr=work / f"serve-{tag}.err")
    started.append(child)
    line = child.wait_line("export REPLAYPROXY_URL=", 120)
    ready = time.monotonic() - t0
    port = int(line.rsplit(":", 1)[1].strip("'\""))
    return child, port, ready


def start_mitmdump(work: Path, flows: Path, started: list[Child]) -> tuple[Child, int, float]:
    """`mitmdump --server-replay FLOWS`; returns (child, port, seconds until accepting)."""
    port = free_port()
    t0 = time.monotonic()
    child = Child(
        f"mitmdump {flows.name}",
        [str(BIN / "mitmdump"), "-q", "--listen-host", HOST, "--listen-port", str(port),
         "--set", f"confdir={work / 'mitmconf'}", "--set", "connection_strategy=lazy",
         "--server-replay", str(flows), "--set", "server_replay_reuse=true",
         "--set", "server_replay_extra=404"],
        env=clean_env(), stderr=work / f"mitmdump-{flows.stem}.err")
    started.append(child)
    ready = wait_accepting(port, child, 180) - t0
    return child, port, ready


# -- traffic and files ----------------------------------------------------------------------


def record_cassette(work: Path, up_port: int, cassette_dir: Path) -> Path:
    """Record the 100 GETs for real through `replayproxy record`."""
    env = clean_env(REPLAYPROXY_HOME=str(work / "home"))
    subprocess.run(
        [PY, "-m", "replayproxy", "record", "-c", "bench", "--cassette-dir", str(cassette_dir),
         "--ca-dir", str(work / "ca"), "--quiet", "--",
         PY, str(BENCH / "client.py"), f"http://{HOST}:{up_port}", str(URLS)],
        cwd=ROOT, env=env, check=True, timeout=120)
    return cassette_dir / "bench.cassette"


def record_vcr(work: Path, up_port: int) -> Path:
    """Record the same 100 GETs with VCR.py (YAML serializer), no proxy."""
    out = work / "vcr" / "bench.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([PY, str(BENCH / "client.py"), f"http://{HOST}:{up_port}", str(URLS),
                    "--vcr", str(out)], cwd=ROOT, env=clean_env(), check=True, timeout=120)
    return out


def write_flows(interactions: Sequence[Interaction], path: Path) -> None:
    """Write ``interactions`` as a mitmproxy flow file (what `mitmdump -w` would save)."""
    from mitmproxy import connection, http, io

    with path.open("wb") as f:
        writer = io.FlowWriter(f)  # type: ignore[no-untyped-call]
        for it in interactions:
            q, r = it.request, it.response
            start = it.recorded_at
            client = connection.Client(peername=(HOST, 50000), sockname=(HOST, 8080),
                                       timestamp_start=start)
            server = connection.Server(address=(q.host, q.port))
            flow = http.HTTPFlow(client, server)
            path_qs = q.path + (f"?{q.query}" if q.query else "")
            flow.request = http.Request(
                q.host, q.port, q.method.encode(), q.scheme.encode(), b"",
                path_qs.encode(), q.http_version.encode(),
                tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in q.headers),
                q.body, None, start, start)
            flow.response = http.Response(
                r.http_version.encode(), r.status, r.reason.encode("latin-1"),
                tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in r.headers),
                r.body, None, start + it.ttfb, start + it.duration)
            writer.add(flow)


def synthetic(n: int) -> list[Interaction]:
    """``n`` small distinct interactions shaped like the recorded ones."""
    out = []
    for i in range(n):
        body = item_body(i)
        out.append(Interaction(
            Request("GET", "http", "api.bench.test", 80, f"/items/{i}", f"page={i % 10}",
                    (("Host", "api.bench.test"), ("User-Agent", "python-requests/2.34.2"),
                     ("Accept-Encoding", "gzip, deflate, br"), ("Accept", "*/*"),
                     ("Connection", "keep-alive"))),
            Response(200, "OK", (("Content-Type", "application/json"),
                                 ("Content-Length", str(len(body))),
                                 ("Server", "bench-upstream")), body),
            1_764_000_000.0 + i / 1000, 0.0012, 0.0015))
    return out


def synthetic_json(n: int) -> list[Interaction]:
    """``n`` JSON POSTs, 100 per path: matching parses and compares bodies in each bucket."""
    out = []
    for i in range(n):
        body = json.dumps({"amount": 100 + i, "currency": "eur", "customer": f"cus_{i % 100}",
                           "metadata": {"order": i, "tags": ["a", "b"]}}).encode()
        answer = json.dumps({"id": f"ch_{i}", "status": "succeeded"}).encode()
        out.append(Interaction(
            Request("POST", "https", "api.bench.test", 443, f"/v1/customers/{i // 100}/charges",
                    "", (("Host", "api.bench.test"), ("Content-Type", "application/json"),
                         ("Content-Length", str(len(body)))), body),
            Response(200, "OK", (("Content-Type", "application/json"),
                                 ("Content-Length", str(len(answer)))), answer),
            1_764_000_000.0 + i / 1000, 0.0012, 0.0015))
    return out


# -- measurements ---------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    port: int
    child: Child
    requests: list[bytes]
    expect: list[bytes]
    replay: bool = True


def measure_cell(t: Target, c: int, seconds: float, warmup: float, label: str,
                 **load: Any) -> dict[str, float]:
    """One throughput cell: warm up, then load ``t`` at concurrency ``c`` for ``seconds``
    (``load``: more ``run_load`` arguments, e.g. a CONNECT tunnel)."""
    run_load(HOST, t.port, t.requests, concurrency=c, max_requests=50_000, seconds=warmup,
             expect=t.expect, **load)
    cpu0 = t.child.cpu_seconds()
    res: LoadResult = run_load(HOST, t.port, t.requests, concurrency=c,
                               max_requests=2_000_000, seconds=seconds, expect=t.expect,
                               **load)
    cpu = t.child.cpu_seconds() - cpu0
    row = {
        "rps": res.rps, "p50_ms": res.latency_ms(50), "p99_ms": res.latency_ms(99),
        "completed": res.completed, "errors": res.errors,
        "server_cpu_us_per_req": cpu / res.completed * 1e6 if res.completed else 0.0,
    }
    log(f"{label} {t.name:<24} c={c:<3} {res.rps:9,.0f} req/s  p50 {row['p50_ms']:.3f} ms  "
        f"p99 {row['p99_ms']:.3f} ms  server CPU {row['server_cpu_us_per_req']:.0f} us/req"
        + (f"  ERRORS {res.errors}: {res.error_samples[:2]}" if res.errors else ""))
    return row


def probe(kind: str, path: Path, lookups: int = 20_000) -> dict[str, Any]:
    out = subprocess.run([PY, str(BENCH / "load_probe.py"), kind, str(path),
                          "--lookups", str(lookups)], cwd=ROOT, env=clean_env(),
                         capture_output=True, text=True, check=True, timeout=300)
    return dict(json.loads(out.stdout))


def median_of(rows: Sequence[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


# -- report ---------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import version

    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, timeout=10).stdout.strip() or commit
    return {
        "commit": commit,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "mitmproxy": version("mitmproxy"),
        "msgpack": version("msgpack"),
        "vcrpy": version("vcrpy"),
        "pyyaml": version("PyYAML"),
        "kernel": platform.release(),
    }


def fmt_x(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if i else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def report(res: dict[str, Any]) -> str:
    m = res["machine"]
    out = [f"replayproxy benchmark, {m['date']}, work tree at commit {m['commit']}: "
           f"{m['nproc']} cores {m['cpu']}, Python {m['python']}, mitmproxy {m['mitmproxy']}",
           f"1-minute load average just before the run: {res['loadavg'][0]:.2f} "
           "(near 0 on an idle machine; above that, other work competed for the cores)", ""]
    tp = res["throughput"]
    cfg = res["config"]
    out.append(f"1. Replay throughput: plain HTTP forward proxy, {URLS} URLs, keep-alive, "
               f"median of {cfg['rounds']} rounds x {cfg['seconds']} s per cell")
    rows = []
    names = list(tp)
    for conc in CONCURRENCY:
        for name in names:
            cell = tp[name][str(conc)]
            rows.append([name, str(conc), f"{cell['rps']:,.0f}", f"{cell['p50_ms']:.3f}",
                         f"{cell['p99_ms']:.3f}", f"{cell['server_cpu_us_per_req']:.0f}",
                         str(cell["errors"])])
    out.append(table(["target", "c", "req/s", "p50 ms", "p99 ms", "server CPU us/req",
                      "errors"], rows))
    rp, direct = tp["replayproxy"], tp["direct"]
    out.append("")
    out.append("  Ratios are medians of the per-round ratios (rounds listed in brackets):")
    for c in map(str, CONCURRENCY):
        per = round_ratios(res, "replayproxy", "mitmdump", c)
        cpu = round_ratios(res, "mitmdump", "replayproxy", c, "server_cpu_us_per_req")
        dr = round_ratios(res, "direct", "replayproxy", c)
        out.append(
            f"  c={c:<2}: replayproxy/mitmdump req/s = {statistics.median(per):.2f}x ["
            + " ".join(f"{x:.2f}" for x in per) + "]; server CPU per request "
            f"mitmdump/replayproxy = {statistics.median(cpu):.2f}x ["
            + " ".join(f"{x:.2f}" for x in cpu) + "]")
        out.append(
            f"        direct/replayproxy req/s = {statistics.median(dr):.1f}x; "
            f"replayproxy p50 - direct p50 = {rp[c]['p50_ms'] - direct[c]['p50_ms']:.3f} ms")
    synth = [n for n in tp if n.endswith(" synthetic")]
    pairs = [(synth[1], synth[0])] if len(synth) == 2 else []
    pairs += [(n, "replayproxy") for n in tp
              if n.startswith("replayproxy") and n != "replayproxy" and n not in synth]
    for a, b in pairs:
        out.append(f"  {a} / {b}: req/s " + ", ".join(
            f"c={c} {statistics.median(round_ratios(res, a, b, c)):.2f}x"
            for c in map(str, CONCURRENCY)) + "; server CPU per request " + ", ".join(
            f"c={c} {statistics.median(round_ratios(res, a, b, c, 'server_cpu_us_per_req')):.2f}x"
            for c in map(str, CONCURRENCY)))
    for name, st in res.get("gc", {}).items():
        out.append(f"  {name}: GC pauses during the load, "
                   + "; ".join(f"{g} {st[g]['count']} x median {st[g]['median_ms']:.2f} ms "
                               f"(max {st[g]['max_ms']:.1f}, total {st[g]['total_ms']:.0f} ms)"
                               for g in ("gen0", "gen1", "gen2")))
    out.append(f"  upstream requests during replay runs: {res['upstream_hits_during_replay']} "
               "(must be 0)")
    out.append("")
    out.append("2. Cassette ready (fresh process: load_cassette + ReplayIndex), median of "
               f"{cfg['load_repeats']} runs")
    rows = []
    for p in res["load"]:
        rows.append([f"{p['interactions']:,}", f"{p['file_bytes'] / MIB:.2f}",
                     f"{p['load_s'] * 1000:.0f}", f"{p['index_s'] * 1000:.0f}",
                     f"{p['ready_s'] * 1000:.0f}", f"{p['peak_rss'] / MIB:.0f}",
                     f"{(p['peak_rss'] - p['rss_before']) / MIB:.0f}",
                     f"{p['lookup_p50_us']:.1f}", f"{p['lookup_p99_us']:.1f}"])
    for p in res["flows_load"]:
        rows.append([f"{p['flows']:,} flows (mitmproxy FlowReader)",
                     f"{p['file_bytes'] / MIB:.2f}", "-", "-", f"{p['ready_s'] * 1000:.0f}",
                     f"{p['peak_rss'] / MIB:.0f}", f"{(p['peak_rss'] - p['rss_before']) / MIB:.0f}",
                     "-", "-"])
    out.append(table(["interactions", "file MiB", "load ms", "index ms", "ready ms",
                      "peak RSS MiB", "RSS growth MiB", "match p50 us", "match p99 us"], rows))
    if len(res["load"]) > 1:
        lo, hi = res["load"][0], res["load"][-1]
        out.append(f"  match p50 at {hi['interactions']:,} / at {lo['interactions']:,} = "
                   f"{fmt_x(hi['lookup_p50_us'], lo['lookup_p50_us'])}; ready time per "
                   f"interaction at {hi['interactions']:,}: "
                   f"{hi['ready_s'] / hi['interactions'] * 1e6:.1f} us")
    for p in res["flows_load"]:
        if res["load"]:
            big = res["load"][-1]
            out.append(
                f"  per interaction: mitmproxy FlowReader {p['ready_s'] / p['flows'] * 1e6:.0f} us"
                f" and {(p['peak_rss'] - p['rss_before']) / p['flows'] / 1024:.1f} KiB; "
                f"replayproxy {big['ready_s'] / big['interactions'] * 1e6:.1f} us and "
                f"{(big['peak_rss'] - big['rss_before']) / big['interactions'] / 1024:.1f} KiB")
    if res.get("load_json"):
        out.append("")
        out.append("   JSON-body matching (POSTs with JSON bodies, 100 per path; every lookup "
                   "parses the request body and compares it semantically):")
        out.append(table(["interactions", "ready ms", "match p50 us", "match p99 us"], [
            [f"{p['interactions']:,}", f"{p['ready_s'] * 1000:.0f}",
             f"{p['lookup_p50_us']:.1f}", f"{p['lookup_p99_us']:.1f}"]
            for p in res["load_json"]]))
        if len(res["load_json"]) > 1:
            lo, hi = res["load_json"][0], res["load_json"][-1]
            ratio = fmt_x(hi["lookup_p50_us"], lo["lookup_p50_us"])
            out.append(f"  JSON match p50 at {hi['interactions']:,} / at "
                       f"{lo['interactions']:,} = {ratio}")
    out.append("")
    out.append("   Proxy process start -> accepting connections (includes Python + mitmproxy "
               "import):")
    rows = [[r["what"], f"{r['ready_s']:.2f}", f"{r['peak_rss'] / MIB:.0f}"]
            for r in res["startup"]]
    out.append(table(["process", "ready s", "peak RSS MiB"], rows))
    out.append("")
    sz = res["sizes"]
    out.append(f"3. Cassette size, the same {URLS} GETs (python-requests) recorded for real:")
    out.append(table(["format", "bytes", "vs VCR.py YAML"], [
        ["replayproxy (msgpack)", f"{sz['replayproxy']:,}",
         fmt_x(sz["replayproxy"], sz["vcr_yaml"])],
        [f"VCR.py {m['vcrpy']} YAML (PyYAML {m['pyyaml']})", f"{sz['vcr_yaml']:,}", "1.00x"],
        ["mitmproxy flow file", f"{sz['mitm_flows']:,}", fmt_x(sz["mitm_flows"], sz["vcr_yaml"])],
    ]))
    out.append("")
    out.append("Targets (issue 3):")
    for what, ok in res["targets"]:
        out.append(f"  [{'met' if ok else 'MISSED'}] {what}")
    return "\n".join(out)


def round_ratios(res: dict[str, Any], a: str, b: str, c: str, key: str = "rps"
                 ) -> list[float]:
    """``a[key] / b[key]`` for each round (cells of one round ran seconds apart)."""
    rounds = res["throughput_rounds"]
    return [x[key] / y[key] if y[key] else float("nan")
            for x, y in zip(rounds[a][c], rounds[b][c], strict=True)]


def targets(res: dict[str, Any]) -> list[tuple[str, bool]]:
    tp = res["throughput"]
    rp = tp["replayproxy"]
    sz = res["sizes"]
    out = []
    for c in map(str, CONCURRENCY):
        ratio = statistics.median(round_ratios(res, "replayproxy", "mitmdump", c))
        out.append((f"replay req/s >= 1.5x mitmdump --server-replay at c={c}: {ratio:.2f}x "
                    "(median of per-round ratios)", ratio >= 1.5))
    out.append((f"p50 latency at c=1 < 1 ms: {rp['1']['p50_ms']:.3f} ms",
                rp["1"]["p50_ms"] < 1.0))
    if res["load"]:
        big = max(res["load"], key=lambda p: p["interactions"])
        out.append((f"{big['interactions']:,}-interaction cassette ready < 1 s: "
                    f"{big['ready_s']:.3f} s", big["ready_s"] < 1.0))
        out.append((f"... and < 150 MiB: peak RSS {big['peak_rss'] / MIB:.0f} MiB for the "
                    "whole process", big["peak_rss"] < 150 * MIB))
    out.append((f"cassette bytes <= VCR.py YAML: {sz['replayproxy']:,} vs {sz['vcr_yaml']:,}",
                sz["replayproxy"] <= sz["vcr_yaml"]))
    return out


# -- main -----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="throughput rounds (median)")
    ap.add_argument("--seconds", type=float, default=1.5, help="seconds per throughput cell")
    ap.add_argument("--warmup", type=float, default=0.3, help="warm-up seconds per cell")
    ap.add_argument("--sizes", default="1000,10000,100000", help="cassette sizes to load")
    ap.add_argument("--flow-sizes", default="10000", help="mitmdump flow files to load ('' = skip)")
    ap.add_argument("--load-repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=BENCH / ".work")
    ap.add_argument("--variants", action="store_true",
                    help="also replay with candidate product changes (gc.freeze(), python -O) "
                         "and time GC pauses; adds about a minute")
    args = ap.parse_args()
    for v in (args.rounds, args.load_repeats):
        if not 1 <= v <= 20:
            ap.error("--rounds/--load-repeats must be 1..20")
    if not 0.1 <= args.seconds <= 60 or not 0 <= args.warmup <= 10:
        ap.error("--seconds must be 0.1..60 and --warmup 0..10")

    try:
        import vcr  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        sys.exit("bench: VCR.py is missing; install the dev extras: "
                 ".venv/bin/pip install -e '.[dev]' (or run `make bench`)")
    work: Path = args.work.resolve()
    marker = work / ".replayproxy-bench"
    ours = work == BENCH / ".work" or marker.exists()
    if work.exists() and not ours and any(work.iterdir()):
        ap.error(f"--work {work} is not empty and was not made by this benchmark; "
                 "give a new or empty directory")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    marker.touch()
    res: dict[str, Any] = {"machine": machine(), "config": {
        "rounds": args.rounds, "seconds": args.seconds, "warmup": args.warmup,
        "load_repeats": args.load_repeats}}
    t_start = time.monotonic()
    load_start = os.getloadavg()[0]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    flow_sizes = [int(s) for s in args.flow_sizes.split(",") if s]
    if not all(1 <= n <= 1_000_000 for n in sizes) or not all(
            1 <= n <= 100_000 for n in flow_sizes):
        ap.error("--sizes must be 1..1,000,000 and --flow-sizes 1..100,000")

    with children() as started:
        up, up_port = start_upstream(work, started)
        log(f"upstream on {HOST}:{up_port}")

        # 3. sizes (and the replay cassette + flow file for part 1)
        cdir = work / "cassettes"
        cassette = record_cassette(work, up_port, cdir)
        vcr_file = record_vcr(work, up_port)
        recorded = list(load_cassette(cassette).interactions())
        if len(recorded) != URLS:
            raise SystemExit(f"recorded {len(recorded)} interactions, expected {URLS}")
        flows_file = work / "bench.flows"
        write_flows(recorded, flows_file)
        res["sizes"] = {"replayproxy": cassette.stat().st_size,
                        "vcr_yaml": vcr_file.stat().st_size,
                        "mitm_flows": flows_file.stat().st_size}
        log(f"sizes: {res['sizes']}")

        # synthetic cassettes for part 2 (the largest is also replayed in part 1)
        big_dir = work / "big"
        for n in sizes:
            save_cassette(big_dir / f"synthetic-{n}.cassette",
                          [encode_interaction(it) for it in synthetic(n)])
        json_sizes = sorted({min(sizes), max(sizes)}) if sizes else []
        for n in json_sizes:
            save_cassette(big_dir / f"json-{n}.cassette",
                          [encode_interaction(it) for it in synthetic_json(n)])
        for n in flow_sizes:
            write_flows(synthetic(n), big_dir / f"synthetic-{n}.flows")

        # 1. throughput
        serve, serve_port, serve_ready = start_serve(work, cdir, "bench", started)
        mitm, mitm_port, mitm_ready = start_mitmdump(work, flows_file, started)
        res["startup"] = [
            {"what": f"replayproxy serve, {URLS} interactions", "ready_s": serve_ready,
             "peak_rss": serve.peak_rss()},
            {"what": f"mitmdump --server-replay, {URLS} flows", "ready_s": mitm_ready,
             "peak_rss": mitm.peak_rss()},
        ]
        log(f"replayproxy on {serve_port} (ready {serve_ready:.2f} s), "
            f"mitmdump on {mitm_port} (ready {mitm_ready:.2f} s)")
        paths = [f"/items/{i}" for i in range(URLS)]
        bodies = [item_body(i) for i in range(URLS)]
        authority = f"{HOST}:{up_port}"
        tgts = [Target("direct", up_port, up, build_requests(authority, paths, proxy=False),
                       bodies, replay=False),
                Target("replayproxy", serve_port, serve,
                       build_requests(authority, paths, proxy=True), bodies),
                Target("mitmdump", mitm_port, mitm,
                       build_requests(authority, paths, proxy=True), bodies)]
        variants: list[Child] = []
        if args.variants:
            for label, variant, env in (("replayproxy, GC timed", "timed", None),
                                        ("replayproxy + gc.freeze()", "freeze", None),
                                        ("replayproxy, python -O", "", {"PYTHONOPTIMIZE": "1"})):
                child, port, _ = start_serve(work, cdir, "bench", started, variant=variant,
                                             env=env)
                variants.append(child)
                tgts.append(Target(label, port, child,
                                   build_requests(authority, paths, proxy=True), bodies))
        # the smallest and the largest synthetic cassette, replayed with requests of the
        # same shape (1,000 distinct URLs spread over the cassette): does size cost anything?
        synth_serves: list[Child] = []
        for n in sorted({min(sizes), max(sizes)}) if sizes else []:
            name = f"synthetic-{n}"
            child, port, ready = start_serve(work, big_dir, name, started)
            synth_serves.append(child)
            res["startup"].append({"what": f"replayproxy serve, {n:,} interactions",
                                   "ready_s": ready, "peak_rss": child.peak_rss()})
            log(f"replayproxy with {n:,} interactions on {port} (ready {ready:.2f} s)")
            picks = range(0, n, max(1, n // 1000))
            tgts.append(Target(
                f"replayproxy, {n:,} synthetic", port, child,
                build_requests("api.bench.test", [f"/items/{i}?page={i % 10}" for i in picks],
                               proxy=True),
                [item_body(i) for i in picks]))
        # replay runs must never reach the upstream: count its requests around them
        hits = 0
        results: dict[str, dict[int, list[dict[str, float]]]] = {t.name: {
            c: [] for c in CONCURRENCY} for t in tgts}
        # targets interleaved cell by cell, so that a burst of load from elsewhere on the
        # machine hits all of them alike; ratios are taken within a round
        for rnd in range(args.rounds):
            for c in CONCURRENCY:
                for t in tgts:
                    before = upstream_count(up_port)
                    results[t.name][c].append(measure_cell(
                        t, c, args.seconds, args.warmup, f"round {rnd + 1}/{args.rounds}"))
                    if t.replay:
                        hits += upstream_count(up_port) - before
        res["upstream_hits_during_replay"] = hits
        res["throughput"] = {
            name: {str(c): {k: median_of(rows, k) for k in rows[0]} | {
                "errors": sum(int(r["errors"]) for r in rows)}
                for c, rows in per_c.items()}
            for name, per_c in results.items()}
        res["throughput_rounds"] = {n: {str(c): rows for c, rows in pc.items()}
                                    for n, pc in results.items()}
        for child in (serve, mitm, *synth_serves, *variants):
            started.remove(child)
            rc = child.stop()
            if child is not mitm and rc != 0:
                log(f"{child.name} exited {rc}: {child.stderr_path.read_text()[-1000:]}")
        res["gc"] = {}
        for t in tgts:
            if t.child in variants:
                for line in t.child.stderr_path.read_text().splitlines():
                    if line.startswith("GCSTATS "):
                        res["gc"][t.name] = json.loads(line[8:])

        # 2. cassette ready time and memory, each in a fresh process
        res["load"] = []
        for n in sizes:
            path = big_dir / f"synthetic-{n}.cassette"
            runs = [probe("cassette", path) for _ in range(args.load_repeats)]
            pick = sorted(runs, key=lambda r: r["ready_s"])[len(runs) // 2]
            res["load"].append(pick)
            log(f"cassette {n:>7,}: ready {pick['ready_s'] * 1000:.0f} ms, peak RSS "
                f"{pick['peak_rss'] / MIB:.0f} MiB, match p50 {pick['lookup_p50_us']:.1f} us")
        res["load_json"] = []
        for n in json_sizes:
            pick = probe("cassette", big_dir / f"json-{n}.cassette")
            res["load_json"].append(pick)
            log(f"JSON cassette {n:>7,}: ready {pick['ready_s'] * 1000:.0f} ms, match p50 "
                f"{pick['lookup_p50_us']:.1f} us")
        res["flows_load"] = []
        for n in flow_sizes:
            path = big_dir / f"synthetic-{n}.flows"
            res["flows_load"].append(probe("flows", path))
            mitm_big, _, ready = start_mitmdump(work, path, started)
            res["startup"].append({"what": f"mitmdump --server-replay, {n:,} flows",
                                   "ready_s": ready, "peak_rss": mitm_big.peak_rss()})
            started.remove(mitm_big)
            mitm_big.stop()
            log(f"mitmdump {n:,} flows ready in {ready:.2f} s")

    res["loadavg"] = [load_start, os.getloadavg()[0]]
    res["targets"] = targets(res)
    res["elapsed_s"] = time.monotonic() - t_start
    (work / "results.json").write_text(json.dumps(res, indent=1))
    print(report(res))
    out = work / "results.json"
    print(f"\n(total {res['elapsed_s']:.0f} s; raw results in "
          f"{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
