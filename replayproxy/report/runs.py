"""Runs in SQLite (sqlite-utils), and the report read back from them.

Where: ``$REPLAYPROXY_REPORT_DB`` if set (``off`` turns recording off), else
``.replayproxy/runs.db`` in the project directory (the configuration file's, else the
current one), a directory that gets a ``.gitignore`` holding ``*``.

Tables (an sqlite-utils ``Migrations`` set, ``replayproxy-runs``):

- ``runs``: one row per session of a run: ``suite`` (one CLI run, or one pytest
  session: the unit in which flakiness is judged), ``test`` (a pytest node id, or empty),
  cassette name and path, mode, start and end, counts, ``outcome`` (``passed``/``failed``).
- ``endpoints``: per run row, per endpoint (``GET api.example.com/v1/charges/{id}``):
  requests, replayed, recorded, unmatched, faults, seconds.

Writing never fails a run: a database that cannot be written is reported as a warning by
the caller.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database, Migrations  # noqa: TID251 - this module is its room

from replayproxy.cassette.store import load_cassette
from replayproxy.decision.session import SessionSummary
from replayproxy.drift.history import open_database, prepare_directory, writing
from replayproxy.drift.plan import endpoint_of
from replayproxy.errors import CassetteError, ConfigError
from replayproxy.report import ENV

__all__ = ["RunReport", "RunRow", "read_report", "record_session"]

_MIGRATIONS = Migrations("replayproxy-runs")


@_MIGRATIONS()
def _m001_initial(db: Database) -> None:
    db.create_table("runs", {
        "id": int, "suite": str, "test": str, "cassette": str, "path": str, "mode": str,
        "started_at": str, "finished_at": str, "seconds": float, "requests": int,
        "replayed": int, "recorded": int, "unmatched": int, "faults": int, "errors": int,
        "outcome": str,
    }, pk="id", not_null=["suite", "cassette", "started_at", "outcome"])
    db.table("runs").create_index(["suite"])
    db.table("runs").create_index(["test"])
    db.table("runs").create_index(["cassette"])
    db.create_table("endpoints", {
        "run_id": int, "cassette": str, "endpoint": str, "requests": int, "replayed": int,
        "recorded": int, "unmatched": int, "faults": int, "seconds": float,
    }, pk=("run_id", "endpoint"), foreign_keys=[("run_id", "runs", "id")])
    db.table("endpoints").create_index(["cassette", "endpoint"])


def _now(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def _problem(path: Path, exc: sqlite3.Error, action: str) -> ConfigError:
    text = str(exc)
    if "not a database" in text:
        return ConfigError(f"{path} is not an SQLite database, so not a runs database: set "
                           f"{ENV} to another path, or remove the file")
    return ConfigError(f"cannot {action} the runs database {path}: {text}; set {ENV} to a "
                       f"{'writable' if action == 'write' else 'readable'} path (or off)")


def _check(db: Database, path: Path) -> None:
    applied = [m.name for m in _MIGRATIONS.applied(db)]
    if not applied and db.table_names():
        raise ConfigError(f"{path} is an SQLite database but not a runs database: set {ENV} "
                          "to another path")
    unknown = [n for n in applied if n != "_m001_initial"]
    if unknown:
        raise ConfigError(f"the runs database {path} was written by a newer replayproxy: "
                          f"upgrade replayproxy, or set {ENV} to another path")


def record_session(db_path: Path, summary: SessionSummary, *, suite: str, started: float,
                   finished: float, test: str = "", outcome: str | None = None) -> int:
    """Store one session of a run (its summary and per-endpoint tally); its row id.

    ``outcome``: ``passed``/``failed`` as the caller judged it (a pytest test's outcome);
    by default, failed when requests were unmatched or could not be answered.

    Raises:
        ConfigError: the database cannot be written (one line naming it and the fix).
    """
    endpoints = summary.tally.endpoints(endpoint_of)
    faults = sum(e.faults for e in endpoints.values())
    if outcome is None:
        outcome = "failed" if summary.unmatched or summary.errors else "passed"
    row = {
        "suite": suite, "test": test, "cassette": summary.cassette,
        "path": str(summary.path), "mode": summary.mode.value,
        "started_at": _now(started), "finished_at": _now(finished),
        "seconds": round(max(0.0, finished - started), 6), "requests": summary.requests,
        "replayed": summary.replayed, "recorded": summary.recorded,
        "unmatched": summary.unmatched.total, "faults": faults,
        "errors": summary.errors.total, "outcome": outcome,
    }
    try:
        prepare_directory(db_path)
        with writing(db_path) as db:
            _check(db, db_path)
            _MIGRATIONS.apply(db)
            run_id = db.table("runs").insert(row).last_pk
            assert isinstance(run_id, int)
            db.table("endpoints").insert_all(
                {"run_id": run_id, "cassette": summary.cassette, "endpoint": name,
                 "requests": e.requests, "replayed": e.replayed, "recorded": e.recorded,
                 "unmatched": e.unmatched, "faults": e.faults, "seconds": round(e.seconds, 6)}
                for name, e in endpoints.items())
            return run_id
    except sqlite3.Error as exc:
        raise _problem(db_path, exc, "write") from None


# -- reading --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunRow:
    """One test (or one run without tests) over the suites looked at."""

    test: str
    cassette: str
    runs: int
    mean_seconds: float
    outcomes: tuple[str, ...]
    """Per suite, oldest first: ``passed``/``failed`` and the unmatched count."""


@dataclass
class RunReport:
    """What ``replayproxy report`` shows."""

    suites: int
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per cassette: each recorded endpoint and how many requests the suites sent it (0:
    never exercised)."""
    unreadable: dict[str, str] = field(default_factory=dict)
    """Cassettes whose coverage could not be read, and why."""
    slowest: list[RunRow] = field(default_factory=list)
    flaky: list[RunRow] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def read_report(db_path: Path, *, suites: int = 10, cassette: str | None = None,
                top: int = 10) -> RunReport:
    """The report over the last ``suites`` suites (of ``cassette`` only, if given).

    Raises:
        ConfigError: no runs database there, or it cannot be read.
    """
    if not db_path.is_file():
        raise ConfigError(f"no runs recorded yet: {db_path} does not exist (runs are recorded "
                          f"by record, replay, serve and the pytest plugin; {ENV} names "
                          "another database)")
    try:
        with open_database(db_path, readonly=True) as db:
            _check(db, db_path)
            if "runs" not in db.table_names():
                return RunReport(0)
            return _report(db, suites, cassette, top)
    except sqlite3.Error as exc:
        raise _problem(db_path, exc, "read") from None


def _report(db: Database, suites: int, cassette: str | None, top: int) -> RunReport:
    where, args = ("WHERE cassette = ?", [cassette]) if cassette else ("", [])
    recent = [r[0] for r in db.execute(
        f"SELECT suite FROM runs {where} GROUP BY suite ORDER BY MAX(id) DESC LIMIT ?",
        [*args, suites]).fetchall()]
    report = RunReport(len(recent))
    if not recent:
        return report
    marks = ",".join("?" * len(recent))
    rows = list(db.query(f"SELECT * FROM runs WHERE suite IN ({marks}) "
                         f"{'AND cassette = ?' if cassette else ''} ORDER BY id",
                         [*recent, *args]))
    # coverage: each cassette's recorded endpoints, and what the suites sent them
    used: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in db.query(f"SELECT e.cassette, e.endpoint, e.requests FROM endpoints e JOIN runs r "
                      f"ON r.id = e.run_id WHERE r.suite IN ({marks})", recent):
        used[e["cassette"]][e["endpoint"]] += e["requests"]
    paths = {r["cassette"]: r["path"] for r in rows}
    for name, path in sorted(paths.items()):
        try:
            recorded = {endpoint_of(it.request) for it in load_cassette(path).interactions()}
        except CassetteError as e:
            report.unreadable[name] = str(e)
            continue
        report.coverage[name] = {ep: used[name].get(ep, 0) for ep in sorted(recorded)}
    # tests: per (test, cassette), their outcome in each suite
    by_test: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_test[(r["test"], r["cassette"])].append(r)
    summary = [RunRow(test, name, len(rs), sum(r["seconds"] for r in rs) / len(rs),
                      tuple(f"{r['outcome']}:{r['unmatched']}" for r in rs))
               for (test, name), rs in by_test.items()]
    report.slowest = sorted(summary, key=lambda r: -r.mean_seconds)[:top]
    report.flaky = [r for r in summary if len(set(r.outcomes)) > 1]
    return report
