"""What the connection limits cost per request: ``make bench`` (or run this file).

The proxy with ``ConnectionLimits`` (header-read and idle timeouts, the connection cap,
``replayproxy/engines/mitm/limits.py``) against the same proxy with that addon replaced
by one that does nothing, in this process, alternating the two so that a noisy machine
slows both alike: requests per second over one keep-alive connection, each answered by
a tiny addon (no cassette, so the limits' hooks are a visible share of the work).
Prints the medians and their ratio, and, since a shared machine's noise is larger than
the difference, the CPU time of the addon's per-request hooks themselves
(``requestheaders`` and ``response``, ``time.process_time``) against the CPU time the
proxy process spends per request in the same run. Results also go to
bench/.work/limits.json.
"""

from __future__ import annotations

import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mitmproxy import http as mitmhttp  # noqa: E402
from mitmproxy.test import tflow  # noqa: E402

import replayproxy.engines.mitm.master as master  # noqa: E402
from replayproxy.engines.mitm.ca import ensure_ca  # noqa: E402
from replayproxy.engines.mitm.limits import ConnectionLimits  # noqa: E402
from replayproxy.limits import DEFAULT_LIMITS  # noqa: E402

WORK = Path(__file__).parent / ".work"
ROUNDS = 5
REQUESTS = 1500


class _NoLimits:
    def __init__(self, limits: Any) -> None:
        pass


class _Answer:
    def request(self, flow: mitmhttp.HTTPFlow) -> None:
        flow.response = mitmhttp.Response.make(200, b"ok")


def _rate(limits_addon: Any, ca_dir: Path) -> tuple[float, float]:
    """Requests per second, and CPU seconds per request (this process: proxy and
    client)."""
    master.ConnectionLimits = limits_addon  # type: ignore[misc]
    with master.Proxy([_Answer()], ca=ensure_ca(ca_dir)) as proxy:
        assert proxy.proxy_address is not None
        conn = http.client.HTTPConnection(*proxy.proxy_address, timeout=30)
        for n in (100, REQUESTS):  # warm-up, then measured
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(n):
                conn.request("GET", "http://bench.test/x")
                conn.getresponse().read()
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        conn.close()
    return REQUESTS / elapsed, cpu / REQUESTS


def _hooks_cpu(n: int = 100_000) -> float:
    """CPU seconds the limits' hooks take per request (one keep-alive exchange)."""
    addon = ConnectionLimits(DEFAULT_LIMITS)
    flow = tflow.tflow()
    addon.table.admit(flow.client_conn.id, 0.0)
    start = time.process_time()
    for _ in range(n):
        addon.requestheaders(flow)
        addon.response(flow)
    return (time.process_time() - start) / n


def main() -> None:
    real = master.ConnectionLimits
    rates: dict[str, list[float]] = {"without": [], "with": []}
    cpus: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(ROUNDS):
            rates["without"].append(_rate(_NoLimits, Path(tmp))[0])
            rate, cpu = _rate(real, Path(tmp))
            rates["with"].append(rate)
            cpus.append(cpu)
    master.ConnectionLimits = real  # type: ignore[misc]
    medians = {k: statistics.median(v) for k, v in rates.items()}
    ratio = medians["with"] / medians["without"]
    hooks, per_request = _hooks_cpu(), statistics.median(cpus)
    print(f"connection limits: {medians['with']:.0f} req/s with, "
          f"{medians['without']:.0f} without (ratio {ratio:.3f}; "
          f"{ROUNDS} rounds of {REQUESTS} requests, keep-alive, plain HTTP)")
    print(f"  their hooks: {hooks * 1e6:.1f} µs CPU per request, "
          f"{hooks / per_request:.1%} of the {per_request * 1e6:.0f} µs CPU a request "
          "costs this process (proxy and client)")
    WORK.mkdir(exist_ok=True)
    (WORK / "limits.json").write_text(json.dumps(
        {"rates": rates, "ratio": ratio, "hooks_cpu_s": hooks,
         "request_cpu_s": per_request}, indent=2))


if __name__ == "__main__":
    main()
