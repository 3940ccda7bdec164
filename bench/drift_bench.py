"""Drift check cost: `replayproxy drift`'s engine against the bare HTTP calls it makes.

Starts bench/upstream.py (loopback), builds a cassette of N recorded ``GET /items/i``
interactions, then per round, alternating:

- **baseline**: an httpx AsyncClient sends the same 2N requests (each twice, as the
  drift check does to learn volatility) at the same concurrency, reading every body
  and doing nothing else: the least any drift check must spend on the network;
- **drift**: ``replayproxy.drift.live.check`` on the cassette (plan, send twice,
  compare, classify).

Reports the median over rounds of drift time / baseline time, and the CPU cost of one
comparison (``compare_responses`` with a second live response) measured in-process.
Bounded: N requests per round, a fixed number of rounds, 30 s timeouts.

Run: ``python bench/drift_bench.py [--n 400] [--rounds 5] [--concurrency 4]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.upstream import item_body  # noqa: E402
from replayproxy.drift.compare import compare_responses  # noqa: E402
from replayproxy.drift.live import Job, check  # noqa: E402
from replayproxy.drift.plan import DriftConfig, Outcome, interaction_key  # noqa: E402
from replayproxy.model import Interaction, Request, Response  # noqa: E402

JSON = (("Content-Type", "application/json"), ("Server", "bench-upstream"))


def jobs_for(port: int, n: int) -> list[Job]:
    out = []
    for i in range(n):
        request = Request("GET", "http", "127.0.0.1", port, f"/items/{i}",
                          headers=(("Host", f"127.0.0.1:{port}"), ("Accept", "*/*")))
        response = Response(200, "OK", JSON, item_body(i))
        out.append(Job("bench", i, interaction_key(request, 1), Interaction(request, response)))
    return out


async def baseline(jobs: list[Job], concurrency: int) -> float:
    limit = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, url: str) -> None:
        async with limit:
            for _ in range(2):
                r = await client.get(url)
                await r.aread()
                assert r.status_code == 200

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=30,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(one(client, j.interaction.request.url) for j in jobs))
    return time.perf_counter() - start


def drift(jobs: list[Job], concurrency: int) -> float:
    start = time.perf_counter()
    results, _ = check(jobs, DriftConfig(concurrency=concurrency, timeout=30.0), {})
    elapsed = time.perf_counter() - start
    bad = [r for r in results if r.outcome is not Outcome.PASSED]
    if bad:
        raise SystemExit(f"drift bench: {len(bad)} interactions did not pass: {bad[0]}")
    return elapsed


def compare_cost(n: int) -> float:
    """Microseconds per compare_responses(recorded, live, live_again=...), where every
    value differs between the three (the worst case: deepdiff walks every pair)."""
    cases = [tuple(Response(200, "OK", JSON, item_body(i + k)) for k in range(3))
             for i in range(n)]
    start = time.perf_counter()
    for rec, live, again in cases:
        compare_responses(rec, live, live_again=again)
    return (time.perf_counter() - start) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    up = subprocess.Popen([sys.executable, str(ROOT / "bench" / "upstream.py")],
                          stdout=subprocess.PIPE, text=True)
    try:
        assert up.stdout is not None
        port = int(up.stdout.readline().split()[1])
        jobs = jobs_for(port, args.n)
        drift(jobs[:20], args.concurrency)  # warm up: imports, connections
        rows = []
        for r in range(args.rounds):
            base = asyncio.run(baseline(jobs, args.concurrency))
            mine = drift(jobs, args.concurrency)
            rows.append({"round": r + 1, "baseline_s": base, "drift_s": mine,
                         "ratio": mine / base})
            print(f"[drift bench] round {r + 1}: baseline {base:.2f} s, drift {mine:.2f} s, "
                  f"ratio {mine / base:.2f}x", file=sys.stderr, flush=True)
        per_compare = compare_cost(min(args.n, 2000))
    finally:
        up.terminate()
        up.wait(10)
    ratio = statistics.median(r["ratio"] for r in rows)
    result = {"n": args.n, "concurrency": args.concurrency, "rounds": rows,
              "median_ratio": ratio, "compare_us": per_compare,
              "drift_interactions_per_s": statistics.median(args.n / r["drift_s"]
                                                            for r in rows)}
    out = ROOT / "bench" / ".work"
    out.mkdir(exist_ok=True)
    (out / "drift.json").write_text(json.dumps(result, indent=2))
    print(f"\nDrift check, {args.n} GET interactions (each sent twice), concurrency "
          f"{args.concurrency}, {args.rounds} rounds:")
    shown = ", ".join(f"{r['ratio']:.2f}" for r in rows)
    print(f"  drift time / bare httpx calls = {ratio:.2f}x (median; rounds {shown})")
    print(f"  {result['drift_interactions_per_s']:.0f} interactions checked per second")
    print(f"  one comparison (with a second live response, every value different): "
          f"{per_compare:.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
