"""Nothing recorded is lost: `kill -9` during a recording keeps every completed
interaction, and two recordings into one cassette at once leave a valid file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from replayproxy.cassette.format import encode_interaction
from replayproxy.cassette.store import cassette_path, load_cassette, save_cassette
from replayproxy.model import Interaction, Request, Response
from tests.integration.support import (
    JSON_BODY,
    assert_clean_error,
    background,
    cli,
    replayproxy_cmd,
    wait_for,
)

pytestmark = pytest.mark.slow

# A client run under the proxy: N GETs through HTTPS_PROXY (requests honours it and
# REQUESTS_CA_BUNDLE), then "PID done" in a marker file, then it idles until killed.
CLIENT = """\
import os, sys, time
import requests

base, n, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
mode = sys.argv[4] if len(sys.argv) > 4 else "idle"
if mode == "barrier":  # wait (bounded) until the test says go
    open(marker + ".ready", "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(marker + ".go") and time.monotonic() < deadline:
        time.sleep(0.02)
with requests.Session() as s:
    for i in range(n):
        r = s.get(f"{base}/json?client={os.path.basename(marker)}&i={i}", timeout=30)
        assert r.status_code == 200, (r.status_code, r.text)
        assert r.json()["hello"] == "world"
with open(marker + ".tmp", "w") as f:
    f.write(f"{os.getpid()} done\\n")
os.replace(marker + ".tmp", marker)
if mode == "idle":
    time.sleep(60)
"""

N = 5


@pytest.fixture
def client_script(tmp_path: Path) -> Path:
    path = tmp_path / "client.py"
    path.write_text(CLIENT)
    return path


def journal_entries(path: Path) -> int:
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(path.read_bytes())
    return sum(1 for _ in unpacker) - 1  # minus the header


def _is_our_client(pid: int, script: Path) -> bool:
    try:
        return str(script) in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    except OSError:
        return False


def test_kill_9_during_recording_keeps_completed_interactions(
        https_upstream, cli_env, upstream_ca, client_script, tmp_path):
    cdir = tmp_path / "cassettes"
    marker = tmp_path / "client-done"
    cmd = replayproxy_cmd("record", "-c", "crash", "--cassette-dir", cdir, "--upstream-ca",
                          upstream_ca.pem, "--", sys.executable, client_script,
                          https_upstream.base_url, str(N), marker)
    child_pid = 0
    try:
        with background(cmd, env=cli_env, cwd=tmp_path,
                        stderr_path=tmp_path / "rp.err") as bg:
            wait_for(marker.exists, timeout=60, what="the client's N requests")
            child_pid = int(marker.read_text().split()[0])
            journal = cdir / f".crash.cassette.{bg.proc.pid}.journal"
            assert journal.exists(), sorted(p.name for p in cdir.iterdir())
            assert journal_entries(journal) == N
            assert not cassette_path(cdir, "crash").exists()  # not folded yet

            bg.proc.send_signal(signal.SIGKILL)
            assert bg.proc.wait(10) == -signal.SIGKILL
    finally:
        if child_pid and _is_our_client(child_pid, client_script):
            os.kill(child_pid, signal.SIGKILL)  # the orphaned CMD, by its PID
    wait_for(lambda: not _is_our_client(child_pid, client_script), timeout=10,
             what="the client to die")
    assert https_upstream.hits("/json") == N

    # an interrupted recording is visible before anything recovers it
    ls = cli("cassette", "ls", "--cassette-dir", cdir, env=cli_env)
    assert ls.returncode == 0
    assert "crash" in ls.stdout, "cassette ls hides the interrupted recording"
    assert "interrupted recording" in ls.stdout
    show = cli("cassette", "show", "crash", "--cassette-dir", cdir, env=cli_env)
    assert_clean_error(show, "'crash'", "interrupted recording",
                       "replayproxy replay -c crash")

    # the next run recovers every completed interaction and replays them offline
    connections = https_upstream.connections
    again = tmp_path / "replay" / marker.name  # same name: the same requests
    again.parent.mkdir()
    replay = cli("replay", "-c", "crash", "--cassette-dir", cdir, "--", sys.executable,
                 client_script, https_upstream.base_url, str(N), again, "exit",
                 env=cli_env, cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    assert f"recovered {N} interactions" in replay.stderr
    assert https_upstream.connections == connections
    assert https_upstream.hits("/json") == N
    assert not list(cdir.glob(".*.journal"))

    cassette = load_cassette(cassette_path(cdir, "crash"))
    got = [(it.request.query, it.response.status, it.response.body)
           for it in cassette.interactions()]
    assert got == [(f"client=client-done&i={i}", 200, JSON_BODY) for i in range(N)]

    show = cli("cassette", "show", "crash", "--brief", "--cassette-dir", cdir, env=cli_env)
    assert show.returncode == 0
    assert len([line for line in show.stdout.splitlines() if line.startswith("#")]) == N + 1


@pytest.mark.parametrize("mode", ["new_episodes", "all"])
def test_two_processes_recording_one_cassette(mode, https_upstream, cli_env, upstream_ca,
                                               client_script, tmp_path):
    cdir = tmp_path / "cassettes"
    markers = [tmp_path / "a", tmp_path / "b"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for marker in markers:
            procs.append(subprocess.Popen(
                replayproxy_cmd("record", "-c", "shared", "--cassette-dir", cdir,
                                "--upstream-ca", upstream_ca.pem, "--record-mode", mode,
                                "--quiet", "--", sys.executable, client_script,
                                https_upstream.base_url, str(N), marker, "barrier"),
                env=cli_env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE))
        wait_for(lambda: all(Path(f"{m}.ready").exists() for m in markers), timeout=60,
                 what="both clients to start")
        for marker in markers:
            Path(f"{marker}.go").touch()
        results = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate(timeout=10)
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err.decode()
    assert https_upstream.hits("/json") == 2 * N

    cassette = load_cassette(cassette_path(cdir, "shared"))  # valid and complete
    queries = [it.request.query for it in cassette.interactions()]
    per_client = {m.name: [f"client={m.name}&i={i}" for i in range(N)] for m in markers}
    if mode == "new_episodes":  # both appended, each in its own order, none lost
        assert sorted(queries) == sorted(per_client["a"] + per_client["b"])
        for expected in per_client.values():
            assert [q for q in queries if q in expected] == expected
    else:  # each run replaces what it re-recorded and keeps the rest (VCR.py 9, #12):
        # the first to finish is kept whole, ahead of the last one's
        assert queries in (per_client["a"] + per_client["b"],
                           per_client["b"] + per_client["a"])
    assert not list(cdir.glob(".*.journal"))
    assert not list(cdir.glob("*.tmp"))


# -- damaged journals and cassettes (#16) --------------------------------------------------


def _interaction(path: str) -> Interaction:
    return Interaction(Request("GET", "http", "api.example.com", 80, path),
                       Response(200, "OK", (("Content-Type", "text/plain"),), b"hello"),
                       1_764_000_000.0, 0.001, 0.002)


def _journal(cdir: Path, name: str, objects: list[object]) -> Path:
    journal = cdir / f".{name}.cassette.4242.journal"
    journal.write_bytes(b"".join(msgpack.packb(o, use_bin_type=True) for o in objects))
    return journal


JOURNAL_HEADER = {"format": "replayproxy-journal", "replace": False, "version": 1}


def test_a_wrong_typed_journal_entry_is_set_aside_and_the_rest_recovered(cli_env, tmp_path):
    cdir = tmp_path / "cassettes"
    save_cassette(cassette_path(cdir, "d"), [_interaction("/old")])
    good, bad = (encode_interaction(_interaction(p)) for p in ("/new", "/bad"))
    bad = (bad[0], (200, "OK", (), 12, "HTTP/1.1"), *bad[2:])  # an integer body
    journal = _journal(cdir, "d", [JOURNAL_HEADER, bad, good])
    run = cli("replay", "-c", "d", "--cassette-dir", cdir, "--", sys.executable, "-c", "",
              env=cli_env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    warning = [line for line in run.stderr.splitlines() if f"journal {journal}" in line]
    assert len(warning) == 1 and "interaction #1 is malformed (the response body should " \
        "be bytes but is int 12); 1 other interaction recovered" in warning[0]
    assert "recovered 1 interaction" in run.stderr
    paths = [it.request.path for it in load_cassette(cassette_path(cdir, "d")).interactions()]
    assert paths == ["/old", "/new"]
    assert sorted(p.name for p in cdir.iterdir()) == [f"{journal.name}.damaged", "d.cassette"]
    show = cli("cassette", "show", "-c", "d", "--brief", "--cassette-dir", cdir, env=cli_env)
    assert show.returncode == 0 and "Traceback" not in show.stderr


def test_a_damaged_journal_header_does_not_block_the_cassette(cli_env, tmp_path):
    cdir = tmp_path / "cassettes"
    save_cassette(cassette_path(cdir, "h"), [_interaction("/old")])
    journal = _journal(cdir, "h", [{**JOURNAL_HEADER, "version": "x"},
                                   encode_interaction(_interaction("/new"))])
    run = cli("replay", "-c", "h", "--cassette-dir", cdir, "--", sys.executable, "-c", "",
              env=cli_env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"journal {journal}: its header is damaged (invalid format version 'x')" \
        in run.stderr
    assert "git checkout" not in run.stderr
    assert len(load_cassette(cassette_path(cdir, "h"))) == 1


def test_cassette_show_of_damaged_entries_is_one_line_or_the_raw_number(cli_env, tmp_path):
    cdir = tmp_path / "cassettes"
    path = cassette_path(cdir, "s")
    entry = encode_interaction(_interaction("/x"))
    save_cassette(path, [(*entry[:2], 1e300, *entry[3:])])  # no calendar date fits
    show = cli("cassette", "show", "-c", "s", "--cassette-dir", cdir, env=cli_env)
    assert show.returncode == 0, show.stderr
    assert "recorded at 1e+300 s since the epoch (not a calendar date)" in show.stdout
    bad_header = (entry[0], (200, "OK", (("X", 5),), b"", "HTTP/1.1"), *entry[2:])
    save_cassette(path, [entry, bad_header])
    show = cli("cassette", "show", "-c", "s", "--cassette-dir", cdir, env=cli_env)
    assert show.returncode == 2 and "Traceback" not in show.stderr  # #1 shown, then:
    assert show.stderr.splitlines() == [
        f"replayproxy: error: cassette {path} has a malformed interaction #2 (a header in "
        "the response headers should be a [name, value] pair of text but is tuple ('X', "
        "5)): restore the file from version control or re-record it"]
    path.write_bytes(path.read_bytes().replace(b"\xc4\x05hello", b"\xd9\x05hello"))
    show = cli("cassette", "show", "-c", "s", "--cassette-dir", cdir, env=cli_env)
    assert_clean_error(show, str(path), "interaction #1 has a malformed response body")


def test_replaying_a_damaged_entry_answers_500_and_fails_the_run(cli_env, tmp_path):
    """An entry whose header pairs are damaged passes the (lazy) load and fails when it
    is served: the client gets a 500 naming the problem, the log has one line (no
    traceback), and the run fails although the command passed."""
    cdir = tmp_path / "cassettes"
    entry = encode_interaction(_interaction("/x"))
    bad = (entry[0], (200, "OK", (("X", 5),), b"", "HTTP/1.1"), *entry[2:])
    save_cassette(cassette_path(cdir, "d"), [bad])
    script = ("import urllib.request, urllib.error, sys\n"
              "try:\n"
              "    urllib.request.urlopen('http://api.example.com/x', timeout=30)\n"
              "except urllib.error.HTTPError as e:\n"
              "    print(e.code, e.read().decode().strip())\n")
    run = cli("replay", "-c", "d", "--cassette-dir", cdir, "--", sys.executable, "-c", script,
              env=cli_env, cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    assert run.stdout.startswith("500 ") and "interaction #1" in run.stdout, run.stdout
    assert "Traceback" not in run.stderr
    assert "cannot answer GET http://api.example.com/x" in run.stderr
    assert "exiting with 1: the command passed but replayproxy could not answer 1 request" \
        in run.stderr
