"""Bad input found only once a proxy or the command starts: each gives one
`replayproxy: error: ...` line naming the problem and the fix, a non-zero exit, and no
traceback. (Bad input caught before that is tested in-process in
tests/unit/test_cli_errors.py.)"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from tests.integration.support import assert_clean_error, cli

pytestmark = pytest.mark.slow


@pytest.fixture
def cdir(tmp_path: Path) -> Path:
    d = tmp_path / "cassettes"
    d.mkdir()
    return d


@pytest.fixture
def record(cli_env, cdir, tmp_path):
    def go(name: str, *cmd: str, extra: tuple[str, ...] = ()):
        return cli("record", "-c", name, "--cassette-dir", cdir, *extra, "--",
                   *(cmd or ("true",)), env=cli_env, cwd=tmp_path)

    return go


def test_cmd_that_does_not_exist(record):
    proc = record("nocmd", "/nonexistent/definitely-not-a-command", "--flag")
    line = assert_clean_error(proc, "command not found", "/nonexistent/definitely-not-a-command")
    assert "PATH" in line
    assert proc.returncode == 127


def test_port_already_taken_is_one_line(record):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = record("busy", extra=("-p", str(port)))
    assert proc.returncode == 2
    # exactly one line: no traceback, no mitmproxy log lines, no start-up line
    assert proc.stderr.count("\n") == 1, proc.stderr
    line = assert_clean_error(proc, f"127.0.0.1:{port}", "--port")
    assert "taken" in line
    assert "failed to listen" not in line  # mitmproxy's own wording is not repeated


@pytest.mark.parametrize("engine", ["mitmproxy", "fast"])
def test_a_hostile_request_line_reaches_the_log_escaped_and_short(cli_env, tmp_path, engine):
    """A request line with terminal escape sequences and a megabyte URL: the unmatched
    warning shows the escapes as text and the URL shortened (no terminal injection, no
    megabytes of log). The fast engine refuses it outright (431: a head over 64 KiB)."""
    from replayproxy.cassette.store import cassette_path, save_cassette
    from replayproxy.model import Interaction, Request, Response

    cdir = tmp_path / "cassettes"
    save_cassette(cassette_path(cdir, "t"), [Interaction(
        Request("GET", "http", "api.example.com", 80, "/ok"), Response(200))])
    script = (
        "import os, socket\n"
        "host, port = os.environ['HTTP_PROXY'].rsplit('/', 1)[1].split(':')\n"
        "s = socket.create_connection((host, int(port)), timeout=30)\n"
        "path = '/x\\x1b[31mRED\\x1b]0;title\\x07' + 'a' * 1_000_000\n"
        "s.sendall(('GET http://api.example.com' + path + ' HTTP/1.1\\r\\n'\n"
        "           'Host: api.example.com\\r\\nConnection: close\\r\\n\\r\\n')"
        ".encode('latin-1'))\n"
        "print(s.recv(12).decode())\n")
    run = cli("replay", "-c", "t", "--cassette-dir", cdir, "--engine", engine, "--",
              sys.executable, "-c", script, env=cli_env, cwd=tmp_path)
    assert "\x1b" not in run.stderr and "\x07" not in run.stderr
    if engine == "fast":
        assert run.stdout.startswith("HTTP/1.1 431"), run.stdout
    else:
        assert "\\x1b[31mRED" in run.stderr
    assert len(run.stderr) < 40_000, len(run.stderr)
    assert "Traceback" not in run.stderr
