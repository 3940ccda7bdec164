"""A corporate egress proxy: recording and drift reach upstreams through it, replay
never does.

The egress stand-in is a small threaded HTTP proxy on loopback: CONNECT tunnels and
absolute-form plain HTTP, optional Basic authentication, counting what it carries.
"""

from __future__ import annotations

import base64
import contextlib
import select
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from replayproxy.cassette.store import cassette_path, load_cassette
from replayproxy.model import RecordMode
from replayproxy.run import ProxyRun
from tests.integration.support import (
    JSON_BODY,
    CurlClient,
    Upstream,
    assert_clean_error,
    cli,
)


class _EgressHandler(socketserver.BaseRequestHandler):
    server: EgressServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(15)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                return
            head += chunk
        raw_head, _, rest = head.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = [tuple(h.split(":", 1)) for h in lines[1:] if ":" in h]
        auth = next((v.strip() for k, v in headers if k.lower() == "proxy-authorization"),
                    None)
        if self.server.credentials is not None and auth != self.server.credentials:
            self.server.count("refused")
            sock.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b"Proxy-Authenticate: Basic realm=\"egress\"\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            try:
                upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=15)
            except OSError:
                sock.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            self.server.count("tunnels", target)
            sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
        else:  # absolute-form: one request per connection, then close
            scheme, _, after = target.partition("://")
            netloc, slash, path = after.partition("/")
            host, _, port = netloc.rpartition(":")
            upstream = socket.create_connection((host, int(port or 80)), timeout=15)
            self.server.count("requests", netloc)
            kept = [f"{k}:{v}" for k, v in headers
                    if k.lower() not in ("proxy-authorization", "proxy-connection",
                                         "connection")]
            upstream.sendall(f"{method} /{path} {version}\r\n".encode("latin-1")
                             + "\r\n".join([*kept, "Connection: close"]).encode("latin-1")
                             + b"\r\n\r\n" + rest)
        with upstream:
            _relay(sock, upstream)


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    peers = {a: b, b: a}
    while True:
        ready, _, _ = select.select(list(peers), [], [], 15)
        if not ready:
            return
        for s in ready:
            try:
                data = s.recv(65536)
            except OSError:
                return
            if not data:
                return
            peers[s].sendall(data)


class EgressServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, credentials: tuple[str, str] | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _EgressHandler)
        self.tls = tls
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {"tunnels": 0, "requests": 0, "refused": 0}
        self.targets: list[str] = []
        self.credentials = None if credentials is None else "Basic " + base64.b64encode(
            ":".join(credentials).encode()).decode()

    def get_request(self) -> tuple[socket.socket, object]:
        sock, addr = self.socket.accept()
        if self.tls is not None:  # an https:// proxy: TLS to the proxy itself
            sock = self.tls.wrap_socket(sock, server_side=True)
        return sock, addr

    def handle_error(self, request: object, client_address: object) -> None:
        pass

    def count(self, what: str, target: str = "") -> None:
        with self.lock:
            self.counts[what] += 1
            if target:
                self.targets.append(target)


class Egress:
    """The egress stand-in, serving on its own thread; ``url`` is its proxy URL."""

    def __init__(self, credentials: tuple[str, str] | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.server = EgressServer(credentials, tls)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def tunnels(self) -> int:
        with self.server.lock:
            return self.server.counts["tunnels"]

    @property
    def requests(self) -> int:
        with self.server.lock:
            return self.server.counts["requests"]

    @property
    def refused(self) -> int:
        with self.server.lock:
            return self.server.counts["refused"]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


@pytest.fixture
def egress() -> Iterator[Egress]:
    server = Egress()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def auth_egress() -> Iterator[Egress]:
    server = Egress(("alice", "s3cret:pw"))
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def recording(name: str, mode: RecordMode, *, cassette_dir: Path, proxy_ca, upstream_ca,
              **kwargs) -> Iterator[ProxyRun]:
    with ProxyRun(name, mode, cassette_dir=cassette_dir, ca_dir=proxy_ca.directory,
                  upstream_ca=upstream_ca.pem, control=False, **kwargs) as run:
        yield run


def _curl(run: ProxyRun, tmp_path: Path) -> CurlClient:
    workdir = tmp_path / "curl"
    workdir.mkdir(exist_ok=True)
    return CurlClient(run.proxy_url, run.ca.bundle, workdir)


def _bodies(cassette_dir: Path, name: str) -> list[bytes]:
    return [it.response.body for it in load_cassette(cassette_path(cassette_dir, name))
            .interactions()]


# -- in-process: ProxyRun(upstream_proxy=...) -------------------------------------------


def test_recording_goes_through_the_egress_and_replay_never(
        upstream: Upstream, egress: Egress, proxy_ca, upstream_ca, cassette_dir, tmp_path,
        monkeypatch):
    """https through a CONNECT tunnel, and plain http (mitmproxy tunnels it too)."""
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with recording("eg", RecordMode.ALL, cassette_dir=cassette_dir, proxy_ca=proxy_ca,
                   upstream_ca=upstream_ca, upstream_proxy=egress.url) as run:
        assert run.egress is not None and run.egress.https is not None
        with _curl(run, tmp_path) as c:
            recorded = [c.get(upstream.url("/json")), c.get(upstream.url("/query?a=1"))]
    assert [r.status for r in recorded] == [200, 200]
    assert recorded[0].body == JSON_BODY
    assert egress.tunnels >= 1
    assert f"127.0.0.1:{upstream.port}" in egress.server.targets
    assert _bodies(cassette_dir, "eg") == [JSON_BODY, b"query=a=1"]

    tunnels, connections = egress.tunnels, upstream.connections
    with recording("eg", RecordMode.NONE, cassette_dir=cassette_dir, proxy_ca=proxy_ca,
                   upstream_ca=upstream_ca, upstream_proxy=egress.url) as run, \
            _curl(run, tmp_path) as c:
        replayed = c.get(upstream.url("/json"))
    assert replayed.body == JSON_BODY
    assert egress.tunnels == tunnels and egress.requests == 0
    assert upstream.connections == connections


def test_no_proxy_hosts_go_direct(https_upstream, egress, proxy_ca, upstream_ca,
                                  cassette_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "example.com, 127.0.0.1")
    with recording("np", RecordMode.ALL, cassette_dir=cassette_dir, proxy_ca=proxy_ca,
                   upstream_ca=upstream_ca, upstream_proxy=egress.url) as run, \
            _curl(run, tmp_path) as c:
        assert c.get(https_upstream.url("/json")).body == JSON_BODY
    assert egress.tunnels == 0 and egress.requests == 0
    assert https_upstream.hits("/json") == 1


def test_credentials_in_the_proxy_url_authenticate_to_the_egress(
        https_upstream, auth_egress, proxy_ca, upstream_ca, cassette_dir, tmp_path,
        monkeypatch):
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    url = auth_egress.url.replace("http://", "http://alice:s3cret%3Apw@")
    with recording("auth", RecordMode.ALL, cassette_dir=cassette_dir, proxy_ca=proxy_ca,
                   upstream_ca=upstream_ca, upstream_proxy=url) as run, \
            _curl(run, tmp_path) as c:
        assert c.get(https_upstream.url("/json")).body == JSON_BODY
    assert auth_egress.tunnels == 1 and auth_egress.refused == 0
    data = cassette_path(cassette_dir, "auth").read_bytes()
    assert b"alice" not in data and b"s3cret" not in data


def test_wrong_credentials_are_the_egress_refusal(https_upstream, auth_egress, proxy_ca,
                                                  upstream_ca, cassette_dir, tmp_path,
                                                  monkeypatch):
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with recording("bad", RecordMode.ALL, cassette_dir=cassette_dir, proxy_ca=proxy_ca,
                   upstream_ca=upstream_ca, upstream_proxy=auth_egress.url) as run, \
            _curl(run, tmp_path) as c:
        answer = c.get(https_upstream.url("/json"))
    assert answer.status == 502
    assert b"refused HTTP CONNECT request: 407" in answer.body
    assert auth_egress.refused == 1 and https_upstream.total_requests == 0


def test_an_https_egress_proxy(https_upstream, upstream_ca, proxy_ca, cassette_dir,
                               tmp_path, monkeypatch):
    """TLS to the proxy itself, verified with the same trust as upstreams."""
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    tls_egress = Egress(tls=upstream_ca.server_context)
    try:
        assert tls_egress.url.startswith("https://")
        with recording("tls", RecordMode.ALL, cassette_dir=cassette_dir, proxy_ca=proxy_ca,
                       upstream_ca=upstream_ca, upstream_proxy=tls_egress.url) as run, \
                _curl(run, tmp_path) as c:
            assert c.get(https_upstream.url("/json")).body == JSON_BODY
        assert tls_egress.tunnels == 1
    finally:
        tls_egress.stop()


# -- the CLI: the egress from replayproxy's own environment ------------------------------


def _cli_record(cli_env, tmp_path, upstream_ca, url, *extra, **env):
    return cli("record", "-c", "cli", "--cassette-dir", tmp_path / "cassettes",
               "--upstream-ca", upstream_ca.pem, *extra, "--", "curl", "-sS", "--max-time",
               "30", url, env={**cli_env, **env}, cwd=tmp_path)


def test_cli_records_through_https_proxy_of_its_environment(https_upstream, egress,
                                                            cli_env, upstream_ca, tmp_path):
    proc = _cli_record(cli_env, tmp_path, upstream_ca, https_upstream.url("/json"),
                       HTTPS_PROXY=egress.url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.encode() == JSON_BODY
    assert egress.tunnels == 1
    assert f"upstream proxy {egress.url} for https (from HTTPS_PROXY)" in proc.stderr
    assert _bodies(tmp_path / "cassettes", "cli") == [JSON_BODY]

    # replay with the egress still set: offline, nothing through it
    https_upstream.stop()
    rep = cli("replay", "-c", "cli", "--cassette-dir", tmp_path / "cassettes", "--",
              "curl", "-sS", https_upstream.url("/json"),
              env={**cli_env, "HTTPS_PROXY": egress.url}, cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout.encode() == JSON_BODY
    assert egress.tunnels == 1


def test_cli_upstream_proxy_overrides_the_environment(https_upstream, egress, cli_env,
                                                      upstream_ca, tmp_path):
    dead = "http://127.0.0.1:9"
    proc = _cli_record(cli_env, tmp_path, upstream_ca, https_upstream.url("/json"),
                       "--upstream-proxy", egress.url, https_proxy=dead)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.encode() == JSON_BODY and egress.tunnels == 1
    assert f"upstream proxy {egress.url} for https+http\n" in proc.stderr

    direct = _cli_record(cli_env, tmp_path, upstream_ca, https_upstream.url("/json"),
                         "--upstream-proxy", "none", https_proxy=dead, HTTP_PROXY=dead)
    assert direct.returncode == 0, direct.stderr
    assert direct.stdout.encode() == JSON_BODY and egress.tunnels == 1
    assert "upstream proxy" not in direct.stderr


def test_cli_no_proxy_of_its_environment(https_upstream, egress, cli_env, upstream_ca,
                                         tmp_path):
    proc = _cli_record(cli_env, tmp_path, upstream_ca, https_upstream.url("/json"),
                       HTTPS_PROXY=egress.url, no_proxy="localhost,127.0.0.0/8")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.encode() == JSON_BODY and egress.tunnels == 0


# -- drift -------------------------------------------------------------------------------


def test_drift_goes_through_the_egress(upstream, egress, cli_env, upstream_ca, tmp_path):
    """https through a CONNECT tunnel, plain http as an absolute-form request."""
    proc = _cli_record(cli_env, tmp_path, upstream_ca, upstream.url("/json"))
    assert proc.returncode == 0, proc.stderr
    assert egress.tunnels == 0
    drift = cli("drift", "-c", "cli", "--cassette-dir", tmp_path / "cassettes",
                "--upstream-ca", upstream_ca.pem, "--no-history", "--no-repeat",
                env={**cli_env, "HTTPS_PROXY": egress.url, "HTTP_PROXY": egress.url},
                cwd=tmp_path)
    assert drift.returncode == 0, drift.stdout + drift.stderr
    assert f"replayproxy: upstream proxy {egress.url} for https (from HTTPS_PROXY), " \
        f"{egress.url} for http (from HTTP_PROXY)" in drift.stderr
    assert egress.server.targets == [f"127.0.0.1:{upstream.port}"]
    assert (egress.tunnels, egress.requests) == ((1, 0) if upstream.scheme == "https"
                                                 else (0, 1))
    assert upstream.hits("/json") == 2


def test_drift_honours_no_proxy_and_upstream_proxy_none(https_upstream, egress, cli_env,
                                                        upstream_ca, tmp_path):
    assert _cli_record(cli_env, tmp_path, upstream_ca, https_upstream.url("/json")
                       ).returncode == 0

    def drift(*extra: str, **env: str):
        return cli("drift", "-c", "cli", "--cassette-dir", tmp_path / "cassettes",
                   "--upstream-ca", upstream_ca.pem, "--no-history", "--no-repeat", *extra,
                   env={**cli_env, **env}, cwd=tmp_path)

    assert drift(HTTPS_PROXY=egress.url, NO_PROXY="127.0.0.1").returncode == 0
    assert drift("--upstream-proxy", "none", HTTPS_PROXY="http://127.0.0.1:9").returncode == 0
    assert egress.tunnels == 0
    assert drift("--upstream-proxy", egress.url, HTTPS_PROXY="http://127.0.0.1:9"
                 ).returncode == 0
    assert egress.tunnels == 1


# -- bad input: one line, non-zero, before the command starts ---------------------------


@pytest.mark.parametrize(("value", "needle"), [
    ("egress.corp:3128", "no scheme"),
    ("socks5://127.0.0.1:1080", "unsupported scheme 'socks5'"),
    ("http://", "no host"),
    ("http://egress:notaport", "bad port"),
])
def test_bad_upstream_proxy(value, needle, cli_env, tmp_path):
    marker = tmp_path / "started"
    proc = cli("record", "-c", "x", "--cassette-dir", tmp_path / "c", "--upstream-proxy",
               value, "--", "touch", marker, env=cli_env, cwd=tmp_path)
    line = assert_clean_error(proc, "--upstream-proxy", needle, "http://HOST:PORT")
    assert "--upstream-proxy none" in line
    assert proc.returncode == 2 and not marker.exists()


def test_unusable_proxy_variable_names_the_variable(cli_env, tmp_path):
    marker = tmp_path / "started"
    proc = cli("record", "-c", "x", "--cassette-dir", tmp_path / "c", "--", "touch",
               marker, env={**cli_env, "HTTPS_PROXY": "socks5h://127.0.0.1:1080"},
               cwd=tmp_path)
    assert_clean_error(proc, "invalid HTTPS_PROXY", "unsupported scheme",
                       "--upstream-proxy none")
    assert not marker.exists()


def test_slow_body_fault_while_recording_through_the_egress(https_upstream, egress, proxy_ca,
                                                            upstream_ca, cassette_dir,
                                                            tmp_path, monkeypatch):
    """The live copy goes through the egress; the trickle server (loopback, ours) not."""
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with recording("slow", RecordMode.ALL, cassette_dir=cassette_dir, proxy_ca=proxy_ca,
                   upstream_ca=upstream_ca, upstream_proxy=egress.url,
                   faults=["slow_body=64kb/s@*/json"]) as run, _curl(run, tmp_path) as c:
        answer = c.get(https_upstream.url("/json"))
    assert answer.status == 200 and answer.body == JSON_BODY
    assert egress.server.targets == [f"127.0.0.1:{https_upstream.port}"]
    assert _bodies(cassette_dir, "slow") == [JSON_BODY]
