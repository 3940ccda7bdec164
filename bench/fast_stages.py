"""Where a replayed request's time goes in the fast engine, stage by stage, in-process.

`make bench` (or `.venv/bin/python bench/fast_stages.py`). Feeds the 100 synthetic GETs
of bench/engines.py to one fast-engine connection whose transport only counts bytes,
and times each stage separately (median of 5 passes of 20,000 requests): finding the
head and its cached parse, the cached ``Request``, the pipeline's decision, the
response bytes, and the whole ``data_received`` call; then the same for requests never
seen before (parse, build, redact, match key). What the socket costs (reads, writes,
the event loop) is the difference to "server CPU us/req" in bench/engines.py.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from loadgen import build_requests  # noqa: E402
from run import synthetic  # noqa: E402

from replayproxy.cassette.format import encode_interaction  # noqa: E402
from replayproxy.cassette.store import save_cassette  # noqa: E402
from replayproxy.engines.fast.http1 import assemble, parse_head  # noqa: E402
from replayproxy.engines.fast.server import FastProxy, _Conn  # noqa: E402
from replayproxy.engines.mitm.ca import ensure_ca  # noqa: E402
from replayproxy.run import ProxyRun  # noqa: E402

N = 20_000


class _Sink:
    """A transport that only counts what is written."""

    written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False


def timed(label: str, fn: Callable[[int], object], rows: list[tuple[str, float]]) -> None:
    passes = []
    for _ in range(5):
        start = time.perf_counter()
        for i in range(N):
            fn(i)
        passes.append((time.perf_counter() - start) / N * 1e6)
    rows.append((label, statistics.median(passes)))


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="replayproxy-stages-"))
    save_cassette(work / "c" / "p.cassette", [encode_interaction(it) for it in synthetic(100)])
    run = ProxyRun("p", "none", cassette_dir=work / "c", ca_dir=work / "ca", control=False)
    run.open()
    assert run.pipeline is not None
    engine = FastProxy(run.pipeline, ca=ensure_ca(work / "ca"))
    conn = _Conn(engine, engine._forward)
    conn.transport = _Sink()  # type: ignore[assignment]
    reqs = build_requests("api.bench.test", [f"/items/{i}?page={i % 10}" for i in range(100)],
                          proxy=True)
    for r in reqs:
        conn.data_received(r)
    heads = [r[:r.index(b"\r\n\r\n")] for r in reqs]
    where = engine._forward
    parsed = [where.heads[h] for h in heads]
    requests = [p.requests[b""] for p in parsed]
    plans = [run.pipeline.decide(q, 0.0).plan for q in requests]
    rows: list[tuple[str, float]] = []
    timed("whole request (data_received, cached)", lambda i: conn.data_received(reqs[i % 100]),
          rows)
    timed("  find the head, its cached parse", lambda i: where.heads.get(
        bytes(reqs[i % 100][:reqs[i % 100].find(b"\r\n\r\n")])), rows)
    timed("  the cached Request", lambda i: parsed[i % 100].requests.get(b""), rows)
    timed("  pipeline.decide (redaction cache, index memo, sequence)",
          lambda i: run.pipeline.decide(requests[i % 100], 0.0), rows)
    timed("  the response bytes (cached per position)",
          lambda i: engine.replay_bytes(run.pipeline, plans[i % 100], "GET"), rows)  # type: ignore[arg-type]
    timed("first time: parse the head", lambda i: parse_head(heads[i % 100]), rows)
    timed("first time: build the Request", lambda i: engine.request_of(
        where, parsed[i % 100], b""), rows)
    timed("first time: redact the request",
          lambda i: run.pipeline.session.redactor.redact_request(requests[i % 100]), rows)
    timed("first time: assemble the response bytes", lambda i: assemble(
        plans[i % 100].served.interaction.response), rows)  # type: ignore[union-attr]
    print("\n## Fast engine: per-request CPU by stage (in-process, us)\n")
    print("| stage | us |\n|---|---:|")
    for label, us in rows:
        print(f"| {label} | {us:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
