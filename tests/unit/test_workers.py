"""Several workers serving one run (``serve --workers``): which runs may, and how their
summaries, control answers and request numbers are put together (plain values)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from replayproxy.decision.failures import ClientRefusal
from replayproxy.decision.requestlog import RequestLog
from replayproxy.decision.session import SessionSummary, Unmatched
from replayproxy.decision.tally import OTHER, Tally
from replayproxy.decision.workers import (
    MAX_WORKERS,
    check_workers,
    merge_answers,
    merge_summaries,
    worker_exit,
    worker_limit,
)
from replayproxy.errors import CLI_WORDS, ConfigError
from replayproxy.model import Interaction, RecordMode, Request, Response


def _check(count: int, *, cpus: int | None = 2, mode: RecordMode = RecordMode.NONE,
           engine: str = "auto", why_not_fast: str | None = None,
           reuse_port: bool = True) -> str | None:
    """The CLI's error line, or None when the run may have ``count`` workers."""
    try:
        check_workers(count, cpus=cpus, mode=mode, engine=engine, why_not_fast=why_not_fast,
                      reuse_port=reuse_port)
    except ConfigError as e:
        return e.render(CLI_WORDS)
    return None


def test_worker_limit_is_four_per_cpu_and_sixty_four_in_all():
    assert worker_limit(2) == 8
    assert worker_limit(None) == 4
    assert worker_limit(1000) == MAX_WORKERS == 64


def test_one_worker_is_todays_proxy_whatever_the_run():
    assert _check(1, mode=RecordMode.ALL, engine="mitmproxy", reuse_port=False,
                  why_not_fast="the cassette holds h2 records") is None
    assert _check(2) is None
    assert _check(8) is None


@pytest.mark.parametrize(("count", "kwargs", "expected"), [
    (0, {}, "--workers 0: use 1 (one process) or more"),
    (-3, {}, "--workers -3: use 1 (one process) or more"),
    (9, {}, "--workers 9 is more than this machine can use: at most 8 (4 per CPU, 64 in all)"),
    (2, {"reuse_port": False}, "--workers 2 needs SO_REUSEPORT (Linux, BSD, macOS), which "
                               "this platform lacks: use --workers 1"),
    (2, {"engine": "mitmproxy"}, "--workers 2 runs the fast engine only: drop --engine "
                                 "mitmproxy, or use --workers 1"),
    (2, {"mode": RecordMode.NEW_EPISODES}, "--workers 2 replays only, and this run would "
     "record (record mode new_episodes): record first with --workers 1, then serve with "
     "--record-mode none"),
    (2, {"why_not_fast": "fault 'ws_close=1000@*' is carried out by mitmproxy only"},
     "--workers 2 runs the fast engine only, which cannot serve this run (fault "
     "'ws_close=1000@*' is carried out by mitmproxy only): use --workers 1"),
])
def test_check_workers_refuses_in_one_line(count, kwargs, expected):
    assert _check(count, **kwargs) == expected


def test_worker_exit_names_the_worker_and_how_it_ended():
    assert worker_exit(2, 41, -9).startswith("worker 2 (PID 41) was killed by SIGKILL: ")
    assert worker_exit(1, 40, 3).startswith("worker 1 (PID 40) exited with status 3: ")
    assert worker_exit(1, 40, None).startswith("worker 1 (PID 40) stopped: ")
    assert "the other workers were stopped" in worker_exit(1, 40, 0)
    assert worker_exit(1, 40, 0, handed_in=True) == (
        "worker 1 (PID 40) was stopped by a signal from outside: the other workers were "
        "stopped too")
    assert "was killed by SIGKILL" in worker_exit(1, 40, -9, handed_in=True)


def _request(path: str) -> Request:
    return Request("GET", "https", "api.test", 443, path)


def _summary(**fields: object) -> SessionSummary:
    return SessionSummary(cassette="c", path=Path("c.cassette"), mode=RecordMode.NONE,
                          **fields)  # type: ignore[arg-type]


def test_merge_summaries_adds_counts_and_keeps_what_no_worker_used():
    parent = _summary(cassette_size=5, unused=[0, 1, 2, 3, 4], recovered=1, journals=1)
    one, two = _summary(cassette_size=5), _summary(cassette_size=5)
    for summary, paths, unused in ((one, ["/a", "/a", "/b"], [2, 3, 4]),
                                   (two, ["/a", "/c"], [0, 1, 3, 4])):
        for path in paths:
            summary.tally.planned(_request(path), "replayed")
            summary.tally.finished(_request(path), 0.5)
        summary.replayed = summary.requests = len(paths)
        summary.connections = 1
        summary.unused = unused
    one.unmatched.append(Unmatched("c", _request("/x")))
    two.unmatched.append(Unmatched("c", _request("/y")))
    two.errors.append("damaged entry #3")
    one.client_refusals.append(ClientRefusal("api.test", "unknown ca"))
    two.client_refusals.append(ClientRefusal("api.test", "unknown ca"))
    one.unused_routes, two.unused_routes = ["match route 'a'", "match route 'b'"], \
        ["match route 'b'"]
    decoded: list[int] = []

    def decode(position: int) -> Interaction | None:
        decoded.append(position)
        return Interaction(_request(f"/{position}"), Response(200))

    merged = merge_summaries([parent, one, two], decode)
    assert (merged.replayed, merged.requests, merged.connections) == (5, 5, 2)
    assert (merged.recovered, merged.journals, merged.cassette_size) == (1, 1, 5)
    assert merged.unused == [3, 4] and decoded == [3, 4]
    assert [i.request.path for i in merged.unused_interactions if i] == ["/3", "/4"]
    assert [u.request.path for u in merged.unmatched] == ["/x", "/y"]
    assert list(merged.errors) == ["damaged entry #3"]
    assert merged.client_refusals == [ClientRefusal("api.test", "unknown ca")]
    assert merged.unused_routes == ["match route 'b'"]  # the parent had no requests
    stats = merged.tally.endpoints(lambda r: r.path)
    assert {k: (v.requests, v.replayed, v.seconds) for k, v in stats.items()} == {
        "/a": (3, 3, 1.5), "/b": (1, 1, 0.5), "/c": (1, 1, 0.5)}


def test_merge_summaries_keeps_the_cap_of_one_summary():
    one, two = _summary(), _summary()
    for summary in (one, two):
        for i in range(150):
            summary.unmatched.append(Unmatched("c", _request(f"/{i}")))
    merged = merge_summaries([one, two], lambda p: None)
    assert (len(merged.unmatched), merged.unmatched.total) == (200, 300)


def test_merge_summaries_covers_every_field():
    """A field added to SessionSummary must be merged too (this lists them)."""
    assert [f.name for f in dataclasses.fields(SessionSummary)] == [
        "cassette", "path", "mode", "replayed", "recorded", "recovered", "errors",
        "journals", "unmatched", "unexpected_messages", "unused", "unused_interactions",
        "leaks", "leaks_written", "requests", "connections", "cassette_size",
        "upstream_failures", "replayed_failures", "client_refusals", "unused_routes",
        "tally"]


def test_tally_add_folds_urls_beyond_the_cap_into_other(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(Tally, "MAX_KEYS", 2)
    mine, theirs = Tally(), Tally()
    mine.planned(_request("/a"), "replayed")
    for path in ("/a", "/b", "/c"):
        theirs.planned(_request(path), "unmatched")
    mine.add(theirs)
    stats = mine.endpoints(lambda r: r.path)
    assert {k: (v.requests, v.replayed, v.unmatched) for k, v in stats.items()} == {
        "/a": (2, 1, 1), "/b": (1, 0, 1), OTHER: (1, 0, 1)}


def _sent(seq: int, path: str) -> dict[str, object]:
    return {"seq": seq, "method": "GET", "url": f"http://api.test{path}", "outcome": "replayed"}


def test_merge_answers_orders_the_request_logs_by_number_and_names_the_worker():
    one = {"requests": [_sent(1, "/a"), _sent(4, "/d")], "next": 6}
    two = {"requests": [_sent(2, "/b"), _sent(3, "/c"), _sent(5, "/e")], "next": 6}
    status, merged = merge_answers("requests", "GET", [(200, one), (200, two)])
    assert status == 200 and merged["next"] == 6
    assert [(r["seq"], r["url"][-2:], r["worker"]) for r in merged["requests"]] == [
        (1, "/a", 1), (2, "/b", 2), (3, "/c", 2), (4, "/d", 1), (5, "/e", 2)]
    assert merge_answers("requests", "DELETE", [(200, {"cleared": 2}),
                                                (200, {"cleared": 3})]) == \
        (200, {"cleared": 5})


def test_merge_answers_adds_fault_hits_and_answers_a_change_once():
    def faults(*hits: int) -> dict[str, object]:
        return {"faults": [{"index": i, "spec": f"status=50{i}@*", "hits": h}
                           for i, h in enumerate(hits)]}

    assert merge_answers("faults", "GET", [(200, faults(2, 0)), (200, faults(1, 4))]) == \
        (200, faults(3, 4))
    added = (201, {"index": 1, "spec": "reset@*"})
    assert merge_answers("faults", "POST", [added, added]) == added
    assert merge_answers("faults", "DELETE", [(200, {"cleared": 2})] * 2) == \
        (200, {"cleared": 2})


def test_merge_answers_gives_the_first_refusal():
    bad = (400, {"error": "unknown fault kind 'nope'"})
    assert merge_answers("faults", "POST", [bad, bad]) == bad
    lost = (400, {"error": "the request log keeps the last 10000 requests"})
    assert merge_answers("requests", "GET", [(200, {"requests": [], "next": 1}), lost]) == lost


class _Shared:
    """Numbers shared by several logs, as the workers' counter in shared memory is."""

    def __init__(self) -> None:
        self.last = 0

    def take(self) -> int:
        self.last += 1
        return self.last

    def peek(self) -> int:
        return self.last + 1


def test_request_logs_sharing_numbers_list_their_requests_in_one_sequence():
    shared = _Shared()
    one, two = RequestLog(shared), RequestLog(shared)
    one.add(_request("/a"), "replayed")
    two.add(_request("/b"), "replayed")
    start = one.next_seq
    assert start == two.next_seq == 3
    two.add(_request("/c"), "unmatched")
    one.add(_request("/d"), "replayed")
    assert [(s.seq, s.request.path) for s in one.select()] == [(1, "/a"), (4, "/d")]
    assert [s.seq for s in two.select(since=start)] == [3]
    assert [s.seq for s in one.select(since=start)] == [4]
