"""Measure, in a fresh process, how long a cassette takes to be ready and what it costs.

``python bench/load_probe.py cassette FILE [--lookups N]``: time ``load_cassette`` +
``ReplayIndex`` ("ready"), the process's peak RSS, and the time of single
``ReplayIndex.match`` calls on requests taken from the cassette.

``python bench/load_probe.py flows FILE``: time mitmproxy's own flow-file reader
(``mitmproxy.io.FlowReader``) on a flow file, for comparison.

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    # VmHWM, not getrusage: Linux carries ru_maxrss over from the parent across fork+exec,
    # so a probe started by a big parent would report the parent's peak
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def probe_cassette(path: str, lookups: int) -> dict[str, object]:
    from replayproxy.cassette.store import load_cassette
    from replayproxy.matching.index import ReplayIndex

    rss_before = _rss()
    t0 = time.perf_counter()
    cassette = load_cassette(path)
    t1 = time.perf_counter()
    index = ReplayIndex(cassette)
    t2 = time.perf_counter()
    peak = _peak_rss()
    n = len(cassette)

    rng = random.Random(1)
    sample = rng.sample(range(n), min(n, 2000))
    requests = [cassette.interaction(i).request for i in sample]
    for pos, req in zip(sample, requests, strict=True):  # correctness, untimed
        served = index.match(req)
        if served is None or served.interaction.request != req:
            raise SystemExit(f"lookup of interaction #{pos} returned {served!r}")
    timings = []
    clock = time.perf_counter_ns
    order = [requests[rng.randrange(len(requests))] for _ in range(lookups)]
    for req in order:
        a = clock()
        index.match(req)
        timings.append(clock() - a)
    timings.sort()
    return {
        "interactions": n,
        "file_bytes": os.path.getsize(path),
        "load_s": t1 - t0,
        "index_s": t2 - t1,
        "ready_s": t2 - t0,
        "rss_before": rss_before,
        "peak_rss": peak,
        "lookups": len(timings),
        "lookup_p50_us": timings[len(timings) // 2] / 1000,
        "lookup_p99_us": timings[int(len(timings) * 0.99)] / 1000,
    }


def probe_flows(path: str) -> dict[str, object]:
    from mitmproxy import io

    rss_before = _rss()
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        flows = list(io.FlowReader(f).stream())
    t1 = time.perf_counter()
    return {
        "flows": len(flows),
        "file_bytes": os.path.getsize(path),
        "ready_s": t1 - t0,
        "rss_before": rss_before,
        "peak_rss": _peak_rss(),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["cassette", "flows"])
    ap.add_argument("file")
    ap.add_argument("--lookups", type=int, default=20_000)
    args = ap.parse_args()
    if args.kind == "cassette":
        out = probe_cassette(args.file, args.lookups)
    else:
        out = probe_flows(args.file)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
