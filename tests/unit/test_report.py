"""The run report: the per-URL tally, the runs database and what `report` prints."""

import json
from pathlib import Path

import pytest

from replayproxy.cassette.store import save_cassette
from replayproxy.cli.report import render_text
from replayproxy.decision.pipeline import Pipeline
from replayproxy.decision.session import CassetteSession
from replayproxy.decision.tally import OTHER, Tally
from replayproxy.drift.plan import endpoint_of
from replayproxy.errors import ConfigError
from replayproxy.faults.plan import FaultPlan
from replayproxy.model import Interaction, RecordMode, Request, Response
from replayproxy.report import default_database
from replayproxy.report.runs import read_report, record_session


def req(path: str, method: str = "GET") -> Request:
    return Request(method, "https", "api.example.com", 443, path)


def test_the_tally_folds_urls_into_endpoints():
    tally = Tally()
    for n in (1, 2, 3):
        tally.planned(req(f"/v1/charges/ch_{n}abc"), "replayed")
        tally.finished(req(f"/v1/charges/ch_{n}abc"), 0.5)
    tally.planned(req("/v1/charges", "POST"), "fault")
    tally.planned(req("/v1/charges", "POST"), "unmatched", fault=True)
    out = tally.endpoints(endpoint_of)
    one = out["GET api.example.com/v1/charges/{id}"]
    assert (one.requests, one.replayed, one.seconds) == (3, 3, 1.5)
    post = out["POST api.example.com/v1/charges"]
    assert (post.requests, post.unmatched, post.faults) == (2, 1, 2)


def test_the_tally_stays_bounded(monkeypatch):
    monkeypatch.setattr(Tally, "MAX_KEYS", 3)
    tally = Tally()
    for n in range(10):
        tally.planned(req(f"/page/{n}x"), "replayed")
    assert len(tally) == 4  # three URLs and the "other" bucket
    assert tally.endpoints(endpoint_of)[OTHER].requests == 7


def test_the_pipeline_counts_what_it_plans(tmp_path):
    save_cassette(tmp_path / "c.cassette", [Interaction(req("/a"), Response(200))])
    pipeline = Pipeline(CassetteSession(tmp_path, "c", RecordMode.NONE),
                        FaultPlan(["latency=1ms@*/a"]))
    pipeline.decide(req("/a"), 0.0)
    pipeline.decide(req("/b"), 0.0)
    out = pipeline.session.summary.tally.endpoints(endpoint_of)
    assert out["GET api.example.com/a"].replayed == 1
    assert out["GET api.example.com/a"].faults == 1  # the latency fault changed it
    assert out["GET api.example.com/b"].unmatched == 1


def _run(tmp_path: Path, db: Path, paths: list[str], *, suite: str, test: str = "",
         outcome: str | None = None) -> None:
    session = CassetteSession(tmp_path, "shop", RecordMode.NONE)
    pipeline = Pipeline(session)
    for p in paths:
        pipeline.decide(req(p), 0.0)
    record_session(db, session.close(), suite=suite, started=100.0, finished=101.5,
                   test=test, outcome=outcome)


def test_coverage_slowest_and_flaky_tests_are_read_back(tmp_path):
    save_cassette(tmp_path / "shop.cassette", [
        Interaction(req("/v1/items"), Response(200)),
        Interaction(req("/v1/items/42"), Response(200)),
        Interaction(req("/v1/orders", "POST"), Response(201)),
    ])
    db = tmp_path / "runs.db"
    _run(tmp_path, db, ["/v1/items"], suite="s1", test="t.py::test_list")
    _run(tmp_path, db, ["/v1/items/42"], suite="s1", test="t.py::test_one")
    _run(tmp_path, db, ["/v1/items"], suite="s2", test="t.py::test_list")
    _run(tmp_path, db, ["/v1/items/42", "/v1/nope"], suite="s2", test="t.py::test_one",
         outcome="failed")
    report = read_report(db)
    assert report.suites == 2
    assert report.coverage["shop"] == {"GET api.example.com/v1/items": 2,
                                       "GET api.example.com/v1/items/{id}": 2,
                                       "POST api.example.com/v1/orders": 0}
    assert [r.test for r in report.flaky] == ["t.py::test_one"]
    assert report.flaky[0].outcomes == ("passed:0", "failed:1")
    assert {r.test for r in report.slowest} == {"t.py::test_list", "t.py::test_one"}
    assert report.slowest[0].mean_seconds == pytest.approx(1.5)
    # the last suite only: nothing varies
    assert read_report(db, suites=1).flaky == []

    text = render_text(report)
    assert "Coverage of cassette shop: 2 of 3 recorded endpoints exercised" in text
    assert "never  POST api.example.com/v1/orders" in text
    assert "t.py::test_one (shop): ok FAIL/1" in text
    markdown = render_text(report, markdown=True)
    assert "| `POST api.example.com/v1/orders` | **never** |" in markdown
    assert json.loads(report.as_json())["flaky"][0]["test"] == "t.py::test_one"


def test_no_database_yet_is_one_line_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="no runs recorded yet: .*runs.db does not exist"):
        read_report(tmp_path / "runs.db")


def test_a_file_that_is_not_a_runs_database_is_refused(tmp_path):
    bad = tmp_path / "runs.db"
    bad.write_text("not sqlite at all, just text " * 10)
    with pytest.raises(ConfigError, match="not an SQLite database"):
        read_report(bad)
    session = CassetteSession(tmp_path, "shop", RecordMode.ALL)
    with pytest.raises(ConfigError, match="REPLAYPROXY_REPORT_DB"):
        record_session(bad, session.close(), suite="s", started=0.0, finished=1.0)


def test_the_database_is_named_by_the_environment_or_lives_in_the_project(tmp_path):
    assert default_database(tmp_path, {}) == tmp_path / ".replayproxy" / "runs.db"
    assert default_database(tmp_path, {"REPLAYPROXY_REPORT_DB": "/x/r.db"}) == Path("/x/r.db")
    assert default_database(tmp_path, {"REPLAYPROXY_REPORT_DB": "off"}) is None


def test_a_run_written_while_another_writer_holds_the_database_waits_for_it(tmp_path):
    """Two pytest-xdist workers writing their runs at once: the second waits for the
    first instead of failing with "database is locked" (a writer that read before it
    wrote was refused at once by SQLite)."""
    import sqlite3
    import threading
    import time

    save_cassette(tmp_path / "shop.cassette", [Interaction(req("/v1/items"), Response(200))])
    db = tmp_path / "runs.db"
    _run(tmp_path, db, ["/v1/items"], suite="first")  # the tables exist
    other = sqlite3.connect(db, timeout=10, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another worker, in the middle of its write
    other.execute("UPDATE runs SET suite = suite")
    released = threading.Event()

    def finish() -> None:
        time.sleep(0.5)
        other.commit()
        released.set()

    threading.Thread(target=finish).start()
    _run(tmp_path, db, ["/v1/items"], suite="second")
    assert released.is_set()  # it waited for the other writer, then wrote
    other.close()
    assert read_report(db).suites == 2
