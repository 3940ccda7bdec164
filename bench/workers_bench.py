"""`replayproxy serve --workers N`: how replay scales with engine processes; `make bench`
(or `.venv/bin/python bench/workers_bench.py`).

Serves the same 100 synthetic interactions (bench/engines.py's) with `--workers 1` and
`--workers 2`, forward proxy, plain HTTP, and loads each in the same run with
bench/loadgen.py (keep-alive, one request in flight per connection):

- c1 and c32 from one load-generator process;
- c32 split over two load-generator processes (16 connections each);
- c32 pipelined, 16 requests deep: each connection writes 16 requests at once and
  reads the 16 answers back as one block of bytes, checked against the first such
  block. The client's cost per request falls to a fraction of the server's, so the
  server, not the load generator, is the limit: the cell where a second worker can
  show on this machine.

This machine has 2 cores, shared by the workers and the load generator (and by other
users): with 2 workers and 2 load processes, four busy processes take turns on two
cores. Read the ratios within one run; "server CPU us/req" adds up the CPU of serve
and its workers. Results: bench/.work/workers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from engines import API, N, serve  # noqa: E402
from loadgen import LoadResult, build_requests, run_load  # noqa: E402
from run import HOST, ROOT, Child, Target, children, log, measure_cell, synthetic  # noqa: E402
from upstream import item_body  # noqa: E402

from replayproxy.cassette.format import encode_interaction  # noqa: E402
from replayproxy.cassette.store import save_cassette  # noqa: E402


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children (serve's workers) so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Tree:
    """A serve and its workers, as ``measure_cell`` reads a child's CPU."""

    def __init__(self, child: Child) -> None:
        self.child = child

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.child.pid)


def _load(args: tuple[int, list[bytes], list[bytes], int, float]) -> LoadResult:
    port, requests, expect, concurrency, seconds = args
    return run_load(HOST, port, requests, concurrency=concurrency, max_requests=2_000_000,
                    seconds=seconds, expect=expect)


def measure_split(t: Target, tree: Tree, c: int, procs: int, seconds: float, warmup: float,
                  label: str) -> dict[str, float]:
    """A cell at concurrency ``c`` from ``procs`` load-generator processes."""
    per = c // procs
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        pool.map(_load, [(t.port, t.requests, t.expect, per, warmup)] * procs)
        cpu0 = tree.cpu_seconds()
        results = pool.map(_load, [(t.port, t.requests, t.expect, per, seconds)] * procs)
        cpu = tree.cpu_seconds() - cpu0
    completed = sum(r.completed for r in results)
    wall = max(r.seconds for r in results)
    latencies = sorted(x for r in results for x in r.latencies_ns)
    merged = LoadResult(c, completed, sum(r.errors for r in results), wall, latencies)
    row = {"rps": completed / wall if wall else 0.0, "p50_ms": merged.latency_ms(50),
           "p99_ms": merged.latency_ms(99), "completed": completed, "errors": merged.errors,
           "server_cpu_us_per_req": cpu / completed * 1e6 if completed else 0.0}
    log(f"{label} {t.name:<12} c={c:<3} ({procs} load processes) {row['rps']:9,.0f} req/s  "
        f"p50 {row['p50_ms']:.3f} ms  server CPU {row['server_cpu_us_per_req']:.0f} us/req"
        + (f"  ERRORS {merged.errors}" if merged.errors else ""))
    return row


async def _pipelined_load(port: int, batches: list[bytes], conns: int, seconds: float
                          ) -> tuple[int, int, float]:
    """``conns`` connections each sending a batch (several requests; the next of
    ``batches`` each time, all answered alike) and reading the answers back, until
    ``seconds`` pass: (batches answered, mismatches, seconds)."""
    reference = await _first_answer(port, batches[0])
    deadline = time.monotonic() + seconds
    done = errors = 0
    turn = 0

    async def one() -> None:
        nonlocal done, errors, turn
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while time.monotonic() < deadline:
                turn += 1
                writer.write(batches[turn % len(batches)])
                got = await reader.readexactly(len(reference))
                done += 1
                errors += got != reference
        finally:
            writer.close()

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(conns)))
    return done, errors, time.monotonic() - t0


async def _first_answer(port: int, batch: bytes) -> bytes:
    """The bytes the proxy answers ``batch`` with (read until it falls silent)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(batch)
    data = b""
    while True:
        try:
            data += await asyncio.wait_for(reader.read(1 << 20), 0.5)
        except TimeoutError:
            break
    writer.close()
    return data


NEW_REQUESTS = 8192
"""Distinct requests the "new requests" cell cycles through: twice what the fast
engine's caches keep (parsed heads, redacted requests: 4096 each), so nearly every
request is decided afresh (parsed, redacted, matched) as a request never seen is."""


def _batches(t: Target, depth: int, fresh: bool) -> list[bytes]:
    """The batches a pipelined cell sends: the same ``depth`` requests, or (``fresh``)
    each time with a different ``X-Request-Id`` (not matched on: the same answers)."""
    if not fresh:
        return [b"".join(t.requests[:depth])]
    return [b"".join(r.replace(b"\r\n", b"\r\nX-Request-Id: %d\r\n" % (k * depth + j), 1)
                     for j, r in enumerate(t.requests[:depth]))
            for k in range(NEW_REQUESTS // depth)]


def measure_pipelined(t: Target, tree: Tree, conns: int, depth: int, seconds: float,
                      warmup: float, label: str, fresh: bool = False) -> dict[str, float]:
    """A cell of ``conns`` connections pipelining ``depth`` requests at a time (``fresh``:
    requests the engine has not seen, see ``NEW_REQUESTS``)."""
    batches = _batches(t, depth, fresh)
    asyncio.run(_pipelined_load(t.port, batches, conns, warmup))
    cpu0 = tree.cpu_seconds()
    done, errors, wall = asyncio.run(_pipelined_load(t.port, batches, conns, seconds))
    cpu = tree.cpu_seconds() - cpu0
    completed = done * depth
    row = {"rps": completed / wall, "p50_ms": 0.0, "p99_ms": 0.0, "completed": completed,
           "errors": errors, "server_cpu_us_per_req": cpu / completed * 1e6 if completed
           else 0.0}
    log(f"{label} {t.name:<12} c={conns:<3} (pipelined {depth} deep{', new' if fresh else ''}) "
        f"{row['rps']:9,.0f} "
        f"req/s  server CPU {row['server_cpu_us_per_req']:.0f} us/req"
        + (f"  ERRORS {errors}" if errors else ""))
    return row


CELLS = ("c1", "c32", "c32, 2 load processes", "c32, pipelined 16 deep",
         "c32, pipelined 16 deep, new requests")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds (median)")
    ap.add_argument("--seconds", type=float, default=1.5, help="seconds per cell")
    ap.add_argument("--warmup", type=float, default=0.3, help="warm-up seconds per cell")
    ap.add_argument("--work", type=Path, default=BENCH / ".work" / "workers")
    args = ap.parse_args()
    if not 1 <= args.rounds <= 20 or not 0.1 <= args.seconds <= 60:
        ap.error("--rounds must be 1..20 and --seconds 0.1..60")
    work: Path = args.work.resolve()
    cdir = work / "cassettes"
    shutil.rmtree(cdir, ignore_errors=True)
    cdir.mkdir(parents=True)
    save_cassette(cdir / "plain.cassette", [encode_interaction(it) for it in synthetic(N)])
    targets = [f"/items/{i}?page={i % 10}" for i in range(N)]
    requests = build_requests(API, targets, proxy=True)
    bodies = [item_body(i) for i in range(N)]
    res: dict[str, Any] = {"ready_s": {}, "nproc": os.cpu_count()}
    rows: dict[str, dict[str, list[dict[str, float]]]] = {}
    with children() as started:
        tgts = []
        for workers in (1, 2):
            child, env, ready = serve(work, cdir, "plain", "fast", started,
                                      "--workers", str(workers))
            res["ready_s"][str(workers)] = ready
            port = int(env["REPLAYPROXY_URL"].rsplit(":", 1)[1])
            name = f"--workers {workers}"
            tree = Tree(child)
            tgts.append((Target(name, port, tree, requests, bodies), tree))  # type: ignore[arg-type]
            rows[name] = {cell: [] for cell in CELLS}
        for rnd in range(args.rounds):
            label = f"round {rnd + 1}/{args.rounds}"
            for t, tree in tgts:
                for c in (1, 32):
                    rows[t.name][f"c{c}"].append(measure_cell(t, c, args.seconds,
                                                              args.warmup, label))
                rows[t.name]["c32, 2 load processes"].append(
                    measure_split(t, tree, 32, 2, args.seconds, args.warmup, label))
                rows[t.name]["c32, pipelined 16 deep"].append(
                    measure_pipelined(t, tree, 32, 16, args.seconds, args.warmup, label))
                rows[t.name]["c32, pipelined 16 deep, new requests"].append(
                    measure_pipelined(t, tree, 32, 16, args.seconds, args.warmup, label,
                                      fresh=True))
    res["throughput"] = {name: {cell: {k: statistics.median(r[k] for r in cells)
                                       for k in cells[0]} for cell, cells in per.items()}
                         for name, per in rows.items()}
    res["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (work / "workers.json").write_text(json.dumps(res, indent=1))
    print(report(res))
    return 0


def report(res: dict[str, Any]) -> str:
    tp = res["throughput"]
    one, two = tp["--workers 1"], tp["--workers 2"]
    lines = ["", f"## serve --workers (median of rounds; {res['nproc']} CPUs shared by the "
             "workers and the load generator)", "",
             "| cell | --workers 1 req/s | --workers 2 req/s | 2 vs 1 | p50 ms 1 / 2 | "
             "server CPU us/req 1 / 2 |", "|---|---:|---:|---:|---:|---:|"]
    for cell in CELLS:
        a, b = one[cell], two[cell]
        lines.append(f"| {cell} | {a['rps']:,.0f} | {b['rps']:,.0f} | "
                     f"{b['rps'] / a['rps']:.2f}x | {a['p50_ms']:.3f} / {b['p50_ms']:.3f} | "
                     f"{a['server_cpu_us_per_req']:.0f} / {b['server_cpu_us_per_req']:.0f} |")
    for workers, ready in res["ready_s"].items():
        lines.append(f"- `replayproxy serve --workers {workers}` from exec to accepting: "
                     f"{ready:.2f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
