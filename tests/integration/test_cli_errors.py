"""Bad input: each gives one `replayproxy: error: ...` line naming the problem and the
fix, a non-zero exit, and no traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import msgpack
import pytest

from replayproxy.cassette.store import save_cassette
from replayproxy.model import Interaction, Request, Response
from tests.integration.support import assert_clean_error, cli

pytestmark = pytest.mark.slow


@pytest.fixture
def cdir(tmp_path: Path) -> Path:
    d = tmp_path / "cassettes"
    d.mkdir()
    return d


@pytest.fixture
def replay(cli_env, cdir, tmp_path):
    def go(name: str, *cmd: str, verb: str = "replay", extra: tuple[str, ...] = ()):
        return cli(verb, "-c", name, "--cassette-dir", cdir, *extra, "--",
                   *(cmd or ("true",)), env=cli_env, cwd=tmp_path)

    return go


def _real_cassette(path: Path) -> None:
    it = Interaction(
        Request("GET", "https", "api.example.com", 443, "/v1/items", "a=1",
                (("Host", "api.example.com"),)),
        Response(200, "OK", (("Content-Type", "application/json"),), b'{"x": "' + b"y" * 4000
                 + b'"}'),
        recorded_at=1_767_225_600.0, ttfb=0.01, duration=0.02,
    )
    save_cassette(path, [it, it])


def test_missing_cassette_in_replay_mode(replay, cdir):
    line = assert_clean_error(replay("nope"), "'nope'", "does not exist", str(cdir))
    assert "replayproxy record -c nope" in line  # the fix


def test_corrupt_cassette(replay, cdir):
    path = cdir / "broken.cassette"
    path.write_bytes(b"\xc1\xff\x00garbage\x93 not msgpack at all" * 10)
    line = assert_clean_error(replay("broken"), str(path), "corrupt")
    assert "git checkout" in line or "record again" in line


def test_truncated_cassette(replay, cdir):
    path = cdir / "cut.cassette"
    _real_cassette(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    line = assert_clean_error(replay("cut"), str(path), "truncated")
    assert "git checkout" in line or "record again" in line


def test_unknown_format_version(replay, cdir):
    path = cdir / "future.cassette"
    header = {"format": "replayproxy-cassette", "interactions": 0, "version": 99}
    path.write_bytes(msgpack.packb(header) + msgpack.packb([]))
    line = assert_clean_error(replay("future"), str(path), "version 99")
    assert "upgrade replayproxy" in line


def test_cassette_name_with_slash(replay, tmp_path):
    line = assert_clean_error(replay("team/stripe"), "'team/stripe'", "no '/'")
    assert "-c stripe-payments" in line  # an example of a valid name
    assert not (tmp_path / "cassettes" / "team").exists()


@pytest.mark.parametrize("name", ["..", "a..b"])
def test_cassette_name_with_dotdot(replay, name):
    assert_clean_error(replay(name, verb="record"), f"{name!r}", "no '..'")


def test_cmd_that_does_not_exist(replay, cdir):
    proc = replay("nocmd", "/nonexistent/definitely-not-a-command", "--flag", verb="record")
    line = assert_clean_error(proc, "command not found", "/nonexistent/definitely-not-a-command")
    assert "PATH" in line
    assert proc.returncode == 127


def test_port_already_taken(replay):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = replay("busy", verb="record", extra=("--port", str(port)))
    line = assert_clean_error(proc, f"127.0.0.1:{port}", "--port")
    assert "taken" in line


def test_upstream_ca_that_does_not_exist(replay, tmp_path):
    missing = tmp_path / "no-such-ca.pem"
    assert_clean_error(replay("x", verb="record", extra=("--upstream-ca", str(missing))),
                       str(missing), "--upstream-ca")


def test_no_command(cli_env, cdir, tmp_path):
    proc = cli("record", "-c", "x", "--cassette-dir", cdir, env=cli_env, cwd=tmp_path)
    assert_clean_error(proc, "no command", "--")
