"""Drift history: every drift run stored in an SQLite database, and what changed since.

``record_run(db_path, report)`` stores a ``DriftReport`` (default database
``.replayproxy/history.db`` in the project directory, see ``default_database``) in one
transaction, so a crash never leaves half a run;
``load_history`` reads it back as a ``History``: the recent runs, and the findings of
the latest run split into *new*, *resolved* and *ongoing* against the previous run
that checked the same cassettes (``replayproxy.drift.report.history`` shows it to people
and tools). Tables (created by an sqlite-utils ``Migrations`` set,
recorded in ``_sqlite_migrations``, so later versions can change the schema in place):

- ``runs``: one row per run: times (ISO 8601 UTC), cassettes, counts per outcome,
  problems (JSON), exit code. ``run_cassettes``: (run_id, cassette), for exact lookups.
- ``results``: one row per interaction checked: its stable key (``interaction``),
  endpoint, outcome, message, recorded and live status.
- ``findings``: one row per finding per run, values as JSON, and a ``fingerprint``.
- ``known``: one row per distinct finding ever seen, keyed by fingerprint: the latest
  severity, first and last seen (time and run), how many runs saw it.

A fingerprint is the first 16 hex digits of the SHA-256 of cassette, interaction key,
kind and location: not the values (ids, sizes vary) nor the severity (volatility can
move a finding between severities), so a finding keeps its identity across runs.

An interaction that could not be checked (outcome ``error``) is stored as a finding of
severity and kind ``error`` at location ``live call``, the message as its live value,
so a failing call is new, ongoing or resolved like any other finding.

Whether a finding is gone needs a run that looked: a finding of the previous run is
*resolved* only if the latest run compared that interaction (for an error: sent it at
all) and did not find it. A latest finding is *new* when first seen in that run, or
when the previous run looked at its interaction and did not have it (it came back);
the others are *ongoing*.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database, Migrations  # noqa: TID251 - this module is its room

from replayproxy.drift.findings import Finding, FindingKind, Scalar, Severity
from replayproxy.drift.plan import Checked, DriftReport, Outcome
from replayproxy.errors import ConfigError

__all__ = [
    "DEFAULT_DATABASE",
    "ERROR",
    "OLD_DEFAULT_DATABASE",
    "History",
    "HistoryItem",
    "SEVERITY_RANK",
    "RunSummary",
    "default_database",
    "fingerprint",
    "load_history",
    "open_database",
    "prepare_directory",
    "writing",
    "record_run",
]

DEFAULT_DATABASE = Path(".replayproxy", "history.db")
"""The database, relative to the project directory (the configuration file's, else the
current one): outside the cassette directory, which is usually committed, in a
directory that ignores itself in git."""
OLD_DEFAULT_DATABASE = ".replayproxy.db"
"""Where the database was by default before: in the cassette directory."""

ERROR = "error"
"""Severity and kind of the pseudo-finding stored for an interaction that errored."""
_ERROR_LOCATION = "live call"

SEVERITY_RANK = {ERROR: 0, **{s.value: i + 1 for i, s in enumerate(Severity)}}
"""Worst first: an error (nothing checked) before breaking, additive, noise."""
_COMPARED = frozenset({Outcome.BREAKING, Outcome.CHANGED, Outcome.PASSED})
"""Outcomes of interactions whose responses were compared."""

_MIGRATIONS = Migrations("replayproxy-drift-history")
_SCHEMA: list[str] = []
"""Names of the migrations this version knows, oldest first."""


def _migration(fn: Callable[[Database], None]) -> Callable[[Database], None]:
    _SCHEMA.append(fn.__name__)
    return _MIGRATIONS()(fn)


@_migration
def _m001_initial(db: Database) -> None:
    db.create_table("runs", {
        "id": int, "started_at": str, "finished_at": str, "cassettes": str,
        "checked": int, "breaking": int, "changed": int, "passed": int, "errors": int,
        "skipped": int, "problems": str, "exit_code": int,
    }, pk="id", not_null=["started_at", "cassettes", "exit_code"])
    db.create_table("run_cassettes", {"run_id": int, "cassette": str},
                    pk=("run_id", "cassette"), foreign_keys=[("run_id", "runs", "id")])
    db.table("run_cassettes").create_index(["cassette", "run_id"])
    db.create_table("results", {
        "run_id": int, "cassette": str, "interaction": str, "endpoint": str, "method": str,
        "url": str, "outcome": str, "message": str, "status_recorded": int, "status_live": int,
    }, not_null=["run_id", "cassette", "interaction", "outcome"],
        foreign_keys=[("run_id", "runs", "id")])
    db.table("results").create_index(["run_id", "cassette", "interaction"])
    db.table("results").create_index(["cassette", "interaction"])
    db.create_table("findings", {
        "run_id": int, "cassette": str, "interaction": str, "endpoint": str, "severity": str,
        "kind": str, "location": str, "recorded": str, "live": str, "fingerprint": str,
    }, not_null=["run_id", "cassette", "interaction", "severity", "kind", "location",
                 "fingerprint"], foreign_keys=[("run_id", "runs", "id")])
    db.table("findings").create_index(["run_id", "fingerprint"])
    db.table("findings").create_index(["fingerprint", "run_id"])
    db.create_table("known", {
        "fingerprint": str, "cassette": str, "interaction": str, "endpoint": str,
        "severity": str, "kind": str, "location": str, "first_seen": str, "last_seen": str,
        "first_run": int, "last_run": int, "times_seen": int,
    }, pk="fingerprint", not_null=["cassette", "interaction", "severity", "kind", "location",
                                   "first_seen", "last_seen", "first_run", "last_run",
                                   "times_seen"])
    db.table("known").create_index(["cassette", "interaction"])
    db.table("known").create_index(["first_run"])
    db.table("known").create_index(["last_run"])


_OCCURRENCE = re.compile(r"(.* #)(\d+)")


def _numbered_from_1(key: str) -> str:
    """``GET https://host/x #0`` (an interaction key before numbering from 1) plus one."""
    m = _OCCURRENCE.fullmatch(key)
    return f"{m[1]}{int(m[2]) + 1}" if m else key


@_migration
def _m002_interactions_numbered_from_1(db: Database) -> None:
    """Interaction keys number repeated requests from 1 (``GET url #1``), as the reports
    do: renumber the stored keys and the fingerprints made of them."""
    for table in ("results", "findings", "known"):
        rows = list(db.table(table).rows)
        for row in rows:
            row["interaction"] = _numbered_from_1(row["interaction"])
            if "fingerprint" in row:
                row["fingerprint"] = fingerprint(row["cassette"], row["interaction"],
                                                 row["kind"], row["location"])
        db.execute(f"DELETE FROM [{table}]")
        db.table(table).insert_all(rows)


# -- model ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One stored drift run."""

    id: int
    started_at: str
    finished_at: str | None
    cassettes: tuple[str, ...]
    checked: int
    """Interactions in the run, whatever their outcome."""
    breaking: int
    changed: int
    passed: int
    errors: int
    skipped: int
    problems: tuple[str, ...]
    exit_code: int


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """A finding across runs; values from its occurrence in the run it is shown for."""

    fingerprint: str
    severity: str
    """A ``Severity`` value, or ``error``."""
    kind: str
    """A ``FindingKind`` value, or ``error``."""
    location: str
    cassette: str
    interaction: str
    endpoint: str
    recorded: Scalar
    live: Scalar
    """For an error, its message."""
    first_seen: str
    last_seen: str
    first_run: int
    last_run: int
    times_seen: int
    """How many runs had it."""

    def describe(self) -> str:
        """``field_missing at body $.amount: recorded number, live (absent)``"""
        if self.kind == ERROR:
            return f"error at {self.location}: {self.live}"
        try:
            finding = Finding(Severity(self.severity), FindingKind(self.kind), self.location,
                              self.recorded, self.live)
        except ValueError:  # written by a newer replayproxy
            return f"{self.kind} at {self.location}: recorded {self.recorded}, live {self.live}"
        return finding.describe().split(" ", 1)[1]


@dataclass(frozen=True, slots=True)
class History:
    """What ``replayproxy drift history`` shows."""

    database: Path
    cassettes: tuple[str, ...]
    """The cassettes asked about; empty: all."""
    runs: tuple[RunSummary, ...]
    """Recent runs, newest first."""
    latest: int | None
    previous: int | None
    """The most recent earlier run that checked one of the latest run's cassettes."""
    new: tuple[HistoryItem, ...]
    """In the latest run, and first seen there or back since the previous run."""
    resolved: tuple[HistoryItem, ...]
    """In the previous run, looked for in the latest one and not found."""
    ongoing: tuple[HistoryItem, ...]
    """In the latest run and seen before."""


def fingerprint(cassette: str, interaction: str, kind: str, location: str) -> str:
    """The identity of a finding across runs: 16 hex digits."""
    text = "\x1f".join((cassette, interaction, kind, location))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _iso(timestamp: float) -> str:
    """A time as stored: ``2026-12-06T11:19:53+00:00``."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _order(item: HistoryItem) -> tuple[int, str, str, str, str]:
    return (SEVERITY_RANK.get(item.severity, len(SEVERITY_RANK)), item.cassette, item.interaction,
            item.location, item.kind)


# -- where ------------------------------------------------------------------------------


def default_database(project: Path, cassette_dir: Path) -> tuple[Path, str | None]:
    """The history database when neither ``--db`` nor ``database`` says, and a warning.

    ``PROJECT/.replayproxy/history.db``; but a history at the old default
    (``CASSETTE_DIR/.replayproxy.db``), when there is none at the new place yet, is kept
    in use (never lose history silently), with a one-line warning to move it; when both
    exist, the new one is used and the warning names the old one.
    """
    new = project / DEFAULT_DATABASE
    old = cassette_dir / OLD_DEFAULT_DATABASE
    if not old.is_file():
        return new, None
    if not new.exists():
        return old, (f"the drift history is at {old}, inside the cassette directory, which "
                     f"is usually committed: move it to {new} (git-ignored), or keep it "
                     f"where it is with --db or database = \"...\" in the configuration")
    return new, (f"an older drift history at {old} is not used ({new} is): look at it with "
                 f"replayproxy drift history --db {old}, then delete it (it is inside the "
                 f"cassette directory, which is usually committed)")


_GITIGNORE = "# written by replayproxy: nothing here belongs in git\n*\n"


def prepare_directory(db_path: Path) -> None:
    """Create the directory of ``db_path``; a ``.replayproxy`` directory made here gets
    a ``.gitignore`` holding ``*``, so the history (and the directory) stay out of git.

    Raises ``ConfigError`` when it cannot be created.
    """
    directory = db_path.parent
    made = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if made and directory.name == DEFAULT_DATABASE.parent.name:
            (directory / ".gitignore").write_text(_GITIGNORE, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot create the directory of the drift history {db_path}: "
                          f"{exc.strerror or exc}; pass {{db}} with a writable path") from None


# -- opening ----------------------------------------------------------------------------


def _sqlite_problem(path: Path, exc: sqlite3.Error, action: str) -> ConfigError:
    text = str(exc)
    if "not a database" in text:
        return ConfigError(f"{path} is not an SQLite database, so not a drift history: "
                           f"pass {{db}} with another path, or remove the file")
    if "locked" in text or "busy" in text:
        return ConfigError(f"the drift history at {path} is locked by another process: "
                           f"try again when it has finished")
    return ConfigError(f"cannot {action} the drift history at {path}: {text}; "
                       f"pass {{db}} with a {'writable' if action == 'write' else 'readable'} "
                       f"path")


def _check_schema(db: Database, path: Path) -> bool:
    """True when ``db`` holds a drift history; raises if it is something else.

    An empty database is not a history yet (False); one with other tables, or
    migrations this version does not know, is refused.
    """
    applied = [m.name for m in _MIGRATIONS.applied(db)]
    if not applied:
        if db.table_names():
            raise ConfigError(f"{path} is an SQLite database but not a drift history: "
                              f"pass {{db}} with another path")
        return False
    unknown = [name for name in applied if name not in _SCHEMA]
    if unknown:
        raise ConfigError(f"the drift history at {path} was written by a newer replayproxy "
                          f"(schema {unknown[-1]}): upgrade replayproxy, or pass {{db}}")
    return True


@contextmanager
def open_database(path: Path, *, readonly: bool) -> Iterator[Database]:
    """An SQLite database (read-only: opened so, never created), closed on leaving."""
    if readonly:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    else:
        conn = sqlite3.connect(path, timeout=10)
    try:
        db = Database(conn)
    except BaseException:
        conn.close()
        raise
    with db:
        yield db


@contextmanager
def writing(path: Path) -> Iterator[Database]:
    """An SQLite database opened for one write transaction, committed on leaving (rolled
    back on an error). The transaction takes the write lock at once (``BEGIN
    IMMEDIATE``), waiting for another writer as long as the connection's timeout: one that
    read first and wrote second would instead fail at once with "database is locked" when
    another writer came in between (SQLite does not wait there, to avoid a deadlock), as
    two pytest-xdist workers writing their runs at the same moment do."""
    with open_database(path, readonly=False) as db:
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.conn.rollback()
            raise
        db.conn.commit()


# -- recording --------------------------------------------------------------------------


def record_run(db_path: Path, report: DriftReport) -> int:
    """Store ``report`` as a new run in ``db_path`` (created if needed); its run id.

    The whole run, with the ``known`` findings it updates, is one transaction.
    """
    prepare_directory(db_path)
    try:
        with writing(db_path) as db:
            _check_schema(db, db_path)
            _MIGRATIONS.apply(db)
            return _insert_run(db, report)
    except sqlite3.Error as exc:
        raise _sqlite_problem(db_path, exc, "write") from None


def _rows(result: Checked, run_id: int) -> Iterator[dict[str, Any]]:
    """The ``findings`` rows of one result, with an error as a pseudo-finding."""
    base = {"run_id": run_id, "cassette": result.cassette, "interaction": result.key,
            "endpoint": result.endpoint}
    if result.outcome is Outcome.ERROR:
        yield {**base, "severity": ERROR, "kind": ERROR, "location": _ERROR_LOCATION,
               "recorded": json.dumps(None), "live": json.dumps(result.message or None),
               "fingerprint": fingerprint(result.cassette, result.key, ERROR,
                                          _ERROR_LOCATION)}
    for f in result.findings:
        yield {**base, "severity": f.severity.value, "kind": f.kind.value,
               "location": f.location, "recorded": json.dumps(f.recorded, ensure_ascii=False),
               "live": json.dumps(f.live, ensure_ascii=False),
               "fingerprint": fingerprint(result.cassette, result.key, f.kind.value,
                                          f.location)}


_UPSERT_KNOWN = """
INSERT INTO known (fingerprint, cassette, interaction, endpoint, severity, kind, location,
                   first_seen, last_seen, first_run, last_run, times_seen)
VALUES (:fingerprint, :cassette, :interaction, :endpoint, :severity, :kind, :location,
        :seen, :seen, :run_id, :run_id, 1)
ON CONFLICT (fingerprint) DO UPDATE SET
    endpoint = excluded.endpoint, severity = excluded.severity,
    last_seen = excluded.last_seen, last_run = excluded.last_run,
    times_seen = known.times_seen + 1
"""


def _insert_run(db: Database, report: DriftReport) -> int:
    counts = report.counts()
    cassettes = tuple(dict.fromkeys([*report.cassettes,
                                     *(r.cassette for r in report.results)]))
    seen = _iso(report.started_at)
    runs = db.table("runs").insert({
        "started_at": seen,
        "finished_at": _iso(report.finished_at) if report.finished_at > 0 else None,
        "cassettes": ",".join(cassettes),
        "checked": len(report.results), "breaking": counts[Outcome.BREAKING],
        "changed": counts[Outcome.CHANGED], "passed": counts[Outcome.PASSED],
        "errors": counts[Outcome.ERROR], "skipped": counts[Outcome.SKIPPED],
        "problems": json.dumps(list(report.problems), ensure_ascii=False),
        "exit_code": report.exit_code(),
    })
    run_id = runs.last_pk
    assert isinstance(run_id, int)
    db.table("run_cassettes").insert_all(
        {"run_id": run_id, "cassette": c} for c in cassettes)
    db.table("results").insert_all({
        "run_id": run_id, "cassette": r.cassette, "interaction": r.key,
        "endpoint": r.endpoint, "method": r.method, "url": r.url, "outcome": r.outcome.value,
        "message": r.message, "status_recorded": r.recorded.status if r.recorded else None,
        "status_live": r.live.status if r.live else None,
    } for r in report.results)
    rows = [row for r in report.results for row in _rows(r, run_id)]
    db.table("findings").insert_all(rows)
    distinct = {row["fingerprint"]: row for row in rows}.values()
    db.conn.executemany(_UPSERT_KNOWN, [{**row, "seen": seen} for row in distinct])
    return run_id


# -- loading ----------------------------------------------------------------------------


def load_history(db_path: Path, *, runs: int = 10,
                 cassettes: Sequence[str] | None = None) -> History:
    """The last ``runs`` runs (of ``cassettes`` if given) and what the latest one changed.

    Raises ``ConfigError`` when ``db_path`` is missing or not a drift history.
    """
    if not db_path.is_file():
        raise ConfigError(f"no drift history at {db_path}: run `replayproxy drift` first, "
                          f"or pass {{db}}")
    wanted = tuple(dict.fromkeys(cassettes or ()))
    try:
        with open_database(db_path, readonly=True) as db:
            if not _check_schema(db, db_path):
                raise ConfigError(f"{db_path} holds no drift history yet: run "
                                  f"`replayproxy drift` first, or pass {{db}}")
            if _MIGRATIONS.pending(db):
                raise ConfigError(f"the drift history at {db_path} was written by an older "
                                  f"replayproxy: run `replayproxy drift` once to upgrade it")
            return _load(db, db_path, max(runs, 1), wanted)
    except sqlite3.Error as exc:
        raise _sqlite_problem(db_path, exc, "read") from None


def _placeholders(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def _run_ids(db: Database, cassettes: Sequence[str], *, below: int | None = None,
             limit: int) -> list[int]:
    """Run ids, newest first, of runs that checked one of ``cassettes`` (any if empty)."""
    where: list[str] = []
    params: list[object] = []
    if cassettes:
        where.append(f"id IN (SELECT run_id FROM run_cassettes WHERE cassette IN "
                     f"({_placeholders(cassettes)}))")
        params += cassettes
    if below is not None:
        where.append("id < ?")
        params.append(below)
    sql = (f"SELECT id FROM runs {'WHERE ' + ' AND '.join(where) if where else ''} "
           f"ORDER BY id DESC LIMIT ?")
    return [row["id"] for row in db.query(sql, [*params, limit])]


def _summary(row: Mapping[str, Any], cassettes: Sequence[str]) -> RunSummary:
    return RunSummary(
        id=row["id"], started_at=row["started_at"], finished_at=row["finished_at"],
        cassettes=tuple(cassettes), checked=row["checked"] or 0, breaking=row["breaking"] or 0,
        changed=row["changed"] or 0, passed=row["passed"] or 0, errors=row["errors"] or 0,
        skipped=row["skipped"] or 0, problems=tuple(json.loads(row["problems"] or "[]")),
        exit_code=row["exit_code"])


def _cassettes_of(db: Database, run_id: int) -> list[str]:
    return [row["cassette"] for row in db.query(
        "SELECT cassette FROM run_cassettes WHERE run_id = ? ORDER BY rowid", [run_id])]


def _outcomes(db: Database, run_id: int) -> dict[tuple[str, str], str]:
    return {(row["cassette"], row["interaction"]): row["outcome"] for row in db.query(
        "SELECT cassette, interaction, outcome FROM results WHERE run_id = ?", [run_id])}


def _items(db: Database, run_id: int, cassettes: Sequence[str]) -> dict[str, HistoryItem]:
    sql = ("SELECT f.*, k.first_seen, k.last_seen, k.first_run, k.last_run, k.times_seen "
           "FROM findings f JOIN known k ON k.fingerprint = f.fingerprint WHERE f.run_id = ?")
    params: list[object] = [run_id]
    if cassettes:
        sql += f" AND f.cassette IN ({_placeholders(cassettes)})"
        params += cassettes
    return {row["fingerprint"]: HistoryItem(
        fingerprint=row["fingerprint"], severity=row["severity"], kind=row["kind"],
        location=row["location"], cassette=row["cassette"], interaction=row["interaction"],
        endpoint=row["endpoint"] or "", recorded=_scalar(row["recorded"]),
        live=_scalar(row["live"]), first_seen=row["first_seen"], last_seen=row["last_seen"],
        first_run=row["first_run"], last_run=row["last_run"], times_seen=row["times_seen"],
    ) for row in db.query(sql, params)}


def _scalar(text: str | None) -> Scalar:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if value is None or isinstance(value, str | int | float | bool) else text


def _looked(outcome: str | None, kind: str) -> bool:
    """Whether an interaction with ``outcome`` says anything about a finding of ``kind``."""
    if outcome is None:
        return False
    if kind == ERROR:
        return outcome != Outcome.SKIPPED
    return outcome in _COMPARED


def _load(db: Database, path: Path, limit: int, wanted: tuple[str, ...]) -> History:
    ids = _run_ids(db, wanted, limit=limit)
    if not ids:
        return History(path, wanted, (), None, None, (), (), ())
    rows = {row["id"]: row for row in db.query(
        f"SELECT * FROM runs WHERE id IN ({_placeholders(ids)})", ids)}
    summaries = tuple(_summary(rows[i], _cassettes_of(db, i)) for i in ids)
    latest = ids[0]
    scope = [c for c in summaries[0].cassettes if not wanted or c in wanted]
    before = _run_ids(db, scope, below=latest, limit=1) if scope else []
    previous = before[0] if before else None

    now = _items(db, latest, scope)
    then = _items(db, previous, scope) if previous is not None else {}
    now_outcomes = _outcomes(db, latest)
    then_outcomes = _outcomes(db, previous) if previous is not None else {}

    def came_back(item: HistoryItem) -> bool:
        looked = _looked(then_outcomes.get((item.cassette, item.interaction)), item.kind)
        return looked and item.fingerprint not in then

    new = {fp: i for fp, i in now.items() if i.first_run == latest or came_back(i)}
    ongoing = [i for fp, i in now.items() if fp not in new]
    resolved = [i for fp, i in then.items() if fp not in now and _looked(
        now_outcomes.get((i.cassette, i.interaction)), i.kind)]
    return History(path, wanted, summaries, latest, previous, _sorted(new.values()),
                   _sorted(resolved), _sorted(ongoing))


def _sorted(items: Iterable[HistoryItem]) -> tuple[HistoryItem, ...]:
    return tuple(sorted(items, key=_order))
