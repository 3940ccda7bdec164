"""No silent failure (#12): what used to vanish is recorded, listed with its cause and fix,
and fails the run.

Each case runs `replayproxy` in a subprocess with curl as the wrapped command.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from replayproxy.cassette.store import cassette_path, load_cassette
from tests.integration.support import assert_clean_error, cli

pytestmark = pytest.mark.slow


def curl(url: str, *extra: str) -> list[str]:
    return ["curl", "-sS", "--max-time", "20", *extra, url]


@pytest.fixture
def cdir(tmp_path: Path) -> Path:
    return tmp_path / "cassettes"


@pytest.fixture
def run(cli_env, cdir, tmp_path):
    """``run("record", NAME, CMD..., extra=(...))`` -> CompletedProcess[str]; no
    --upstream-ca unless given in ``extra``."""

    def go(verb: str, name: str, cmd: list[str], *extra: str):
        return cli(verb, "-c", name, "--cassette-dir", cdir, *extra, "--", *cmd,
                   env=cli_env, cwd=tmp_path)

    return go


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


@pytest.fixture
def resetting_server() -> Iterator[int]:
    """A TCP server that accepts and closes at once, without a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        server.close()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


def _interactions(cdir: Path, name: str) -> list:
    return list(load_cassette(cassette_path(cdir, name)).interactions())


# -- upstream failures while recording -------------------------------------------------------


@pytest.mark.parametrize("case", ["refused-http", "refused-https", "dns", "tls-verify",
                                  "reset"])
def test_upstream_failure_is_recorded_listed_and_replayed(case, run, cdir, https_upstream,
                                                          resetting_server):
    if case == "refused-http":
        url, kind = f"http://127.0.0.1:{_closed_port()}/v1/a", "connection refused"
        fix = "check that the service is running"
    elif case == "refused-https":
        url, kind = f"https://127.0.0.1:{_closed_port()}/v1/a", "connection refused"
        fix = "check that the service is running"
    elif case == "dns":
        url, kind = "http://api.nope.invalid/v1/a", "DNS lookup failed"
        fix = "check the host name 'api.nope.invalid'"
    elif case == "tls-verify":
        # the upstream's private CA is not given with --upstream-ca
        url, kind = https_upstream.url("/json"), "TLS verify failed"
        fix = "pass --upstream-ca or check the system trust store"
    else:
        url, kind = f"http://127.0.0.1:{resetting_server}/v1/a", "connection reset"
        fix = "closed the connection"
    recorded = run("record", "fail", curl(url))
    assert recorded.returncode == 1, recorded.stderr
    assert "Traceback" not in recorded.stderr
    assert "502 Bad Gateway" in recorded.stdout  # what the client got
    line = next(x for x in recorded.stderr.splitlines() if x.startswith(f"replayproxy:   {kind}"))
    assert fix in line, line
    assert "failed while recording" in recorded.stderr
    assert "HTTP_PROXY/HTTPS_PROXY?" not in recorded.stderr
    [it] = _interactions(cdir, "fail")
    assert it.response.status == 502
    assert dict((k.lower(), v) for k, v in it.response.headers)["x-replayproxy"] == \
        "upstream-error"

    https_upstream.stop()
    replayed = run("replay", "fail", curl(url))
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout  # the same 502 page
    assert "recorded upstream failure" in replayed.stderr


def test_upstream_timeout_is_recorded_listed_and_replayed(run, cdir, silent_server):
    url = f"http://127.0.0.1:{silent_server}/slow"
    recorded = run("record", "slow", curl(url, "--max-time", "1"))
    assert recorded.returncode == 28  # curl's own timeout: the command's code wins
    line = next(x for x in recorded.stderr.splitlines() if x.startswith("replayproxy:   timeout"))
    assert "the client gave up" in line and "did not answer" in line, line
    [it] = _interactions(cdir, "slow")  # a placeholder: the client saw no answer
    headers = {k.lower(): v for k, v in it.response.headers}
    assert headers["x-replayproxy"] == "upstream-timeout"
    assert 0.9 < float(headers["x-replayproxy-waited"]) < 5

    replayed = run("replay", "slow", curl(url, "--max-time", "1"))
    assert replayed.returncode == 28, replayed.stderr  # no answer again: the client gives up
    assert replayed.stdout == ""
    assert "recorded upstream failure" in replayed.stderr


# -- a client that refuses the proxy's certificate ------------------------------------------


def test_client_refusing_the_proxy_ca_is_named(run, http_upstream):
    # this curl is given the system bundle instead of replayproxy's
    cmd = ["env", "CURL_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt",
           *curl("https://api.example.test/v1/x")]
    proc = run("record", "refuse", cmd)
    assert proc.returncode == 60  # curl: peer certificate cannot be authenticated
    line = next(x for x in proc.stderr.splitlines() if "does not trust the replayproxy CA"
                in x)
    assert "api.example.test" in line and "replayproxy ca" in line, line
    assert "HTTP_PROXY/HTTPS_PROXY?" not in proc.stderr


def test_client_refusal_fails_a_passing_command(run):
    cmd = ["sh", "-c", "CURL_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt curl -sS "
           "https://api.example.test/v1/x; true"]
    proc = run("record", "refuse", cmd)
    assert proc.returncode == 1
    assert "does not trust the replayproxy CA" in proc.stderr


def test_the_generic_hint_only_when_nothing_reached_the_proxy(run):
    proc = run("record", "nothing", ["true"])
    assert proc.returncode == 0
    assert "no connection reached the proxy" in proc.stderr
    assert "HTTP_PROXY/HTTPS_PROXY?" in proc.stderr


# -- a replay that bypassed the proxy --------------------------------------------------------


def test_replay_that_bypassed_the_proxy_fails(run, http_upstream, upstream_ca):
    url = http_upstream.url("/json")
    assert run("record", "direct", curl(url)).returncode == 0
    direct = ["env", "-u", "HTTP_PROXY", "-u", "HTTPS_PROXY", "-u", "http_proxy",
              "-u", "https_proxy", *curl(url)]
    proc = run("replay", "direct", direct)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout  # the command itself passed, talking to the upstream directly
    assert "the command bypassed the proxy" in proc.stderr
    for cause in ("HTTP_PROXY", "loopback", "NO_PROXY"):
        assert cause in proc.stderr
    assert "exiting with 1" in proc.stderr


def test_replay_of_an_empty_cassette_with_no_request_passes(run, cdir):
    assert run("record", "empty", ["true"]).returncode == 0
    # nothing recorded: no cassette written, so replay has nothing to miss
    assert not cassette_path(cdir, "empty").exists()


# -- an unusable cassette directory ----------------------------------------------------------


@pytest.fixture
def record_into(cli_env, tmp_path):
    def go(directory: Path | str):
        marker = tmp_path / "child-ran"
        proc = cli("record", "-c", "x", "--cassette-dir", directory, "--", "touch", marker,
                   env=cli_env, cwd=tmp_path)
        return proc, marker

    return go


def test_cassette_dir_is_a_file(record_into, tmp_path):
    path = tmp_path / "cassettes"
    path.write_text("not a directory")
    proc, marker = record_into(path)
    assert_clean_error(proc, str(path), "is a file", "--cassette-dir")
    assert not marker.exists()


def test_cassette_dir_is_a_dangling_symlink(record_into, tmp_path):
    path = tmp_path / "cassettes"
    path.symlink_to(tmp_path / "gone")
    proc, marker = record_into(path)
    assert_clean_error(proc, str(path), "does not exist", str(tmp_path / "gone"))
    assert not marker.exists()


def test_cassette_dir_is_dev_null(record_into):
    proc, marker = record_into("/dev/null")
    assert_clean_error(proc, "/dev/null", "not a directory", "--cassette-dir")
    assert not marker.exists()


def test_cassette_dir_is_read_only(record_into, tmp_path):
    if os.geteuid() == 0:
        # root writes to a mode-0555 directory anyway; /proc/self is not writable even
        # for root (the same check, through the kernel)
        path = Path("/proc/self")
    else:
        path = tmp_path / "cassettes"
        path.mkdir()
        path.chmod(0o555)
    try:
        proc, marker = record_into(path)
    finally:
        if os.geteuid() != 0:
            path.chmod(0o755)
    assert_clean_error(proc, "not writable")
    assert not marker.exists()
