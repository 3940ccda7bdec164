"""Slowloris clients, idle floods and the connection cap, against the real proxy (#16).

Each test starts the proxy with tiny ``[limits]`` from a configuration file, attacks it
with raw sockets on 127.0.0.1, and checks what a user sees: the attacking connections
are closed by the proxy (a read returns end-of-file or the connection is reset) while an
ordinary client keeps getting its answers.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from replayproxy.model import RecordMode
from tests.integration.support import Upstream, assert_clean_error, cli, write_config


def _config(tmp_path: Path, **limits: object) -> Path:
    lines = "\n".join(f"{k} = {v!r}" for k, v in limits.items())
    return write_config(tmp_path, "faults = ['timeout=6s@GET */held']\n"
                        f"[tool.replayproxy.limits]\n{lines}\n")


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _closed_by_proxy(sock: socket.socket, within: float) -> bool:
    """Whether the proxy closes ``sock`` (end of file or reset) within ``within`` s;
    what it still sends before (the rest of an answer) is read and dropped."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(65536) == b"":
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
    return False


def _closed_now(sock: socket.socket) -> bool:
    """Whether the proxy has closed ``sock`` already (without waiting)."""
    return _closed_by_proxy(sock, 0.05)


@contextlib.contextmanager
def _sockets(url: str, n: int) -> Iterator[list[socket.socket]]:
    socks = [_connect(url) for _ in range(n)]
    try:
        yield socks
    finally:
        for s in socks:
            s.close()


class _Slowloris(threading.Thread):
    """Sends a request header one byte every ``every`` seconds, never finishing it;
    ``closed_after`` is set when the proxy closes the connection."""

    def __init__(self, url: str, upstream: Upstream, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.sock = _connect(url)
        self.data = (f"GET {upstream.url('/json')} HTTP/1.1\r\nHost: {upstream.host}\r\n"
                     + "X-Padding: " + "a" * 400).encode()
        self.every = every
        self.sent = 0
        self.closed_after: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        try:
            for byte in self.data:  # bounded: 400-odd bytes, far more than the timeout
                if self.stop.wait(self.every):
                    return
                self.sock.sendall(bytes([byte]))
                self.sent += 1
        except OSError:
            self.closed_after = time.monotonic() - start
        finally:
            self.sock.close()


def test_slowloris_clients_are_closed_while_others_are_served(run_proxy, http_upstream,
                                                              tmp_path):
    config = _config(tmp_path, header_timeout="1s", idle_timeout="60s")
    with run_proxy("slow", RecordMode.ALL, config=config) as p:
        client = p.client("requests")
        attackers = [_Slowloris(p.url, http_upstream) for _ in range(5)]
        for a in attackers:
            a.start()
        served = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(a.closed_after is None for a in attackers):
            assert client.request("GET", http_upstream.url("/json")).status == 200
            served += 1
            time.sleep(0.1)
        for a in attackers:
            a.stop.set()
            a.join(5)
    # every slow client was cut off after about the header timeout, while still sending
    assert all(a.closed_after is not None for a in attackers), [a.sent for a in attackers]
    assert all(a.closed_after < 10 for a in attackers)  # type: ignore[operator]
    assert all(0 < a.sent < len(a.data) for a in attackers)
    assert served >= 3  # and the ordinary client was answered all along


def test_idle_connections_are_closed_after_the_idle_timeout(run_proxy, http_upstream,
                                                            tmp_path):
    config = _config(tmp_path, header_timeout="60s", idle_timeout="1s")
    with run_proxy("idle", RecordMode.ALL, config=config) as p, _sockets(p.url, 5) as idle:
        # a keep-alive connection that had one exchange, then went quiet
        used = _connect(p.url)
        used.sendall(f"GET {http_upstream.url('/json')} HTTP/1.1\r\n"
                     f"Host: {http_upstream.host}\r\n\r\n".encode())
        assert used.recv(4096).startswith(b"HTTP/1.1 200")
        # a request in progress longer than the idle timeout is not cut (a held fault)
        held = _connect(p.url)
        held.sendall(f"GET {http_upstream.url('/held')} HTTP/1.1\r\n"
                     f"Host: {http_upstream.host}\r\n\r\n".encode())
        assert not _closed_by_proxy(held, 2.5)
        assert all(_closed_by_proxy(s, 10) for s in idle)
        assert _closed_by_proxy(used, 10)
        assert p.client("curl").request("GET", http_upstream.url("/json")).status == 200
        held.close()
        used.close()


def test_an_idle_flood_does_not_lock_clients_out(run_proxy, http_upstream, tmp_path):
    """At the cap, the connection that has waited longest makes room for a new one."""
    config = _config(tmp_path, max_connections=8, idle_timeout="60s")
    with run_proxy("flood", RecordMode.ALL, config=config) as p, _sockets(p.url, 40) as flood:
        for _ in range(3):
            assert p.client("curl").request("GET", http_upstream.url("/json")).status == 200
        time.sleep(0.5)
        still_open = [s for s in flood if not _closed_now(s)]
        assert len(still_open) <= 8
        # the most recent ones are kept, the oldest were closed
        assert not _closed_now(flood[-1])
        assert _closed_now(flood[0])


def test_at_the_cap_with_every_connection_busy_a_new_one_is_refused(run_proxy, http_upstream,
                                                                     tmp_path, caplog):
    config = _config(tmp_path, max_connections=8, idle_timeout="60s")
    with run_proxy("busy", RecordMode.ALL, config=config) as p, _sockets(p.url, 8) as busy:
        for s in busy:
            s.sendall(f"GET {http_upstream.url('/held')} HTTP/1.1\r\n"
                      f"Host: {http_upstream.host}\r\n\r\n".encode())
        time.sleep(1.5)  # the eight requests are held by the timeout fault
        extra = _connect(p.url)
        assert _closed_by_proxy(extra, 5)
        extra.close()
        assert not any(_closed_now(s) for s in busy)
        # once the held requests end (the fault gives up after 6 s) there is room again
        for s in busy:
            assert _closed_by_proxy(s, 15)
        assert p.client("curl").request("GET", http_upstream.url("/json")).status == 200
    assert "refused 1 connection(s)" in caplog.text


@pytest.mark.parametrize("text, problem", [
    ("header_timeout = 0", "header_timeout"),
    ("idle_timeout = 'soon'", "idle_timeout"),
    ("max_connections = 0", "max_connections"),
    ("max_connections = 'many'", "max_connections"),
    ("max_conections = 5", "unknown setting"),
])
def test_bad_limits_are_one_line_errors(tmp_path, cli_env, text, problem):
    config = write_config(tmp_path, f"[tool.replayproxy.limits]\n{text}\n")
    proc = cli("replay", "-c", "x", "--config", config, "--", "true", env=cli_env,
               cwd=tmp_path)
    assert_clean_error(proc, problem, "[tool.replayproxy.limits]")
