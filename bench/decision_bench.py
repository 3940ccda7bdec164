"""The per-request CPU of the decision pipeline: ``make bench`` (or run this file).

Replays 100 recorded interactions (50 GETs, 50 JSON POSTs carrying an Authorization
header, as an API client sends) from a cassette in memory, asking
``Pipeline.decide(request, now)`` what to do with each incoming request, as the mitm
engine does once per flow. Measured in this process with ``time.process_time`` (CPU,
not wall time), median of several rounds, each round a bounded number of decisions:

- ``lookup``: ``ReplayIndex.match`` on an already redacted request: the baseline;
- ``redact``: ``Redactor.redact_request`` alone (every incoming request is redacted
  before it is matched, so it meets the recording's placeholders);
- ``decide, first sight``: the whole decision (redact + match + bookkeeping), no fault
  rules, for a request the session has not seen before (its redaction cache off);
- ``decide``: the same for requests seen before (the session keeps the redacted form
  of the last 4096 distinct requests: test suites repeat requests);
- ``decide + faults``: the same with three fault rules that see every request (a
  latency on every request, a status on a route that never matches, a 1-in-1000 reset).

Figures are µs per request and ratios to the lookup measured in the same run.
Results also go to bench/.work/decision.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from replayproxy.cassette.store import cassette_path, save_cassette  # noqa: E402
from replayproxy.decision.pipeline import Pipeline  # noqa: E402
from replayproxy.decision.session import CassetteSession, Replay  # noqa: E402
from replayproxy.faults.plan import FaultPlan  # noqa: E402
from replayproxy.model import Interaction, RecordMode, Request, Response  # noqa: E402

ROUNDS = 7
DECISIONS = 4_000
TOKEN = "Bearer sk_test_4eC39HqLyjWDarjtT1zdp7dc"


def _request(i: int) -> Request:
    if i % 2:
        body = json.dumps({"amount": 1000 + i, "currency": "eur", "customer": f"cus_{i}",
                           "metadata": {"order": i, "note": "x" * 40}}).encode()
        return Request("POST", "https", "api.example.com", 443, f"/v1/charges/{i}", "",
                       (("Host", "api.example.com"), ("Authorization", TOKEN),
                        ("Content-Type", "application/json"), ("Accept", "application/json"),
                        ("Content-Length", str(len(body)))), body)
    return Request("GET", "https", "api.example.com", 443, f"/v1/items/{i}", "limit=10",
                   (("Host", "api.example.com"), ("Authorization", TOKEN),
                    ("Accept", "application/json")), b"")


def _cassette(directory: Path, session: CassetteSession) -> list[Request]:
    """Record 100 interactions (redacted, as `record` stores them); the incoming
    requests are the unredacted originals."""
    incoming = [_request(i) for i in range(100)]
    recorded = [
        session.redactor.redact(Interaction(
            r, Response(200, "OK", (("Content-Type", "application/json"),),
                        b'{"ok": true, "id": %d}' % n), 1_700_000_000.0, 0.01, 0.02))
        for n, r in enumerate(incoming)
    ]
    save_cassette(cassette_path(directory, "bench"), recorded)
    return incoming


def _cpu_us(fn, items) -> float:  # type: ignore[no-untyped-def]
    """Median CPU µs per call of ``fn`` over ``ROUNDS`` rounds of ``DECISIONS`` calls."""
    per_round = []
    n = len(items)
    for _ in range(ROUNDS):
        start = time.process_time()
        for k in range(DECISIONS):
            fn(items[k % n])
        per_round.append((time.process_time() - start) / DECISIONS * 1e6)
    return statistics.median(per_round)


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        incoming = _cassette(directory, CassetteSession(directory, "seed", RecordMode.ALL))
        session = CassetteSession(directory, "bench", RecordMode.NONE)
        redacted = [session.redactor.redact_request(r) for r in incoming]
        for r in redacted:  # correctness, untimed: every request is answered
            if session.index.match(r) is None:
                raise SystemExit(f"no match for {r.method} {r.url}")
        plain = Pipeline(session)
        faulted = Pipeline(session, FaultPlan(["latency=1ms@*", "status=500@*/never/*",
                                               "reset,p=0.001,seed=1@*"]))
        clock = time.monotonic
        if not isinstance(plain.decide(incoming[1], clock()).plan, Replay):
            raise SystemExit("the pipeline did not replay")
        posts = incoming[1::2]
        decide = lambda r: plain.decide(r, clock())  # noqa: E731
        rows = {"lookup": _cpu_us(session.index.match, redacted),
                "redact": _cpu_us(session.redactor.redact_request, incoming)}
        session.redacted_cache = 0
        rows["decide, first sight"] = _cpu_us(decide, incoming)
        rows["decide, first sight (JSON POST)"] = _cpu_us(decide, posts)
        session.redacted_cache = CassetteSession.redacted_cache
        rows["decide"] = _cpu_us(decide, incoming)
        rows["decide (JSON POST)"] = _cpu_us(decide, posts)
        rows["decide + faults"] = _cpu_us(lambda r: faulted.decide(r, clock()), incoming)
        session.close()
    base = rows["lookup"]
    print("decision pipeline, CPU per request (median of "
          f"{ROUNDS} rounds x {DECISIONS} requests; 50 GET + 50 JSON POST, Authorization)")
    for name, us in rows.items():
        print(f"  {name:<32} {us:8.1f} us   {us / base:5.1f}x lookup")
    out = BENCH / ".work"
    out.mkdir(exist_ok=True)
    (out / "decision.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
