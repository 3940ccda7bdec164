"""`replayproxy drift` end to end: record against a v1 API with curl through the real
proxy, switch the same server to v2, and run the drift check as a subprocess."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import socket
import sqlite3
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replayproxy.cassette.store import cassette_path, load_cassette
from replayproxy.model import header_value
from tests.conftest import UpstreamCA
from tests.integration.support import base_env, cli, error_lines, replayproxy_cmd
from tests.integration.versioned_api import TOKEN, VersionedApi

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(upstream_ca: UpstreamCA) -> Iterator[VersionedApi]:
    server = VersionedApi(upstream_ca.server_context)
    try:
        yield server
    finally:
        server.stop()


def _curl(api: VersionedApi, *args: str) -> str:
    quoted = " ".join(f"'{a}'" for a in args)
    return f"curl -sS --fail-with-body --max-time 20 -H 'Authorization: Bearer {TOKEN}' {quoted}"


@pytest.fixture(scope="module")
def recorded(api: VersionedApi, upstream_ca: UpstreamCA, proxy_ca_dir: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cassette directory with cassette `api`, recorded from v1 with curl."""
    home = tmp_path_factory.mktemp("home")
    cdir = tmp_path_factory.mktemp("recorded") / "cassettes"
    env = base_env(REPLAYPROXY_CA_DIR=str(proxy_ca_dir), REPLAYPROXY_HOME=str(home))
    api.version = "v1"
    script = " && ".join([
        _curl(api, api.url("/v1/customers/cus_1")),
        _curl(api, api.url("/v1/charges")),
        _curl(api, api.url("/v1/legacy")),
        _curl(api, "-X", "POST", "-d", "amount=1200", api.url("/v1/charges")),
        _curl(api, "-I", api.url("/v1/ping")),
    ])
    proc = cli("record", "-c", "api", "--cassette-dir", cdir, "--upstream-ca",
               upstream_ca.pem, "--", "sh", "-c", script, env=env)
    assert proc.returncode == 0, proc.stderr
    cassette = load_cassette(cassette_path(cdir, "api"))
    assert len(cassette) == 5
    raw = cassette_path(cdir, "api").read_bytes()
    assert TOKEN.encode() not in raw, "the token reached the cassette"
    return cdir


@pytest.fixture
def cdir(recorded: Path, tmp_path: Path) -> Path:
    """This test's own copy of the recorded cassettes."""
    return Path(shutil.copytree(recorded, tmp_path / "cassettes"))


@pytest.fixture
def drift(cdir: Path, cli_env: dict[str, str], upstream_ca: UpstreamCA, tmp_path: Path):
    """``drift(*flags, env=None)`` runs `replayproxy drift -c api` with the sandbox key."""

    def run(*flags: Any, env: dict[str, str] | None = None, ca: bool = True):
        environ = dict(cli_env, SANDBOX_KEY=TOKEN) if env is None else env
        extra = ["--upstream-ca", upstream_ca.pem] if ca else []
        return cli("drift", "--cassette-dir", cdir, *extra, *map(str, flags), env=environ,
                   cwd=tmp_path)

    return run


def _findings(report: dict[str, Any], url_end: str) -> set[tuple[str, str, str]]:
    [result] = [r for r in report["results"] if r["url"].endswith(url_end)
                and r["method"] == "GET"]
    return {(f["severity"], f["kind"], f["location"]) for f in result["findings"]}


def _result(report: dict[str, Any], method: str, url_end: str) -> dict[str, Any]:
    [result] = [r for r in report["results"]
                if r["method"] == method and r["url"].endswith(url_end)]
    return result


def test_unchanged_api_passes_and_volatile_ids_are_noise(api, drift, tmp_path):
    api.version = "v1"
    proc = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY",
                 "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"]["breaking"] == 0
    assert report["counts"]["passed"] == 4  # 3 GET + HEAD; the POST is skipped
    assert report["counts"]["skipped"] == 1
    customer = _findings(report, "/v1/customers/cus_1")
    assert ("noise", "value_changed", "body $.id") in customer
    assert ("noise", "value_changed", "body $.request_id") in customer
    assert {s for s, _, _ in customer} == {"noise"}
    assert "0 breaking" in proc.stdout


def test_v2_changes_are_classified(api, drift, tmp_path):
    api.version = "v2"
    try:
        posts = api.hits("/v1/charges", "POST")
        proc = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY",
                     "--json", tmp_path / "r.json")
    finally:
        api.version = "v1"
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    customer = _findings(report, "/v1/customers/cus_1")
    assert ("breaking", "field_missing", "body $.email") in customer
    assert ("breaking", "type_changed", "body $.balance") in customer
    assert ("additive", "field_added", "body $.tier") in customer
    assert ("noise", "value_changed", "body $.id") in customer
    breaking = {loc for sev, _, loc in customer if sev == "breaking"}
    assert breaking == {"body $.email", "body $.balance"}, "noise reported as breaking"
    assert _findings(report, "/v1/legacy") == {
        ("breaking", "status_class_changed", "status")}
    charges = _findings(report, "/v1/charges")
    assert charges and {s for s, _, _ in charges} == {"noise"}
    assert _result(report, "GET", "/v1/charges")["outcome"] == "passed"
    post = _result(report, "POST", "/v1/charges")
    assert post["outcome"] == "skipped" and "--allow-unsafe" in post["message"]
    assert api.hits("/v1/charges", "POST") == posts, "a POST was re-sent without --allow-unsafe"
    # the terminal report names the endpoints and the breaking findings
    assert "GET 127.0.0.1" in proc.stdout and "$.email" in proc.stdout
    assert "2 breaking" in proc.stdout


def test_allow_unsafe_re_sends_post_once(api, drift, tmp_path):
    api.version = "v1"
    posts = api.hits("/v1/charges", "POST")
    proc = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY", "--allow-unsafe",
                 "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert api.hits("/v1/charges", "POST") == posts + 1  # unsafe: never sent twice
    report = json.loads((tmp_path / "r.json").read_text())
    post = _result(report, "POST", "/v1/charges")
    assert post["outcome"] == "passed" and post["repeated"] is False


def test_safe_requests_are_sent_twice_unless_no_repeat(api, drift, tmp_path):
    api.version = "v1"
    before = api.hits("/v1/legacy")
    assert drift("-c", "api", "--credential", "authorization=SANDBOX_KEY").returncode == 0
    assert api.hits("/v1/legacy") == before + 2
    assert drift("-c", "api", "--credential", "authorization=SANDBOX_KEY",
                 "--no-repeat").returncode == 0
    assert api.hits("/v1/legacy") == before + 3


def test_junit_report_parses_with_failures_for_breaking(api, drift, tmp_path):
    api.version = "v2"
    try:
        proc = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY",
                     "--junit", tmp_path / "drift.xml")
    finally:
        api.version = "v1"
    assert proc.returncode == 1
    root = ET.parse(tmp_path / "drift.xml").getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == 5
    failed = sorted(c.get("name", "") for c in cases if c.find("failure") is not None)
    assert len(failed) == 2
    assert any("/v1/customers/" in n for n in failed) and any("/v1/legacy" in n for n in failed)
    assert sum(c.find("skipped") is not None for c in cases) == 1
    assert not [c for c in cases if c.find("error") is not None]


def test_markdown_and_html_reports(api, drift, tmp_path):
    api.version = "v2"
    try:
        proc = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY",
                     "--markdown", tmp_path / "drift.md", "--html", tmp_path / "drift.html")
    finally:
        api.version = "v1"
    assert proc.returncode == 1
    md = (tmp_path / "drift.md").read_text()
    assert "$.email" in md and "field_missing" in md
    page = (tmp_path / "drift.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html")
    assert "ada@example.com" in page  # the recorded body, side by side with the live one
    assert "&quot;tier&quot;" in page or '"tier"' in page  # the live body
    assert "<script src" not in page and "<link" not in page


def test_history_across_two_runs(api, drift, cdir, tmp_path, cli_env):
    api.version = "v1"
    assert drift("-c", "api", "--credential", "authorization=SANDBOX_KEY").returncode == 0
    api.version = "v2"
    try:
        assert drift("-c", "api", "--credential", "authorization=SANDBOX_KEY").returncode == 1
    finally:
        api.version = "v1"
    db = tmp_path / ".replayproxy" / "history.db"  # the default: in the project directory
    with sqlite3.connect(db) as conn:
        runs = conn.execute("select id, exit_code, breaking from runs order by id").fetchall()
        assert [(r[1], r[2]) for r in runs] == [(0, 0), (1, 2)]
        new = conn.execute(
            "select kind, location, first_run, last_run from known where severity = "
            "'breaking' order by location").fetchall()
    second = runs[1][0]
    assert ("field_missing", "body $.email", second, second) in new
    assert ("type_changed", "body $.balance", second, second) in new
    # options before the subcommand count too; run elsewhere so no default finds the db
    proc = cli("drift", "--cassette-dir", cdir, "--db", db, "history", "--json", env=cli_env,
               cwd=tmp_path.parent)
    assert proc.returncode == 0, proc.stderr
    history = json.loads(proc.stdout)
    new_locations = {f["location"] for f in history["new"]}
    assert {"body $.email", "body $.balance", "status"} <= new_locations
    text = cli("drift", "history", "--cassette-dir", cdir, "-c", "api", env=cli_env,
               cwd=tmp_path)  # options after the subcommand; the default database
    assert text.returncode == 0, text.stderr
    assert "$.email" in text.stdout
    text = cli("drift", "history", "--db", db, "-c", "api", env=cli_env,
               cwd=tmp_path.parent)  # another directory, --db after the subcommand
    assert text.returncode == 0, text.stderr
    assert "$.email" in text.stdout


def test_history_lives_outside_the_cassette_directory_and_ignores_itself(
        api, drift, cdir, tmp_path):
    api.version = "v1"
    proc = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    db = tmp_path / ".replayproxy" / "history.db"
    assert db.is_file()
    assert not list(cdir.rglob("*.db")), "the history was written into the cassette directory"
    assert (tmp_path / ".replayproxy" / ".gitignore").read_text().splitlines()[-1] == "*"
    notes = [line for line in proc.stderr.splitlines() if "drift history" in line]
    assert notes == [f"replayproxy: drift history created at {db} "
                     f"(git-ignored; --db FILE or database = \"...\" to keep it elsewhere)"]
    again = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY")
    assert again.returncode == 0
    assert "drift history" not in again.stderr  # said once, when it was created
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from runs").fetchone() == (2,)


def test_history_next_to_the_configuration_file(api, drift, cdir, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "replayproxy.toml").write_text(f'cassette_dir = "{cdir}"\n')
    proc = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY", "--config",
                 project / "replayproxy.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (project / ".replayproxy" / "history.db").is_file()
    assert not (tmp_path / ".replayproxy").exists()


def test_history_at_the_old_default_is_kept_with_a_warning(api, drift, cdir, tmp_path):
    old = cdir / ".replayproxy.db"
    assert drift("-c", "api", "--credential", "authorization=SANDBOX_KEY", "--db",
                 old).returncode == 0
    proc = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, proc.stderr
    assert str(old) in warnings[0] and ".replayproxy/history.db" in warnings[0]
    with sqlite3.connect(old) as conn:  # still used: no history lost, none split
        assert conn.execute("select count(*) from runs").fetchone() == (2,)
    ready = tmp_path / ".replayproxy"  # made ready for the move, ignoring itself
    assert not (ready / "history.db").exists()
    assert (ready / ".gitignore").read_text().splitlines()[-1] == "*"
    old.rename(ready / "history.db")
    moved = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY")
    assert moved.returncode == 0 and "warning" not in moved.stderr, moved.stderr
    assert "drift history created" not in moved.stderr
    with sqlite3.connect(ready / "history.db") as conn:
        assert conn.execute("select count(*) from runs").fetchone() == (3,)


def test_update_re_records_drifted_interactions_redacted(api, drift, cdir, tmp_path):
    api.version = "v2"
    try:
        proc = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY", "--update")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        again = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY")
    finally:
        api.version = "v1"
    assert again.returncode == 0, again.stdout + again.stderr
    raw = cassette_path(cdir, "api").read_bytes()
    assert TOKEN.encode() not in raw
    cassette = load_cassette(cassette_path(cdir, "api"))
    customer = next(it for it in cassette.interactions()
                    if it.request.path == "/v1/customers/cus_1")
    assert json.loads(customer.response.body)["tier"] == "gold"
    auth = header_value(customer.request.headers, "authorization") or ""
    assert auth.startswith("Bearer <redacted:authorization:")


def test_origin_sends_to_another_server(api, drift, upstream_ca, tmp_path):
    other = VersionedApi(upstream_ca.server_context)
    try:
        other.version = "v2"
        proc = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY", "--origin",
                     f"{api.base_url}={other.base_url}", "--json", tmp_path / "r.json")
        assert other.hits("/v1/legacy") == 2
    finally:
        other.stop()
    assert proc.returncode == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert _result(report, "GET", "/v1/legacy")["live_url"].startswith(other.base_url)


# -- bad input: each case exits 2 with one clear line and a partial report -------------


def test_unreachable_live_host(api, drift, upstream_ca, tmp_path):
    gone = VersionedApi(upstream_ca.server_context)
    dead = gone.base_url
    gone.stop()  # nothing listens on that port any more
    proc = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY", "--origin",
                 f"{api.base_url}={dead}", "--json", tmp_path / "r.json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    errors = [r for r in report["results"] if r["outcome"] == "error"]
    assert len(errors) == 4 and all("refused" in e["message"] or "unreachable" in e["message"]
                                    for e in errors)
    assert report["counts"]["breaking"] == 0, "a live error was reported as drift"


def test_missing_cassette(drift, tmp_path):
    proc = drift("-c", "api", "-c", "nope", "--credential", "authorization=SANDBOX_KEY",
                 "--json", tmp_path / "r.json")
    assert proc.returncode == 2
    [line] = error_lines(proc.stderr)
    assert "'nope' does not exist" in line and "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"]["passed"] == 4, "the cassette that exists was not checked"


def test_malformed_configuration(drift, tmp_path):
    (tmp_path / "replayproxy.toml").write_text("[drift]\nconcurrency = 'many'\n")
    proc = drift("-c", "api", "--junit", tmp_path / "drift.xml")
    assert proc.returncode == 2
    [line] = error_lines(proc.stderr)
    assert "concurrency" in line and "replayproxy.toml" in line
    assert "Traceback" not in proc.stderr
    root = ET.parse(tmp_path / "drift.xml").getroot()
    assert [e.get("message") for e in root.iter("error")] == [line.split("error: ", 1)[1]]


def test_missing_credential_variable(api, drift, cli_env, tmp_path):
    api.version = "v1"
    proc = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY",
                 "--json", tmp_path / "r.json", env=dict(cli_env))
    assert proc.returncode == 2
    assert "SANDBOX_KEY is not set" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    errors = [r for r in report["results"] if r["outcome"] == "error"]
    assert len(errors) == 4 and all("SANDBOX_KEY is not set" in e["message"] for e in errors)


def test_unmapped_placeholder_is_an_error_not_drift(api, drift, tmp_path):
    before = api.hits("/v1/legacy")
    proc = drift("-c", "api", "--json", tmp_path / "r.json")
    assert proc.returncode == 2
    assert api.hits("/v1/legacy") == before, "sent a placeholder to the live API"
    report = json.loads((tmp_path / "r.json").read_text())
    assert "no credential is mapped" in _result(report, "GET", "/v1/legacy")["message"]


# -- live errors are errors, not drift --------------------------------------------------


def test_tls_failure_is_an_error_naming_the_fix(api, drift, tmp_path):
    proc = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY",
                 "--json", tmp_path / "r.json", ca=False)
    assert proc.returncode == 2
    report = json.loads((tmp_path / "r.json").read_text())
    errors = [r for r in report["results"] if r["outcome"] == "error"]
    assert len(errors) == 4
    assert "TLS handshake" in errors[0]["message"]
    assert "--upstream-ca" in errors[0]["message"]
    assert report["counts"]["breaking"] == 0


def test_a_live_api_that_never_answers_is_a_timeout_error(api, drift, tmp_path):
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        proc = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY", "--origin",
                     f"{api.base_url}=http://127.0.0.1:{port}", "--timeout", "300ms",
                     "--json", tmp_path / "r.json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    messages = [r["message"] for r in report["results"] if r["outcome"] == "error"]
    assert len(messages) == 4 and all("did not answer in time" in m for m in messages)


def test_rate_spaces_the_calls_to_a_host(api, drift, tmp_path):
    api.version = "v1"
    proc = drift("-c", "api", "--credential", "authorization=SANDBOX_KEY", "--rate", "10/s",
                 "--concurrency", "8", "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    # 4 safe requests, each sent twice: 8 calls to one host, at most 10 a second
    assert report["duration"] >= 0.7


def test_configuration_file_supplies_credentials_routes_and_ignore(api, drift, tmp_path):
    (tmp_path / "replayproxy.toml").write_text(
        '[drift]\n'
        'credentials = { authorization = "SANDBOX_KEY" }\n'
        '[[drift.routes]]\n'
        'route = "POST */v1/charges"\n'
        'allow_unsafe = true\n'
        '[[drift.routes]]\n'
        'route = "GET */v1/customers/*"\n'
        'ignore = ["$.email", "$.balance", "$.tier"]\n'
        '[[drift.routes]]\n'
        'route = "*/v1/legacy"\n'
        'skip = true\n')
    api.version = "v2"
    try:
        posts = api.hits("/v1/charges", "POST")
        proc = drift("-c", "api", "--json", tmp_path / "r.json")  # no flags: the file only
        assert api.hits("/v1/charges", "POST") == posts + 1
    finally:
        api.version = "v1"
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert _result(report, "POST", "/v1/charges")["outcome"] == "passed"
    assert _result(report, "GET", "/v1/legacy")["outcome"] == "skipped"
    assert _result(report, "GET", "/v1/customers/cus_1")["outcome"] == "passed"


def test_progress_bar_on_a_terminal(api, cdir, cli_env, upstream_ca, tmp_path):
    """On a terminal, stderr shows a progress bar while checking (CI logs get none)."""
    api.version = "v1"
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            replayproxy_cmd("drift", "-c", "api", "--cassette-dir", cdir, "--upstream-ca",
                            upstream_ca.pem, "--credential", "authorization=SANDBOX_KEY"),
            env=dict(cli_env, SANDBOX_KEY=TOKEN, COLUMNS="100", TERM="xterm"), cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        seen = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(master)
    assert proc.returncode == 0, out
    assert b"checking" in seen and b"/5" in seen
    assert b"checking" not in out  # the report on stdout has no progress bar in it
