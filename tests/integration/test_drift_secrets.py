"""No live secret in any output of the drift check (#16).

A hostile live API (``hostile_api``) answers with fresh secrets in every place #16 lists
and echoes the credentials the check puts in. It is recorded through the real proxy
with curl, then checked with `replayproxy drift` as a subprocess writing every report;
the terminal output, each report, the history database and `drift history` are searched
for every secret, raw and percent-, HTML-, JSON- and base64-decoded: none is there. So is
the output of `cassette show` and `cassette ls`, which also holds no terminal escape
sequence the API sent.
Findings show placeholders on both sides, and classification still works.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import html
import json
import logging
import re
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import pytest

from replayproxy.cassette.store import cassette_path, load_cassette
from replayproxy.drift import live
from replayproxy.drift import report as drift_report
from replayproxy.drift.live import Job, check
from replayproxy.drift.plan import DriftConfig, DriftReport, Outcome
from replayproxy.model import Interaction, Request, Response
from replayproxy.redaction.redactor import Redactor
from replayproxy.redaction.secrets import PLACEHOLDER
from tests.conftest import UpstreamCA
from tests.integration.hostile_api import TERMINAL_ATTACK, HostileApi
from tests.integration.support import base_env, cli

pytestmark = pytest.mark.slow

AUTH = "LiveBearerCredential9f8e7d6c5b4a"
"""The credential the check puts into Authorization (what $AUTH_KEY holds)."""
QUERY_KEY = "LiveQueryKey+/=&x1y2z3w4v5u6"
"""The credential the check puts into the query (special characters on purpose)."""
REDACTION_KEY = "drift-secrets-test-key"


@pytest.fixture(scope="module")
def api(upstream_ca: UpstreamCA) -> Iterator[HostileApi]:
    server = HostileApi(upstream_ca.server_context)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def recorded(api: HostileApi, upstream_ca: UpstreamCA, proxy_ca_dir: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cassette `hostile`: one GET with a bearer token and a key in the query."""
    home = tmp_path_factory.mktemp("home")
    cdir = tmp_path_factory.mktemp("recorded") / "cassettes"
    env = base_env(REPLAYPROXY_CA_DIR=str(proxy_ca_dir), REPLAYPROXY_HOME=str(home),
                   REPLAYPROXY_REDACTION_KEY=REDACTION_KEY)
    url = api.url(f"/v1/session?api_key={quote_plus(QUERY_KEY)}")
    script = f"curl -sS --fail-with-body --max-time 20 -H 'Authorization: Bearer {AUTH}' '{url}'"
    proc = cli("record", "-c", "hostile", "--cassette-dir", cdir, "--upstream-ca",
               upstream_ca.pem, "--", "sh", "-c", script, env=env)
    assert proc.returncode == 0, proc.stderr
    assert len(load_cassette(cassette_path(cdir, "hostile"))) == 1
    raw = cassette_path(cdir, "hostile").read_bytes()
    for secret in (AUTH, QUERY_KEY, quote_plus(QUERY_KEY), *api.issued):
        assert secret.encode() not in raw, f"{secret} reached the cassette"
    return cdir


def _views(text: str) -> list[str]:
    """``text`` as written and decoded every way a secret could hide in it."""
    views = [text, unquote(text), unquote_plus(text), html.unescape(text),
             unquote(html.unescape(text))]
    with_json = []
    for view in views:
        with contextlib.suppress(ValueError):  # JSON string escapes (\u0041, \/) undone
            with_json.append(json.loads(json.dumps(view).replace("\\\\", "\\")))
    views += with_json
    for chunk in set(re.findall(r"[A-Za-z0-9+/_=-]{16,}", text)):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            with contextlib.suppress(binascii.Error, ValueError):
                views.append(decode(chunk + "=" * (-len(chunk) % 4)).decode("utf-8", "replace"))
    return views


def _leaks(name: str, data: bytes | str, secrets: list[str]) -> list[str]:
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    views = _views(text)
    found = []
    for secret in secrets:
        forms = {secret, quote(secret, safe=""), quote_plus(secret), html.escape(secret),
                 json.dumps(secret)[1:-1]}
        if any(form in view for form in forms for view in views):
            found.append(f"{name}: {secret}")
    return found


def _database_texts(db: Path) -> list[tuple[str, bytes | str]]:
    """The database file and its neighbours (journal, WAL) as bytes, and every cell."""
    out: list[tuple[str, bytes | str]] = [(p.name, p.read_bytes())
                                          for p in db.parent.glob(db.name + "*")]
    with sqlite3.connect(db) as conn:
        out.append(("database dump", "\n".join(conn.iterdump())))
    return out


def _drift(cdir: Path, tmp_path: Path, upstream_ca: UpstreamCA, proxy_ca_dir: Path,
           *flags: Any) -> Any:
    env = base_env(REPLAYPROXY_CA_DIR=str(proxy_ca_dir),
                   REPLAYPROXY_HOME=str(tmp_path / "home"),
                   REPLAYPROXY_REDACTION_KEY=REDACTION_KEY, AUTH_KEY=AUTH,
                   QUERY_KEY=QUERY_KEY)
    return cli("drift", "-c", "hostile", "--cassette-dir", cdir, "--upstream-ca",
               upstream_ca.pem, "--credential", "authorization=AUTH_KEY",
               "--credential", "api_key=QUERY_KEY", *map(str, flags), env=env, cwd=tmp_path)


def _reports(tmp_path: Path, run: int) -> list[str]:
    return ["-v", "--json", tmp_path / f"r{run}.json", "--junit", tmp_path / f"r{run}.xml",
            "--markdown", tmp_path / f"r{run}.md", "--html", tmp_path / f"r{run}.html"]


def _value_findings(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    [result] = report["results"]
    return {f["location"]: f for f in result["findings"]}


def test_no_live_secret_in_any_output(api, recorded, tmp_path, upstream_ca, proxy_ca_dir):
    cdir = recorded
    first = _drift(cdir, tmp_path, upstream_ca, proxy_ca_dir, *_reports(tmp_path, 1))
    assert first.returncode == 0, first.stdout + first.stderr
    api.drop = {"clientSecret"}
    try:
        second = _drift(cdir, tmp_path, upstream_ca, proxy_ca_dir, *_reports(tmp_path, 2))
    finally:
        api.drop = set()
    assert second.returncode == 1, second.stdout + second.stderr
    env = base_env(REPLAYPROXY_HOME=str(tmp_path / "home"))
    history = [cli("drift", "history", env=env, cwd=tmp_path),
               cli("drift", "history", "--json", env=env, cwd=tmp_path)]
    assert all(h.returncode == 0 for h in history), history[0].stderr

    # nothing anywhere holds a live secret
    secrets = [AUTH, QUERY_KEY, *api.issued]
    assert len(secrets) > 20
    outputs: list[tuple[str, bytes | str]] = []
    for run, proc in ((1, first), (2, second)):
        outputs += [(f"run {run} stdout", proc.stdout), (f"run {run} stderr", proc.stderr)]
        outputs += [(p.name, p.read_bytes()) for p in sorted(tmp_path.glob(f"r{run}.*"))]
    outputs += [("history", history[0].stdout), ("history --json", history[1].stdout)]
    db = tmp_path / ".replayproxy" / "history.db"
    outputs += _database_texts(db)
    assert {name for name, _ in outputs} >= {"r1.json", "r1.xml", "r1.md", "r1.html",
                                             "history.db", "database dump"}
    ET.fromstring((tmp_path / "r2.xml").read_bytes())  # still valid XML
    leaks = [leak for name, data in outputs for leak in _leaks(name, data, secrets)]
    assert not leaks, "\n".join(leaks)
    page = (tmp_path / "r1.html").read_text()
    assert "&lt;redacted:access_token:" in page  # the live body is shown, redacted
    # and the classification still works, on placeholders
    report = json.loads((tmp_path / "r1.json").read_text())
    assert report["counts"]["passed"] == 1
    findings = _value_findings(report)
    for location in ("body $.access_token", "body $.accessToken", "body $.clientSecret"):
        f = findings[location]
        assert (f["severity"], f["kind"]) == ("noise", "value_changed"), f
        assert PLACEHOLDER.fullmatch(f["recorded"]) and PLACEHOLDER.fullmatch(f["live"]), f
        assert f["recorded"] != f["live"]  # a fresh token each call: volatile noise
    assert "body $.echo.authorization" not in findings  # the echoed credential: its placeholder
    [result] = report["results"]
    assert PLACEHOLDER.search(result["live_url"]), result["live_url"]
    breaking = json.loads((tmp_path / "r2.json").read_text())
    assert {(f["severity"], f["kind"], f["location"])
            for f in breaking["results"][0]["findings"]} >= {
        ("breaking", "field_missing", "body $.clientSecret")}
    assert 'noise value_changed at body $.access_token: recorded "<redacted:' in first.stdout


def test_a_live_error_naming_the_url_shows_no_credential(api, monkeypatch, upstream_ca):
    """A live error whose message echoes the URL sent (with the credential in its query)
    names the placeholder instead, in the result and in every report."""
    secret = "ErrorPathToken7Hq2Lx9Pz4Rw"
    placeholder = Redactor(key=REDACTION_KEY.encode()).placeholder("access_token", secret)
    request = Request("GET", "http", "127.0.0.1", 80, "/v1/huge",
                      f"access_token={quote(placeholder, safe='')}&page=2")
    recorded = Response(200, "OK", (("Content-Type", "application/octet-stream"),), b"x" * 16)
    job = Job("hostile", 0, "GET /v1/huge #1", Interaction(request, recorded))
    config = DriftConfig(credentials=(("access_token", "TOKEN_VAR"),),
                         origins=(("http://127.0.0.1", api.base_url),), repeat=False)
    monkeypatch.setattr(live, "_MAX_BODY", 1024)
    api.huge = 4096
    try:
        results, _plans = check([job], config, {"TOKEN_VAR": secret},
                                upstream_cas=[upstream_ca.pem.read_bytes()],
                                redactor=Redactor(key=REDACTION_KEY.encode()))
    finally:
        api.huge = 16
    [result] = results
    assert result.outcome is Outcome.ERROR
    assert "/v1/huge" in result.message and "over" in result.message, result.message
    assert secret not in result.message and quote(secret) not in result.message
    assert "redacted" in result.message and "redacted" in result.live_url
    run = DriftReport(("hostile",), results=results)
    run.finished_at = run.started_at
    texts = [drift_report.write_json(run), drift_report.junit_xml(run),
             drift_report.markdown(run), drift_report.html(run)]
    assert not [leak for text in texts for leak in _leaks("report", text, [secret])]


def test_a_secret_left_in_an_old_cassette_is_not_reported_either(api, upstream_ca):
    """A cassette recorded with older rules (``accessToken`` in the query was not
    redacted then): its URL, key and response are cleaned like the live side."""
    old = "OldRecordedSecret55Kq0"
    request = Request("GET", "http", "127.0.0.1", 80, "/v1/session",
                      f"accessToken={old}&page=2")
    recorded = Response(200, "OK", (("Content-Type", "application/json"),),
                        json.dumps({"echo": {"query": f"accessToken={old}"}}).encode())
    job = Job("hostile", 0, f"GET {request.url} #1", Interaction(request, recorded))
    config = DriftConfig(origins=(("http://127.0.0.1", api.base_url),), repeat=False)
    results, plans = check([job], config, {}, upstream_cas=[upstream_ca.pem.read_bytes()],
                           redactor=Redactor(key=REDACTION_KEY.encode()))
    [result] = results
    assert result.outcome is not Outcome.ERROR, result.message
    run = DriftReport(("hostile",), results=results)
    run.finished_at = run.started_at
    texts = [drift_report.write_json(run), drift_report.junit_xml(run),
             drift_report.markdown(run), drift_report.html(run), result.key,
             result.endpoint]
    assert not [leak for text in texts for leak in _leaks("report", text, [old])]
    assert "page=2" in result.url and (result.cassette, result.key) in plans


def test_the_http_clients_log_lines_hold_no_credential(api, upstream_ca, caplog):
    """httpx logs every URL it sends at INFO: an application that shows INFO logs must
    not see the credential the check put into the query."""
    secret = "LogLineToken4Jd8Kq1Zx"
    placeholder = Redactor(key=REDACTION_KEY.encode()).placeholder("api_key", secret)
    request = Request("GET", "http", "127.0.0.1", 80, "/v1/session",
                      f"api_key={quote(placeholder, safe='')}")
    recorded = Response(200, "OK", (("Content-Type", "application/json"),), b"{}")
    job = Job("hostile", 0, "GET /v1/session #1", Interaction(request, recorded))
    config = DriftConfig(credentials=(("api_key", "KEY_VAR"),),
                         origins=(("http://127.0.0.1", api.base_url),), repeat=False)
    with caplog.at_level(logging.DEBUG):
        [result], _plans = check([job], config, {"KEY_VAR": secret},
                                 upstream_cas=[upstream_ca.pem.read_bytes()],
                                 redactor=Redactor(key=REDACTION_KEY.encode()))
    assert result.outcome is not Outcome.ERROR, result.message
    assert "HTTP Request: GET" in caplog.text
    assert "receive_response_headers.complete" in caplog.text
    assert not _leaks("log", caplog.text, [secret, *api.issued]), caplog.text
    assert logging.getLogger("httpx").filters == []  # removed after the run


def test_cassette_show_holds_no_secret_and_no_escape_sequence(api, upstream_ca, proxy_ca_dir,
                                                              tmp_path):
    """`cassette show` (full, brief, one interaction) and `cassette ls` on a recording of
    the hostile API: no secret in any form, and its escape sequences shown as text."""
    cdir = tmp_path / "cassettes"
    env = base_env(REPLAYPROXY_CA_DIR=str(proxy_ca_dir), REPLAYPROXY_HOME=str(tmp_path / "h"),
                   REPLAYPROXY_REDACTION_KEY=REDACTION_KEY)
    session = api.url(f"/v1/session?api_key={quote_plus(QUERY_KEY)}")
    script = (f"curl -sS --fail-with-body --max-time 20 -H 'Authorization: Bearer {AUTH}' "
              f"'{session}' -o /dev/null && curl -sS --http1.1 --fail-with-body --max-time 20 "
              f"-H 'X-Client-Note: {TERMINAL_ATTACK[:-1]}' '{api.url('/v1/terminal')}' "
              "-o /dev/null")
    proc = cli("record", "-c", "shown", "--cassette-dir", cdir, "--upstream-ca",
               upstream_ca.pem, "--", "sh", "-c", script, env=env)
    assert proc.returncode == 0, proc.stderr
    views = [cli("cassette", "show", "-c", "shown", "--cassette-dir", cdir, *extra, env=env)
             for extra in ((), ("--brief",), ("-i", "1"), ("-i", "2"))]
    views.append(cli("cassette", "ls", "--cassette-dir", cdir, env=env))
    assert all(v.returncode == 0 for v in views), [v.stderr for v in views]
    full = views[0].stdout
    assert "/v1/session" in full and "/v1/terminal" in full
    assert "\\x1b]0;owned\\x07\\x1b[2J" in full  # the header and the body, as text
    assert "x-client-note: \\x1b]0;owned" in full.lower()
    assert "\\x9b1A" in full
    secrets = [AUTH, QUERY_KEY, *api.issued]
    for i, view in enumerate(views):
        for stream in (view.stdout, view.stderr):
            assert not any(ch in stream for ch in "\x1b\x07\x9b\r"), (i, stream)
            leaks = _leaks(f"view {i}", stream, secrets)
            assert not leaks, "\n".join(leaks)
