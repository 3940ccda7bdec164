"""Drift history: runs stored with sqlite-utils, and what is new, resolved, still there."""

import io
import json
import re
import sqlite3
import time
from datetime import UTC, datetime

import pytest
from rich.console import Console
from sqlite_utils import Database, Migrations

from replayproxy.drift import history
from replayproxy.drift.findings import Finding, FindingKind, Severity
from replayproxy.drift.history import (
    fingerprint,
    load_history,
    record_run,
)
from replayproxy.drift.plan import Checked, DriftReport, Outcome
from replayproxy.drift.report.history import history_json, render_history
from replayproxy.errors import CLI_WORDS, ConfigError
from replayproxy.model import Response

CASSETTE = "cassettes/payments.rpc"
OTHER = "cassettes/search.rpc"
CHARGES = "GET https://api.example.com/v1/charges #1"
CUSTOMERS = "GET https://api.example.com/v1/customers #1"
REFUNDS = "GET https://api.example.com/v1/refunds #1"
CREATE = "POST https://api.example.com/v1/charges #1"

AMOUNT_MISSING = Finding(Severity.BREAKING, FindingKind.FIELD_MISSING, "body $.amount",
                         "number", None)
NICKNAME_ADDED = Finding(Severity.ADDITIVE, FindingKind.FIELD_ADDED, "body $.nickname",
                         None, "string")
REFUND_TYPE = Finding(Severity.BREAKING, FindingKind.TYPE_CHANGED, "body $.amount",
                      "number", "string")


def noise(value):
    return Finding(Severity.NOISE, FindingKind.VALUE_CHANGED, "body $.id", "ch_1", value)


def checked(key, outcome, *findings, cassette=CASSETTE, message=""):
    method, url, _ = key.split(" ")
    path = url.split("example.com", 1)[1]
    compared = outcome in (Outcome.BREAKING, Outcome.CHANGED, Outcome.PASSED)
    return Checked(cassette=cassette, index=0, key=key, endpoint=f"{method} api.example.com{path}",
                   method=method, url=url, outcome=outcome, findings=findings, message=message,
                   recorded=Response(200) if compared else None,
                   live=Response(200) if compared else None)


def report(*results, cassettes=(CASSETTE,), started_at=None, problems=()):
    started = time.time() if started_at is None else started_at
    return DriftReport(cassettes=cassettes, started_at=started, finished_at=started + 1.5,
                       results=list(results), problems=list(problems))


def iso(ts):
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@pytest.fixture
def two_runs(tmp_path):
    """Run 1: charges breaking (+noise), customers additive, refunds passed, create skipped.
    Run 2: charges the same (other noise value), customers passed, refunds breaking."""
    now = time.time()
    first = report(checked(CHARGES, Outcome.BREAKING, AMOUNT_MISSING, noise("ch_2")),
                   checked(CUSTOMERS, Outcome.CHANGED, NICKNAME_ADDED),
                   checked(REFUNDS, Outcome.PASSED),
                   checked(CREATE, Outcome.SKIPPED, message="POST not re-sent"),
                   started_at=now - 120)
    second = report(checked(CHARGES, Outcome.BREAKING, AMOUNT_MISSING, noise("ch_3")),
                    checked(CUSTOMERS, Outcome.PASSED),
                    checked(REFUNDS, Outcome.BREAKING, REFUND_TYPE),
                    checked(CREATE, Outcome.SKIPPED, message="POST not re-sent"),
                    started_at=now)
    db_path = tmp_path / "cassettes" / ".replayproxy.db"
    ids = record_run(db_path, first), record_run(db_path, second)
    return db_path, first, second, ids


def keys(items):
    return [(i.interaction, i.kind, i.location) for i in items]


# -- the database -----------------------------------------------------------------------


def test_runs_are_stored_with_their_counts(two_runs):
    db_path, first, second, ids = two_runs
    assert ids == (1, 2)
    with Database(db_path) as db:
        runs = list(db.query("SELECT * FROM runs ORDER BY id"))
    assert [r["id"] for r in runs] == [1, 2]
    one, two = runs
    assert one["started_at"] == iso(first.started_at)
    assert one["finished_at"] == iso(first.finished_at)
    assert one["started_at"].endswith("+00:00")
    assert one["cassettes"] == CASSETTE
    assert {k: one[k] for k in ("checked", "breaking", "changed", "passed", "errors",
                                "skipped", "exit_code")} == {
        "checked": 4, "breaking": 1, "changed": 1, "passed": 1, "errors": 0, "skipped": 1,
        "exit_code": 1}
    assert (two["breaking"], two["changed"], two["passed"]) == (2, 0, 1)
    assert json.loads(two["problems"]) == []


def test_results_and_findings_rows(two_runs):
    db_path, *_ = two_runs
    with Database(db_path) as db:
        results = list(db.query("SELECT * FROM results WHERE run_id = 1 ORDER BY rowid"))
        findings = list(db.query("SELECT * FROM findings WHERE run_id = 2 ORDER BY rowid"))
    assert [(r["interaction"], r["outcome"]) for r in results] == [
        (CHARGES, "breaking"), (CUSTOMERS, "changed"), (REFUNDS, "passed"),
        (CREATE, "skipped")]
    assert results[0]["endpoint"] == "GET api.example.com/v1/charges"
    assert (results[0]["method"], results[0]["url"]) == ("GET",
                                                        "https://api.example.com/v1/charges")
    assert (results[0]["status_recorded"], results[0]["status_live"]) == (200, 200)
    assert results[3]["message"] == "POST not re-sent"
    assert results[3]["status_live"] is None
    assert [(f["interaction"], f["severity"], f["kind"], f["location"]) for f in findings] == [
        (CHARGES, "breaking", "field_missing", "body $.amount"),
        (CHARGES, "noise", "value_changed", "body $.id"),
        (REFUNDS, "breaking", "type_changed", "body $.amount")]
    assert json.loads(findings[1]["live"]) == "ch_3"
    assert json.loads(findings[0]["live"]) is None
    assert findings[2]["fingerprint"] == fingerprint(CASSETTE, REFUNDS, "type_changed",
                                                     "body $.amount")


def test_known_tracks_first_and_last_seen(two_runs):
    db_path, first, second, _ = two_runs
    with Database(db_path) as db:
        known = {(k["interaction"], k["kind"]): k for k in db.query("SELECT * FROM known")}
    assert len(known) == 4
    kept = known[(CHARGES, "field_missing")]
    assert (kept["first_run"], kept["last_run"], kept["times_seen"]) == (1, 2, 2)
    assert kept["first_seen"] == iso(first.started_at)
    assert kept["last_seen"] == iso(second.started_at)
    assert kept["first_seen"] < kept["last_seen"]
    noisy = known[(CHARGES, "value_changed")]
    assert noisy["times_seen"] == 2  # values vary, the fingerprint does not
    dropped = known[(CUSTOMERS, "field_added")]
    assert (dropped["first_run"], dropped["last_run"], dropped["times_seen"]) == (1, 1, 1)
    assert dropped["last_seen"] == iso(first.started_at)
    added = known[(REFUNDS, "type_changed")]
    assert (added["first_run"], added["last_run"], added["times_seen"]) == (2, 2, 1)
    assert added["first_seen"] == added["last_seen"] == iso(second.started_at)


def test_the_fingerprint_ignores_values_and_severity():
    fp = fingerprint(CASSETTE, CHARGES, "value_changed", "body $.id")
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp == fingerprint(CASSETTE, CHARGES, "value_changed", "body $.id")
    assert fp != fingerprint(OTHER, CHARGES, "value_changed", "body $.id")
    assert fp != fingerprint(CASSETTE, CHARGES, "value_changed", "body $.idx")


def test_a_severity_change_keeps_the_finding_and_stores_the_latest(tmp_path):
    db_path = tmp_path / "h.db"
    additive = Finding(Severity.ADDITIVE, FindingKind.TYPE_CHANGED, "body $.x", "null", "number")
    breaking = Finding(Severity.BREAKING, FindingKind.TYPE_CHANGED, "body $.x", "null", "string")
    record_run(db_path, report(checked(CHARGES, Outcome.CHANGED, additive)))
    record_run(db_path, report(checked(CHARGES, Outcome.BREAKING, breaking)))
    with Database(db_path) as db:
        rows = list(db.query("SELECT severity, times_seen FROM known"))
    assert rows == [{"severity": "breaking", "times_seen": 2}]
    h = load_history(db_path)
    assert h.new == () and keys(h.ongoing) == [(CHARGES, "type_changed", "body $.x")]
    assert h.ongoing[0].severity == "breaking" and h.ongoing[0].live == "string"


def test_a_failed_write_leaves_no_half_run(tmp_path, monkeypatch):
    db_path = tmp_path / "h.db"
    record_run(db_path, report(checked(CHARGES, Outcome.BREAKING, AMOUNT_MISSING)))
    monkeypatch.setattr(history, "_UPSERT_KNOWN", "INSERT INTO nowhere VALUES (:fingerprint)")
    with pytest.raises(ConfigError, match="no such table: nowhere"):
        record_run(db_path, report(checked(REFUNDS, Outcome.BREAKING, REFUND_TYPE)))
    with Database(db_path) as db:
        assert db.table("runs").count == 1
        assert db.table("results").count == 1
        assert db.table("findings").count == 1
        assert db.table("run_cassettes").count == 1
    monkeypatch.undo()
    assert record_run(db_path, report(checked(REFUNDS, Outcome.PASSED))) == 2


def test_the_schema_is_versioned_with_migrations(tmp_path):
    db_path = tmp_path / "h.db"
    record_run(db_path, report())
    with Database(db_path) as db:
        assert {"runs", "run_cassettes", "results", "findings", "known",
                "_sqlite_migrations"} <= set(db.table_names())
        applied = list(db.query("SELECT migration_set, name FROM _sqlite_migrations"))
        indexes = {tuple(i.columns) for i in db.table("findings").indexes}
    assert applied == [{"migration_set": "replayproxy-drift-history", "name": name}
                       for name in ("_m001_initial", "_m002_interactions_numbered_from_1")]
    assert ("fingerprint", "run_id") in indexes
    record_run(db_path, report())  # an existing database is reused, not migrated again
    with Database(db_path) as db:
        assert db.table("_sqlite_migrations").count == 2


def test_a_history_of_interactions_numbered_from_0_is_renumbered_and_continues(
        tmp_path, monkeypatch):
    db_path = tmp_path / "h.db"
    before = Migrations("replayproxy-drift-history")
    before()(history._m001_initial)
    monkeypatch.setattr(history, "_MIGRATIONS", before)
    monkeypatch.setattr(history, "_SCHEMA", ["_m001_initial"])
    old = [k.replace(" #1", " #0") for k in (CHARGES, CUSTOMERS)]  # what 0.x wrote
    record_run(db_path, report(checked(old[0], Outcome.BREAKING, AMOUNT_MISSING),
                               checked(old[1], Outcome.CHANGED, NICKNAME_ADDED),
                               started_at=time.time() - 60))
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="written by an older replayproxy"):
        load_history(db_path)

    record_run(db_path, report(checked(CHARGES, Outcome.BREAKING, AMOUNT_MISSING),
                               checked(CUSTOMERS, Outcome.PASSED)))
    h = load_history(db_path)
    assert h.new == ()  # the same finding, not a new one under a new key
    assert [(i.interaction, i.first_run, i.times_seen) for i in h.ongoing] == [(CHARGES, 1, 2)]
    assert [(i.interaction, i.kind) for i in h.resolved] == [(CUSTOMERS, "field_added")]
    with Database(db_path) as db:
        keys = {r["interaction"] for t in ("results", "findings", "known")
                for r in db.table(t).rows}
        assert keys == {CHARGES, CUSTOMERS}
        assert all(r["fingerprint"] == fingerprint(r["cassette"], r["interaction"], r["kind"],
                                                   r["location"])
                   for t in ("findings", "known") for r in db.table(t).rows)


# -- new, resolved, ongoing -------------------------------------------------------------


def test_new_resolved_and_ongoing(two_runs):
    db_path, first, second, _ = two_runs
    h = load_history(db_path)
    assert (h.latest, h.previous) == (2, 1)
    assert [r.id for r in h.runs] == [2, 1]
    assert h.runs[1].cassettes == (CASSETTE,) and h.runs[1].exit_code == 1
    assert keys(h.new) == [(REFUNDS, "type_changed", "body $.amount")]
    assert keys(h.resolved) == [(CUSTOMERS, "field_added", "body $.nickname")]
    assert keys(h.ongoing) == [(CHARGES, "field_missing", "body $.amount"),
                               (CHARGES, "value_changed", "body $.id")]  # worst first
    new = h.new[0]
    assert (new.severity, new.recorded, new.live) == ("breaking", "number", "string")
    assert (new.first_run, new.last_run, new.times_seen) == (2, 2, 1)
    assert new.endpoint == "GET api.example.com/v1/refunds"
    resolved = h.resolved[0]
    assert resolved.last_seen == iso(first.started_at) and resolved.live == "string"
    noisy = h.ongoing[1]
    assert noisy.live == "ch_3"  # values of the latest occurrence
    assert (noisy.first_seen, noisy.last_seen) == (iso(first.started_at),
                                                   iso(second.started_at))


def test_the_first_run_is_all_new(tmp_path):
    db_path = tmp_path / "h.db"
    record_run(db_path, report(checked(CHARGES, Outcome.BREAKING, AMOUNT_MISSING),
                               checked(CUSTOMERS, Outcome.CHANGED, NICKNAME_ADDED)))
    h = load_history(db_path)
    assert (h.latest, h.previous) == (1, None)
    assert keys(h.new) == [(CHARGES, "field_missing", "body $.amount"),
                           (CUSTOMERS, "field_added", "body $.nickname")]
    assert h.resolved == h.ongoing == ()


def test_a_skipped_or_missing_interaction_resolves_nothing(tmp_path):
    db_path = tmp_path / "h.db"
    record_run(db_path, report(checked(CHARGES, Outcome.BREAKING, AMOUNT_MISSING),
                               checked(CUSTOMERS, Outcome.CHANGED, NICKNAME_ADDED)))
    record_run(db_path, report(checked(CHARGES, Outcome.SKIPPED, message="skipped by a route")))
    h = load_history(db_path)
    assert h.previous == 1
    assert h.new == h.resolved == h.ongoing == ()


def test_errors_are_tracked_like_findings(tmp_path):
    db_path = tmp_path / "h.db"
    refused = "connection refused by api.example.com:443"
    record_run(db_path, report(checked(CHARGES, Outcome.ERROR, message=refused),
                               checked(REFUNDS, Outcome.PASSED)))
    record_run(db_path, report(checked(CHARGES, Outcome.ERROR, message="timed out after 10s"),
                               checked(REFUNDS, Outcome.ERROR, message=refused)))
    h = load_history(db_path)
    assert keys(h.new) == [(REFUNDS, "error", "live call")]
    assert (h.new[0].severity, h.new[0].live) == ("error", refused)
    assert "error at live call: connection refused" in h.new[0].describe()
    assert keys(h.ongoing) == [(CHARGES, "error", "live call")]
    assert h.ongoing[0].live == "timed out after 10s"
    record_run(db_path, report(checked(CHARGES, Outcome.PASSED),
                               checked(REFUNDS, Outcome.BREAKING, REFUND_TYPE)))
    h = load_history(db_path)
    assert keys(h.resolved) == [(CHARGES, "error", "live call"),
                                (REFUNDS, "error", "live call")]
    assert keys(h.new) == [(REFUNDS, "type_changed", "body $.amount")]
    with Database(db_path) as db:
        assert db.table("runs").get(2)["errors"] == 2
        assert db.table("runs").get(2)["exit_code"] == 2


def test_a_finding_that_comes_back_is_new_again(tmp_path):
    db_path = tmp_path / "h.db"
    record_run(db_path, report(checked(CHARGES, Outcome.BREAKING, AMOUNT_MISSING)))
    record_run(db_path, report(checked(CHARGES, Outcome.PASSED)))
    record_run(db_path, report(checked(CHARGES, Outcome.BREAKING, AMOUNT_MISSING)))
    h = load_history(db_path)
    assert keys(h.new) == [(CHARGES, "field_missing", "body $.amount")]
    assert (h.new[0].first_run, h.new[0].times_seen) == (1, 2)
    out = io.StringIO()
    render_history(Console(file=out, width=120), h)
    assert "back: first seen in run 1" in out.getvalue()


def test_previous_is_the_last_run_of_the_same_cassettes(tmp_path):
    db_path = tmp_path / "h.db"
    record_run(db_path, report(checked(CHARGES, Outcome.BREAKING, AMOUNT_MISSING)))
    record_run(db_path, report(checked(CHARGES, Outcome.PASSED, cassette=OTHER),
                               cassettes=(OTHER,)))
    record_run(db_path, report(checked(CHARGES, Outcome.PASSED)))
    h = load_history(db_path)
    assert (h.latest, h.previous) == (3, 1)
    assert keys(h.resolved) == [(CHARGES, "field_missing", "body $.amount")]
    only = load_history(db_path, cassettes=[OTHER])
    assert (only.latest, only.previous) == (2, None)
    assert [r.id for r in only.runs] == [2]
    assert only.new == only.resolved == ()
    assert [r.id for r in load_history(db_path, runs=2).runs] == [3, 2]


def test_the_cassette_filter_scopes_the_findings(tmp_path):
    db_path = tmp_path / "h.db"
    both = (CASSETTE, OTHER)
    record_run(db_path, report(checked(CHARGES, Outcome.BREAKING, AMOUNT_MISSING),
                               checked(CHARGES, Outcome.CHANGED, NICKNAME_ADDED, cassette=OTHER),
                               cassettes=both))
    h = load_history(db_path, cassettes=[OTHER])
    assert [(i.cassette, i.kind) for i in h.new] == [(OTHER, "field_added")]
    assert h.runs[0].cassettes == both
    empty = load_history(db_path, cassettes=["cassettes/nope.rpc"])
    assert (empty.latest, empty.runs, empty.new) == (None, (), ())


# -- errors -----------------------------------------------------------------------------


def test_a_missing_database_is_a_config_error(tmp_path):
    db_path = tmp_path / "cassettes" / ".replayproxy.db"
    with pytest.raises(ConfigError) as info:
        load_history(db_path)
    message = str(info.value)
    assert message == (f"no drift history at {db_path}: run `replayproxy drift` first, "
                       f"or pass db")  # the setting, as each front end words it
    assert info.value.render(CLI_WORDS).endswith("or pass --db")
    assert not db_path.exists()


def test_a_file_that_is_not_sqlite_is_a_config_error(tmp_path):
    db_path = tmp_path / "notes.db"
    db_path.write_bytes(b"these are not the tables you are looking for\n" * 50)
    with pytest.raises(ConfigError, match="is not an SQLite database") as info:
        load_history(db_path)
    assert str(db_path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="is not an SQLite database"):
        record_run(db_path, report())
    assert db_path.read_bytes().startswith(b"these are not")


def test_another_sqlite_database_is_refused(tmp_path):
    db_path = tmp_path / "app.db"
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    conn.close()
    with pytest.raises(ConfigError, match="not a drift history") as info:
        load_history(db_path)
    assert str(db_path) in str(info.value)
    with pytest.raises(ConfigError, match="not a drift history"):
        record_run(db_path, report())
    with Database(db_path) as db:
        assert db.table_names() == ["users"]


def test_an_empty_database_has_no_history_yet(tmp_path):
    db_path = tmp_path / "empty.db"
    db_path.touch()
    with pytest.raises(ConfigError, match="holds no drift history yet"):
        load_history(db_path)


def test_a_newer_schema_is_refused(tmp_path):
    db_path = tmp_path / "h.db"
    record_run(db_path, report())
    with Database(db_path) as db:
        db.table("_sqlite_migrations").insert({"migration_set": "replayproxy-drift-history",
                                               "name": "_m999_future", "applied_at": "x"})
    with pytest.raises(ConfigError, match="newer replayproxy"):
        load_history(db_path)
    with pytest.raises(ConfigError, match="newer replayproxy"):
        record_run(db_path, report())


def test_an_unwritable_location_is_a_config_error(tmp_path):
    blocker = tmp_path / "cassettes"
    blocker.write_text("a file where the directory should be")
    db_path = blocker / ".replayproxy.db"
    with pytest.raises(ConfigError, match="cannot create the directory") as info:
        record_run(db_path, report())
    assert str(db_path) in str(info.value) and "pass db with a writable path" in str(info.value)


def test_a_directory_in_place_of_the_database_is_a_config_error(tmp_path):
    db_path = tmp_path / "history.db"
    db_path.mkdir()
    with pytest.raises(ConfigError, match="cannot write the drift history at") as info:
        record_run(db_path, report())
    assert str(db_path) in str(info.value)


# -- output -----------------------------------------------------------------------------


def test_render_history_shows_runs_and_what_is_new(two_runs):
    db_path, *_ = two_runs
    out = io.StringIO()
    render_history(Console(file=out, width=120), load_history(db_path))
    text = out.getvalue()
    assert "Drift runs" in text and CASSETTE in text
    assert "New since run 1: 1" in text
    assert "type_changed at body $.amount: recorded number, live string" in text
    assert REFUNDS in text
    assert "Resolved since run 1: 1" in text and "body $.nickname" in text
    assert "Still present: 2 (breaking 1, noise 1)" in text
    assert "/v1/refunds #1" in text and "#0" not in text  # interactions numbered from 1


def test_render_history_keeps_brackets_in_locations(tmp_path):
    db_path = tmp_path / "h.db"
    items = Finding(Severity.BREAKING, FindingKind.FIELD_MISSING, "body $.items[*].sku",
                    "string", None)
    record_run(db_path, report(checked(CHARGES, Outcome.BREAKING, items)))
    out = io.StringIO()
    render_history(Console(file=out, width=120), load_history(db_path))
    assert "body $.items[*].sku" in out.getvalue()
    assert "New in run 1 (no earlier run of these cassettes): 1" in out.getvalue()


def test_render_history_without_runs(tmp_path):
    db_path = tmp_path / "h.db"
    record_run(db_path, report())
    out = io.StringIO()
    # wide: the temporary path is long (longer still under pytest-xdist)
    render_history(Console(file=out, width=400), load_history(db_path, cassettes=[OTHER]))
    assert out.getvalue().strip() == f"No drift runs recorded for {OTHER} in {db_path}."


def test_history_json(two_runs):
    db_path, *_ = two_runs
    data = history_json(load_history(db_path))
    assert json.loads(json.dumps(data)) == data
    assert (data["format"], data["latest"], data["previous"]) == (
        "replayproxy-drift-history", 2, 1)
    assert [r["id"] for r in data["runs"]] == [2, 1]
    assert data["runs"][0]["counts"]["breaking"] == 2
    assert [(i["interaction"], i["kind"]) for i in data["new"]] == [(REFUNDS, "type_changed")]
    assert [i["kind"] for i in data["resolved"]] == ["field_added"]
    assert len(data["ongoing"]) == 2


def test_history_json_times_are_iso_8601_in_utc(two_runs):
    db_path, first, second, _ = two_runs
    data = history_json(load_history(db_path))
    z = "%Y-%m-%dT%H:%M:%SZ"
    assert data["runs"][1]["started_at"] == datetime.fromtimestamp(first.started_at,
                                                                    UTC).strftime(z)
    assert data["runs"][0]["finished_at"] == datetime.fromtimestamp(int(second.finished_at),
                                                                     UTC).strftime(z)
    times = [t for r in data["runs"] for t in (r["started_at"], r["finished_at"])]
    times += [i[k] for group in ("new", "resolved", "ongoing") for i in data[group]
              for k in ("first_seen", "last_seen")]
    assert times and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t) for t in times)
