"""The `replayproxy` command end to end, in subprocesses, with curl as the wrapped CMD.

What needs no proxy (cassette ls/show, explain, ca, bad input) is in tests/unit/test_cli_*.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from replayproxy.cassette.store import cassette_path, load_cassette
from tests.integration.support import (
    JSON_BODY,
    PNG_BODY,
    Upstream,
    cli_bytes,
)

pytestmark = pytest.mark.slow


def curl(url: str, *extra: str) -> list[str]:
    return ["curl", "-sS", "--max-time", "30", *extra, url]


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


@pytest.fixture
def cdir(tmp_path: Path) -> Path:
    return tmp_path / "cassettes"


@pytest.fixture
def run(cli_env, cdir, upstream_ca, tmp_path):
    """``run("record", NAME, CMD..., extra=(...))`` -> CompletedProcess[bytes]."""

    def go(verb: str, name: str, cmd: list[str], *extra: str):
        return cli_bytes(verb, "-c", name, "--cassette-dir", cdir, "--upstream-ca",
                         upstream_ca.pem, *extra, "--", *cmd, env=cli_env, cwd=tmp_path)

    return go


def stderr_lines(proc) -> list[str]:
    return [line for line in proc.stderr.decode().splitlines() if line.strip()]


def assert_only_replayproxy_on_stderr(proc) -> None:
    for line in stderr_lines(proc):
        assert line.startswith("replayproxy: "), f"unexpected stderr line {line!r}"
    assert b"Traceback" not in proc.stderr


def urls(cdir: Path, name: str) -> list[str]:
    cassette = load_cassette(cassette_path(cdir, name))
    return [f"{it.request.method} {it.request.url}" for it in cassette.interactions()]


def test_record_then_replay_with_curl(upstream: Upstream, run, cdir):
    rec = run("record", "api", curl(upstream.url("/png")))
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout == PNG_BODY  # CMD's stdout passes through byte for byte
    assert_only_replayproxy_on_stderr(rec)
    assert urls(cdir, "api") == [f"GET {upstream.url('/png')}"]
    assert upstream.hits("/png") == 1

    connections = upstream.connections
    rep = run("replay", "api", curl(upstream.url("/png")))
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == PNG_BODY
    assert_only_replayproxy_on_stderr(rep)
    assert upstream.connections == connections, "replay connected to the upstream"
    assert "1 replayed" in rep.stderr.decode()


# Configured by the environment `record`/`replay` give CMD, nothing else: proxies and
# the CA bundle through HTTPS_PROXY, REQUESTS_CA_BUNDLE (requests), SSL_CERT_FILE
# (httpx, urllib), although this machine pre-sets those variables to the system store.
ENV_ONLY_CLIENTS = """\
import sys, urllib.request
import httpx, requests
url = sys.argv[1]
out = sys.stdout.buffer
out.write(requests.get(url, timeout=30).content + b"|")
out.write(httpx.get(url, timeout=30).content + b"|")
with urllib.request.urlopen(url, timeout=30) as r:
    out.write(r.read())
"""


def test_python_clients_configured_by_environment_only(upstream, run, tmp_path):
    script = tmp_path / "clients.py"
    script.write_text(ENV_ONLY_CLIENTS)
    cmd = [sys.executable, str(script), upstream.url("/json")]
    rec = run("record", "envonly", cmd)
    assert rec.returncode == 0, rec.stderr.decode()
    assert rec.stdout == b"|".join([JSON_BODY] * 3)
    assert upstream.hits("/json") == 3
    connections = upstream.connections
    rep = run("replay", "envonly", cmd)
    assert rep.returncode == 0, rep.stderr.decode()
    assert rep.stdout == rec.stdout
    assert upstream.connections == connections


def test_cmd_stdout_is_untouched(https_upstream, run):
    script = (f"printf 'before\\n'; curl -sS {https_upstream.url('/json')}; "
              "printf '\\nafter'")
    rec = run("record", "out", sh(script))
    rep = run("replay", "out", sh(script))
    expected = b"before\n" + JSON_BODY + b"\nafter"
    assert (rec.returncode, rec.stdout) == (0, expected)
    assert (rep.returncode, rep.stdout) == (0, expected)
    assert_only_replayproxy_on_stderr(rec)
    assert_only_replayproxy_on_stderr(rep)


def test_exit_code_of_cmd_is_passed_through(https_upstream, run, cdir):
    script = f"curl -sS -o /dev/null {https_upstream.url('/json')}; exit 3"
    assert run("record", "rc", sh(script)).returncode == 3
    assert cassette_path(cdir, "rc").exists()
    assert run("replay", "rc", sh(script)).returncode == 3
    passing = script.replace("exit 3", "exit 0")
    assert run("replay", "rc", sh(passing)).returncode == 0
    # a passing CMD that sent nothing through the proxy bypassed it: 1 (#12)
    assert run("replay", "rc", sh("exit 0")).returncode == 1
    # a CMD killed by a signal exits like a shell reports it: 128 + signal number
    assert run("replay", "rc", sh("kill -TERM $$")).returncode == 128 + 15


def test_replay_with_unmatched_request_fails_even_if_cmd_passed(https_upstream, run):
    assert run("record", "partial", curl(https_upstream.url("/json"))).returncode == 0
    missing = https_upstream.url("/missing?page=2")
    connections = https_upstream.connections
    script = f"curl -sS {https_upstream.url('/json')} && curl -sS '{missing}'"
    rep = run("replay", "partial", sh(script))
    assert rep.returncode == 1  # curl exited 0 both times
    assert rep.stdout.startswith(JSON_BODY)
    body = rep.stdout[len(JSON_BODY):].decode()
    assert f"GET {missing}" in body and "'partial'" in body
    err = rep.stderr.decode()
    assert "1 request matched nothing in cassette partial" in err
    assert "replayproxy: replayproxy:" not in err
    assert f"unmatched: GET {missing}" in err
    assert_only_replayproxy_on_stderr(rep)
    assert https_upstream.connections == connections

    # a failing CMD keeps its own exit code
    rep = run("replay", "partial", sh(f"curl -sS -o /dev/null '{missing}'; exit 4"))
    assert rep.returncode == 4
    assert f"unmatched: GET {missing}" in rep.stderr.decode()


def test_record_mode_once_records_when_missing_then_replays(https_upstream, run, cdir):
    url = https_upstream.url("/json")
    first = run("replay", "once", curl(url), "--record-mode", "once")
    assert (first.returncode, first.stdout) == (0, JSON_BODY), first.stderr
    assert https_upstream.hits("/json") == 1
    assert urls(cdir, "once") == [f"GET {url}"]
    before = cassette_path(cdir, "once").read_bytes()

    second = run("record", "once", curl(url), "--record-mode", "once")
    assert (second.returncode, second.stdout) == (0, JSON_BODY), second.stderr
    assert https_upstream.hits("/json") == 1, "once replays an existing cassette"
    assert cassette_path(cdir, "once").read_bytes() == before

    # and in once mode with an existing cassette a new request is not recorded
    third = run("record", "once", curl(https_upstream.url("/png")), "--record-mode", "once")
    assert third.returncode == 1
    assert https_upstream.hits("/png") == 0
    assert cassette_path(cdir, "once").read_bytes() == before


def test_record_mode_new_episodes_appends_and_replays_old(https_upstream, run, cdir):
    json_url, gzip_url = https_upstream.url("/json"), https_upstream.url("/gzip")
    assert run("record", "episodes", curl(json_url)).returncode == 0
    assert https_upstream.hits("/json") == 1

    script = f"curl -sS {json_url} && curl -sS -o /dev/null {gzip_url}"
    proc = run("replay", "episodes", sh(script), "--record-mode", "new_episodes")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == JSON_BODY
    assert https_upstream.hits("/json") == 1, "the recorded request was sent upstream again"
    assert https_upstream.hits("/gzip") == 1
    assert urls(cdir, "episodes") == [f"GET {json_url}", f"GET {gzip_url}"]

    # both now replay offline
    connections = https_upstream.connections
    proc = run("replay", "episodes", sh(script))
    assert proc.returncode == 0, proc.stderr
    assert https_upstream.connections == connections


def test_record_mode_all_rerecords(https_upstream, run, cdir):
    json_url, png_url = https_upstream.url("/json"), https_upstream.url("/png")
    assert run("record", "again", sh(f"curl -sS {json_url}; curl -sS {png_url}")).returncode == 0
    assert urls(cdir, "again") == [f"GET {json_url}", f"GET {png_url}"]

    proc = run("record", "again", curl(json_url), "--record-mode", "all")
    assert (proc.returncode, proc.stdout) == (0, JSON_BODY)
    assert https_upstream.hits("/json") == 2, "all must not replay"
    # as VCR.py 9: the re-recorded interaction replaces the old one, the others stay,
    # ahead of it (#12)
    assert urls(cdir, "again") == [f"GET {png_url}", f"GET {json_url}"]

    proc = run("record", "again", curl(json_url), "--fresh")
    assert proc.returncode == 0
    assert urls(cdir, "again") == [f"GET {json_url}"]  # afresh: the cassette is the new run


def test_record_mode_none_replays_only(https_upstream, run, cdir):
    json_url = https_upstream.url("/json")
    assert run("record", "ro", curl(json_url)).returncode == 0
    before = cassette_path(cdir, "ro").read_bytes()
    connections = https_upstream.connections

    proc = run("record", "ro", sh(f"curl -sS {json_url}; curl -sS -o /dev/null "
                                  f"{https_upstream.url('/png')}"), "--record-mode", "none")
    assert proc.returncode == 1
    assert proc.stdout == JSON_BODY
    assert https_upstream.connections == connections
    assert cassette_path(cdir, "ro").read_bytes() == before


def test_rerecording_identical_traffic_gives_identical_bytes(https_upstream, run, cdir):
    script = (f"curl -sS -o /dev/null {https_upstream.url('/json')}; "
              f"curl -sS -o /dev/null -d amount=5 {https_upstream.url('/echo')}")
    assert run("record", "stable", sh(script)).returncode == 0
    first = cassette_path(cdir, "stable").read_bytes()
    assert run("record", "stable", sh(script)).returncode == 0
    assert cassette_path(cdir, "stable").read_bytes() == first
