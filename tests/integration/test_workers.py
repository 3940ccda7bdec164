"""`replayproxy serve --workers N`: N fast-engine processes on one port, one summary,
one run report and one control API over them; the runs it refuses; a worker that dies.

Every request here goes on a connection of its own (``Connection: close``, or a new
client each time): the kernel spreads connections over the workers by a hash of their
addresses, so with dozens of them both workers take some (all on one worker: a chance
of 2^-39 or less), and the summary and the request log say which worker took each.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from replayproxy.cassette.store import cassette_path, save_cassette
from replayproxy.model import Interaction, Request, Response
from replayproxy.run import ProxyRun
from tests.factories import interaction
from tests.integration.support import (
    Background,
    assert_clean_error,
    background,
    base_env,
    cli,
    control_call,
    parse_exports,
    replayproxy_cmd,
)

pytestmark = pytest.mark.slow

ITEMS = 40
"""Interactions ``GET http://api.test/item/N`` in the cassette."""


@pytest.fixture
def cassettes(tmp_path: Path) -> Path:
    """A cassette ``load`` of plain-HTTP items and one HTTPS interaction (the upstreams
    exist only in it: replay never connects anywhere)."""
    cdir = tmp_path / "cassettes"
    entries = [interaction(f"http://api.test/item/{i}", f"item {i}".encode())
               for i in range(ITEMS)]
    entries.append(interaction("https://secure.test/x", b"secure"))
    save_cassette(cassette_path(cdir, "load"), entries)
    return cdir


def _exported(lines: list[str]) -> bool:
    return any(line.startswith("export REPLAYPROXY_URL=") for line in lines)


class Serving:
    """A running `serve --workers 2`: its exports and worker PIDs."""

    def __init__(self, bg: Background, err: Path) -> None:
        self.bg = bg
        self.err = err
        self.env = parse_exports(bg.read_until(_exported))
        found = re.search(r"2 workers on that port \(PIDs (\d+), (\d+)\)", err.read_text())
        assert found, err.read_text()
        self.pids = [int(found[1]), int(found[2])]

    def control(self, method: str, path: str, payload: dict[str, Any] | None = None,
                token: str | None = None) -> tuple[int, Any]:
        return control_call(self.env["REPLAYPROXY_CONTROL_URL"],
                            token or self.env["REPLAYPROXY_CONTROL_TOKEN"], method, path,
                            payload)

    def stop(self) -> tuple[int, str]:
        """SIGTERM to serve (the parent): its exit code and stderr."""
        self.bg.proc.send_signal(signal.SIGTERM)
        code = self.bg.proc.wait(30)
        return code, self.err.read_text()


@pytest.fixture
def serve(cassettes: Path, cli_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    """Start `serve -c load --workers 2 EXTRA...` (stopped by PID at the end)."""
    started: list[Serving] = []

    def start(*extra: str, env: dict[str, str] | None = None) -> Serving:
        err = tmp_path / f"serve{len(started)}.err"
        cm = background(replayproxy_cmd("serve", "-c", "load", "--cassette-dir", cassettes,
                                        "--workers", "2", *extra),
                        env=env or cli_env, cwd=tmp_path, stderr_path=err)
        serving = Serving(cm.__enter__(), err)
        started.append(serving)
        exits.append(cm)
        return serving

    exits: list[Any] = []
    try:
        yield start
    finally:
        for cm, serving in zip(exits, started, strict=True):
            cm.__exit__(None, None, None)
            for pid in serving.pids:  # a worker left behind would hold the port
                _wait_gone(pid, 10)


def _gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie counts: it serves nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)  # never leave it running; the assertion says it was
    return False


def _get(proxy: str, url: str) -> requests.Response:
    """One request on a new connection through the proxy."""
    return requests.get(url, proxies={"http": proxy, "https": proxy}, timeout=10,
                        headers={"Connection": "close"})


def _worker_counts(stderr: str) -> dict[int, int]:
    return {int(n): int(r) for n, r in
            re.findall(r"worker (\d) \(PID \d+\): (\d+) requests? on", stderr)}


def test_two_workers_share_one_port_and_the_summary_counts_every_request_once(
        serve: Any, tmp_path: Path, cli_env: dict[str, str]):
    database = tmp_path / "runs.db"
    running = serve(env={**cli_env, "REPLAYPROXY_REPORT_DB": str(database)})
    proxy = running.env["HTTP_PROXY"]
    jobs = [i % ITEMS for i in range(120)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: _get(proxy, f"http://api.test/item/{i}"), jobs))
    assert [(a.status_code, a.content) for a in answers] == \
        [(200, f"item {i}".encode()) for i in jobs]

    code, stderr = running.stop()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert f"cassette {cassettes_file(tmp_path)}: 120 replayed, 0 recorded" in stderr
    counts = _worker_counts(stderr)
    assert sorted(counts) == [1, 2] and all(counts.values()), stderr  # both took some
    assert sum(counts.values()) == 120
    # one interaction was never used, by either worker
    assert "1 recorded interaction in cassette load was never used" in stderr
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT requests, replayed, unmatched, outcome FROM runs").fetchall()
    assert rows == [(120, 120, 0, "passed")]


def cassettes_file(tmp_path: Path) -> Path:
    return cassette_path(tmp_path / "cassettes", "load")


def test_https_through_connect_and_reverse_mode_on_both_workers(serve: Any):
    running = serve("--reverse", "http://api.test")
    env = base_env(**running.env)
    reverse = running.env["REPLAYPROXY_REVERSE_URL"]
    # one curl, many URLs, each on a new connection (the proxy closes after each)
    urls = ["https://secure.test/x"] * 20
    curl = subprocess.run(["curl", "-sS", "--max-time", "20", "-H", "Connection: close",
                           *urls], env=env, capture_output=True, timeout=60, check=False)
    assert curl.returncode == 0, curl.stderr
    assert curl.stdout == b"secure" * 20
    direct = subprocess.run(["curl", "-sS", "--max-time", "20", "-H", "Connection: close",
                             *(f"{reverse}/item/{i}" for i in range(20))],
                            env={k: v for k, v in env.items() if "proxy" not in k.lower()},
                            capture_output=True, timeout=60, check=False)
    assert direct.returncode == 0, direct.stderr
    assert direct.stdout == b"".join(f"item {i}".encode() for i in range(20))

    status, log = running.control("GET", "/requests")
    assert status == 200
    tunneled = {r["worker"] for r in log["requests"] if r["url"] == "https://secure.test/x"}
    reversed_ = {r["worker"] for r in log["requests"] if r["url"].startswith("http://api.test")}
    assert tunneled == {1, 2} and reversed_ == {1, 2}, log
    code, stderr = running.stop()
    assert code == 0, stderr


def test_the_control_api_covers_both_workers(serve: Any, cassettes: Path,
                                              cli_env: dict[str, str]):
    running = serve()
    proxy = running.env["HTTP_PROXY"]
    status, added = running.control("POST", "/faults", {"spec": "status=503@*/item/*"})
    assert (status, added["index"]) == (201, 0)
    failed = [_get(proxy, f"http://api.test/item/{i}") for i in range(30)]
    assert {a.status_code for a in failed} == {503}

    status, log = running.control("GET", "/requests")
    assert status == 200
    assert [r["seq"] for r in log["requests"]] == list(range(1, 31))  # one order
    assert [r["url"] for r in log["requests"]] == \
        [f"http://api.test/item/{i}" for i in range(30)]
    assert {r["worker"] for r in log["requests"]} == {1, 2}
    assert {r["outcome"] for r in log["requests"]} == {"fault"}
    assert log["next"] == 31
    status, since = running.control("GET", f"/requests?since={log['next']}")
    assert (status, since["requests"]) == (200, [])
    assert running.control("GET", "/faults") == (
        200, {"faults": [{"index": 0, "spec": "status=503@*/item/*", "hits": 30}]})

    assert running.control("DELETE", "/faults") == (200, {"cleared": 1})
    assert all(_get(proxy, f"http://api.test/item/{i}").status_code == 200
               for i in range(10))
    assert running.control("DELETE", "/requests") == (200, {"cleared": 40})
    assert running.control("GET", "/requests")[1]["requests"] == []

    status, refused = running.control("POST", "/sessions", {"cassette": "other"})
    assert status == 400 and "--workers 1" in refused["error"]
    named = requests.get("http://api.test/item/1", proxies={"http": proxy}, timeout=10,
                         headers={"Proxy-Authorization": "Basic b3RoZXI6"})  # "other:"
    assert named.status_code == 407 and b"--workers 1" in named.content
    status, denied = running.control("GET", "/faults", token="wrong")
    assert status == 401 and "token" in denied["error"]

    # a second serve --workers on the same port is refused, not silently sharing it
    port = proxy.rsplit(":", 1)[1]
    again = cli("serve", "-c", "load", "--cassette-dir", cassettes, "--workers", "2",
                "--port", port, env=cli_env)
    assert_clean_error(again, f"cannot listen on 127.0.0.1:{port}: the port is taken",
                       "--port 0")
    code, stderr = running.stop()
    assert code == 0, stderr


def test_a_worker_killed_mid_run_fails_the_serve(serve: Any):
    running = serve()
    proxy = running.env["HTTP_PROXY"]
    assert _get(proxy, "http://api.test/item/1").content == b"item 1"
    victim, survivor = running.pids
    os.kill(victim, signal.SIGKILL)
    assert running.bg.proc.wait(30) == 1  # serve notices and stops by itself
    stderr = running.err.read_text()
    assert f"worker 1 (PID {victim}) was killed by SIGKILL" in stderr
    assert "Traceback" not in stderr
    assert _wait_gone(survivor, 10), "the other worker was left running"


def test_no_worker_outlives_a_serve_killed_with_sigkill(serve: Any):
    running = serve()
    running.bg.proc.kill()
    running.bg.proc.wait(30)
    assert all(_wait_gone(pid, 15) for pid in running.pids), "a worker outlived serve"


def test_proxy_run_with_workers_in_python_keeps_sequences_per_worker(cassettes: Path,
                                                                     proxy_ca_dir: Path):
    run = ProxyRun("load", "none", cassette_dir=cassettes, ca_dir=proxy_ca_dir, workers=2,
                   strict=True)
    with run:
        assert run.engine_used == "fast"
        answers = [_get(run.proxy_url, f"http://api.test/item/{i % 3}") for i in range(24)]
        assert run.control_url is not None and run.control_token is not None
        status, answer = control_call(run.control_url, run.control_token, "GET", "/requests")
        assert status == 200
        log = answer["requests"]
        with pytest.raises(RuntimeError, match="use workers=1"):
            run.flush()
    # strict: each item is recorded once, so each worker answers it once (its own
    # sequence) and counts the repeats it takes as unmatched
    first: set[tuple[int, str]] = set()
    for sent, answer in zip(log, answers, strict=True):
        key = (sent["worker"], sent["url"])
        assert (sent["outcome"], answer.status_code) == (
            ("unmatched", 502) if key in first else ("replayed", 200)), sent
        first.add(key)
    assert {w for w, _ in first} == {1, 2}
    assert run.summary is not None
    assert (run.summary.requests, run.summary.replayed, run.summary.unmatched.total) == \
        (24, len(first), 24 - len(first))
    assert [n for n, _, s in run.worker_summaries if s.requests] == [1, 2]
    assert run.verdict(command=False).exit_code == 1  # unmatched requests


# -- what --workers refuses -------------------------------------------------------------


def _refused(cassettes: Path, cli_env: dict[str, str], *args: str) -> str:
    proc = cli("serve", "-c", "load", "--cassette-dir", cassettes, *args, env=cli_env)
    return assert_clean_error(proc, "--workers")


def test_workers_refuse_a_record_mode(cassettes: Path, cli_env: dict[str, str]):
    before = cassettes_file(cassettes.parent).read_bytes()
    line = _refused(cassettes, cli_env, "--workers", "2", "--record-mode", "all")
    assert "record mode all" in line and "--record-mode none" in line
    assert cassettes_file(cassettes.parent).read_bytes() == before
    assert list(cassettes.iterdir()) == [cassettes_file(cassettes.parent)]


def test_workers_refuse_the_mitmproxy_engine(cassettes: Path, cli_env: dict[str, str]):
    line = _refused(cassettes, cli_env, "--workers", "2", "--engine", "mitmproxy")
    assert "drop --engine mitmproxy" in line


def test_workers_refuse_zero(cassettes: Path, cli_env: dict[str, str]):
    line = _refused(cassettes, cli_env, "--workers", "0")
    assert "--workers 0: use 1" in line


def test_workers_refuse_more_than_the_machine_can_use(cassettes: Path,
                                                       cli_env: dict[str, str]):
    line = _refused(cassettes, cli_env, "--workers", "65")
    assert "--workers 65 is more than this machine can use: at most" in line


def test_workers_refuse_a_fault_the_fast_engine_cannot_carry_out(cassettes: Path,
                                                                 cli_env: dict[str, str]):
    line = _refused(cassettes, cli_env, "--workers", "2", "--fault", "ws_close=1000@*")
    assert "fast engine" in line and "'ws_close=1000@*'" in line and "--workers 1" in line


def test_workers_refuse_a_cassette_the_fast_engine_cannot_serve(tmp_path: Path,
                                                                cli_env: dict[str, str]):
    cdir = tmp_path / "h2"
    save_cassette(cassette_path(cdir, "load"), [Interaction(
        Request("GET", "https", "a.test", 443, "/", http_version="HTTP/2.0"),
        Response(200, http_version="HTTP/2.0"))])
    line = _refused(cdir, cli_env, "--workers", "2")
    assert "the cassette holds h2 records" in line and "--workers 1" in line
