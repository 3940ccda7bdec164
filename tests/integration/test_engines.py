"""The two engines side by side: the same cassette and faults give the same bytes on the
wire; which engine a run gets and why; the fast engine against bad input.

The byte-level comparisons send identical raw HTTP/1.1 requests (each on its own
connection, ``Connection: close``) to each engine and compare everything that comes
back: status line, headers in order and case, body bytes, and whether the connection
was dropped. The rest of the integration suite runs replay on the fast engine (the
default), with curl, requests and httpx.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from replayproxy.errors import ConfigError
from replayproxy.model import RecordMode
from tests.integration.conftest import ProxyFactory, RunningProxy
from tests.integration.support import (
    JSON_BODY,
    CurlClient,
    Upstream,
    cli,
    offline,
)

PATHS = ["/json", "/gzip", "/png", "/headers", "/status/404", "/query?a=1&b=2",
         "/poll?id=7", "/poll?id=7"]
"""What is recorded (with curl), in order; /poll twice is a recorded sequence. (A
chunked response is recorded as a stream, with its pacing: mitmproxy replays those.)"""


def _request(method: str, target: str, host: str, *, body: bytes = b"",
             headers: tuple[str, ...] = ()) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "User-Agent: conformance/1",
             "Accept: */*", *headers, "Connection: close"]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _read_all(sock: socket.socket | ssl.SSLSocket, timeout: float = 10) -> tuple[bytes, str]:
    """Everything until the server closes, and how it closed ("eof" or an error name)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, ssl.SSLError, ssl.SSLEOFError) as e:
        return data, type(e).__name__
    return data, "eof"


def _connect(proxy: tuple[str, int], upstream: Upstream) -> socket.socket | ssl.SSLSocket:
    """A connection that reaches ``upstream`` through the proxy: plain, or a CONNECT
    tunnel with TLS offering HTTP/1.1 only (so both engines speak the same protocol)."""
    sock = socket.create_connection(proxy, timeout=10)
    if upstream.scheme == "http":
        return sock
    sock.sendall(f"CONNECT {upstream.host}:{upstream.port} HTTP/1.1\r\n"
                 f"Host: {upstream.host}:{upstream.port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "the proxy closed the tunnel"
        head += chunk
    assert head.split(b" ", 2)[1] == b"200", head
    return sock


def _wrap(sock: socket.socket, ca: Path, host: str, alpn: list[str]) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(alpn)
    return context.wrap_socket(sock, server_hostname=host)


def _exchange(p: RunningProxy, upstream: Upstream, raw: bytes) -> tuple[bytes, str]:
    address = p.run.proxy.proxy_address
    assert address is not None
    sock = _connect(address, upstream)
    if upstream.scheme == "https":
        sock = _wrap(sock, p.run.proxy.ca.bundle, upstream.host, ["http/1.1"])
    with sock:
        sock.sendall(raw)
        return _read_all(sock)


def _record(run_proxy: ProxyFactory, upstream: Upstream, name: str) -> None:
    """Record with curl over HTTP/1.1 (an HTTP/2 recording replays on mitmproxy, over
    HTTP/2: see ``engines.choice``)."""
    h1 = ("--http1.1",)
    with run_proxy(name, RecordMode.ALL) as p, p.client("curl") as c:
        assert isinstance(c, CurlClient)
        for path in PATHS:
            c.request("GET", upstream.url(path), extra=h1)
        c.request("HEAD", upstream.url("/json"), extra=("-I", *h1))
        c.request("POST", upstream.url("/echo"), body=b'{"n": 1}',
                  headers={"Content-Type": "application/json"}, extra=h1)


def _replay_wire(run_proxy: ProxyFactory, upstream: Upstream, name: str, engine: str
                 ) -> tuple[str, list[tuple[bytes, str]]]:
    host = f"{upstream.host}:{upstream.port}"
    target = upstream.base_url if upstream.scheme == "http" else ""
    raws = [_request("GET", target + path, host) for path in PATHS]
    raws += [_request("HEAD", target + "/json", host),
             _request("POST", target + "/echo", host, body=b'{"n": 1}',
                      headers=("Content-Type: application/json",)),
             _request("GET", target + "/unknown", host),
             _request("GET", target + "/unknown", host, headers=("Accept: application/json",))]
    with offline(upstream), run_proxy(name, RecordMode.NONE, engine=engine) as p:
        got = [_exchange(p, upstream, raw) for raw in raws]
    assert p.run.engine_used == engine
    assert p.summary is not None and p.summary.replayed == len(PATHS) + 2
    return engine, got


def test_both_engines_send_the_same_bytes(upstream: Upstream, run_proxy: ProxyFactory,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """Plain HTTP and CONNECT + TLS: every recorded response, a HEAD, a POST, a
    recorded sequence, and the unmatched answers (text and JSON) are byte-identical."""
    _record(run_proxy, upstream, "wire")
    _, mitm = _replay_wire(run_proxy, upstream, "wire", "mitmproxy")
    _, fast = _replay_wire(run_proxy, upstream, "wire", "fast")
    for i, (a, b) in enumerate(zip(mitm, fast, strict=True)):
        assert a == b, f"request #{i + 1} differs:\nmitmproxy: {a!r}\nfast:      {b!r}"
    assert mitm[0][0].startswith(b"HTTP/1.1 200 OK\r\n") and mitm[0][0].endswith(JSON_BODY)
    assert b"pending" in mitm[6][0] and b"done" in mitm[7][0]  # the sequence, in order
    assert mitm[-2][0].startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b'"error": "unmatched"' in mitm[-1][0]


FAULTS = ["status=503,first=1@GET */json", "rate_limit=1/s,burst=1@GET */query*",
          "truncate,bytes=5@GET */png", "corrupt=json@GET */gzip", "reset@GET */status/404",
          "corrupt=random@GET */headers"]


def test_both_engines_carry_out_faults_alike(http_upstream: Upstream,
                                             run_proxy: ProxyFactory,
                                             fault_proxy_factory: ProxyFactory) -> None:
    """status, rate_limit, truncate, corrupt (json, random, through gzip) and reset give
    the same bytes and the same dropped connections on both engines."""
    _record(run_proxy, http_upstream, "faults")
    results = {}
    for engine in ("mitmproxy", "fast"):
        with fault_proxy_factory("faults", RecordMode.NONE, FAULTS, engine) as p:
            target = http_upstream.base_url
            host = f"{http_upstream.host}:{http_upstream.port}"
            results[engine] = [
                _exchange(p, http_upstream, _request("GET", target + path, host))
                for path in [*PATHS[:7], "/json", "/query?a=1&b=2"]]
    mitm, fast = results["mitmproxy"], results["fast"]
    for i, (a, b) in enumerate(zip(mitm, fast, strict=True)):
        assert a == b, f"request #{i + 1} differs:\nmitmproxy: {a!r}\nfast:      {b!r}"
    assert mitm[0][0].startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert mitm[4][0] == b""  # reset: no answer at all
    assert mitm[7][0].startswith(b"HTTP/1.1 200 OK\r\n")  # first=1: only the first /json
    assert mitm[8][0].startswith(b"HTTP/1.1 429 \r\n")


@pytest.fixture
def fault_proxy_factory(proxy_ca, upstream_ca, cassette_dir: Path,
                        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> ProxyFactory:
    """``run_proxy`` with fault rules: ``(name, mode, faults, engine)``."""
    import contextlib

    from replayproxy.config import Settings
    from replayproxy.run import ProxyRun
    from tests.integration.conftest import serving

    @contextlib.contextmanager
    def factory(name: str, mode: RecordMode, faults: list[str], engine: str
                ) -> Iterator[RunningProxy]:
        run = ProxyRun(name, mode, cassette_dir=cassette_dir, settings=Settings(),
                       faults=faults, upstream_ca=upstream_ca.pem, ca_dir=proxy_ca.directory,
                       control=False, upstream_proxy="none", engine=engine)
        rp = RunningProxy(run, tmp_path)
        with serving(rp, caplog):
            yield rp

    return factory


# -- which engine -------------------------------------------------------------------------


def test_replay_runs_on_the_fast_engine_and_recording_on_mitmproxy(
        http_upstream: Upstream, run_proxy: ProxyFactory) -> None:
    with run_proxy("choice", RecordMode.ONCE) as p, p.client("requests") as c:
        assert c.get(http_upstream.url("/json")).body == JSON_BODY
    assert (p.run.engine_used, p.run.engine_reason) == (
        "mitmproxy", "record mode all sends requests upstream")
    with run_proxy("choice", RecordMode.NEW_EPISODES) as p:
        pass
    assert p.run.engine_used == "mitmproxy"
    assert p.run.engine_reason == "record mode new_episodes sends requests upstream"
    with run_proxy("choice", RecordMode.ONCE) as p, p.client("httpx") as c:
        assert c.get(http_upstream.url("/json")).body == JSON_BODY
    assert (p.run.engine_used, p.run.engine_reason) == (
        "fast", "replay only, nothing it cannot serve")
    with run_proxy("choice", RecordMode.NONE, engine="mitmproxy") as p:
        pass
    assert (p.run.engine_used, p.run.engine_reason) == ("mitmproxy", "asked for")


def test_fast_engine_refuses_a_run_it_cannot_serve(run_proxy: ProxyFactory) -> None:
    with pytest.raises(ConfigError, match="fast cannot serve this run: record mode all"), \
            run_proxy("forced", RecordMode.ALL, engine="fast"):
        pass


def test_start_line_names_the_engine_and_why(http_upstream: Upstream, cli_env: dict[str, str],
                                             tmp_path: Path) -> None:
    cassettes = tmp_path / "cl"
    url = http_upstream.url("/json")
    record = cli("record", "-c", "line", "-d", cassettes, "--", "curl", "-sf", url,
                 env=cli_env)
    assert record.returncode == 0, record.stderr
    assert "on the mitmproxy engine (record mode all sends requests upstream) via proxy" \
        in record.stderr
    replay = cli("replay", "-c", "line", "-d", cassettes, "--", "curl", "-sf", url,
                 env=cli_env)
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout.encode() == JSON_BODY
    assert "replaying (offline) cassette" in replay.stderr
    assert "on the fast engine (replay only, nothing it cannot serve) via proxy" \
        in replay.stderr
    forced = cli("replay", "-c", "line", "-d", cassettes, "--engine", "mitmproxy", "--",
                 "curl", "-sf", url, env=cli_env)
    assert forced.returncode == 0, forced.stderr
    assert "on the mitmproxy engine (asked for)" in forced.stderr
    wrong = cli("record", "-c", "line", "-d", cassettes, "--engine", "fast", "--", "true",
                env=cli_env)
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert "--engine fast cannot serve this run: record mode all sends requests upstream; " \
        "use --engine mitmproxy" in wrong.stderr


# -- protocols ------------------------------------------------------------------------------


def test_a_client_offering_h2_gets_http11_and_the_right_answers(
        https_upstream: Upstream, run_proxy: ProxyFactory) -> None:
    _record(run_proxy, https_upstream, "h2")
    with run_proxy("h2", RecordMode.NONE) as p:
        assert p.run.engine_used == "fast"
        address = p.run.proxy.proxy_address
        assert address is not None
        tls = _wrap(_connect(address, https_upstream), p.run.proxy.ca.bundle,
                    https_upstream.host, ["h2", "http/1.1"])
        with tls:
            assert tls.selected_alpn_protocol() == "http/1.1"
        client = httpx.Client(proxy=p.url, http2=True, trust_env=False,
                              verify=ssl.create_default_context(cafile=str(p.proxy.ca.bundle)))
        with client:
            r = client.get(https_upstream.url("/json"))
            assert (r.http_version, r.status_code, r.content) == ("HTTP/1.1", 200, JSON_BODY)
            polls = [client.get(https_upstream.url("/poll?id=7")).json() for _ in range(2)]
            assert polls == [{"status": "pending"}, {"status": "done"}]


# -- bad input ------------------------------------------------------------------------------


@pytest.fixture
def fast(http_upstream: Upstream, run_proxy: ProxyFactory) -> Iterator[RunningProxy]:
    """A fast-engine replay of /json, for the bad-input tests."""
    with run_proxy("bad", RecordMode.ALL) as p, p.client("curl") as c:
        c.get(http_upstream.url("/json"))
    with run_proxy("bad", RecordMode.NONE, engine="fast") as p:
        yield p


def _raw(p: RunningProxy, data: bytes, *, close: bool = False) -> tuple[bytes, str]:
    address = p.run.proxy.proxy_address
    assert address is not None
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(data)
        if close:
            sock.shutdown(socket.SHUT_WR)
        return _read_all(sock)


def _still_serves(p: RunningProxy, upstream: Upstream) -> None:
    with p.client("requests") as c:
        got = c.get(upstream.url("/json"))
    assert (got.status, got.body) == (200, JSON_BODY)


def test_malformed_request_line_gets_400_and_close(fast: RunningProxy,
                                                   http_upstream: Upstream) -> None:
    data, how = _raw(fast, b"GET\x00/ nonsense here HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and how == "eof"
    assert b"malformed request line" in data
    _still_serves(fast, http_upstream)


def test_oversized_headers_get_431(fast: RunningProxy, http_upstream: Upstream) -> None:
    huge = b"GET http://127.0.0.1/json HTTP/1.1\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    data, how = _raw(fast, huge)
    assert data.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert how in ("eof", "ConnectionResetError")  # the rest of what we sent is unread
    _still_serves(fast, http_upstream)


def test_absurd_content_length_gets_413(fast: RunningProxy, http_upstream: Upstream) -> None:
    data, how = _raw(fast, f"POST {http_upstream.url('/json')} HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: 99999999999999999999\r\n\r\nabc".encode())
    assert data.startswith(b"HTTP/1.1 413 Payload Too Large\r\n") and how == "eof"
    _still_serves(fast, http_upstream)


def test_tls_garbage_after_connect_is_dropped(fast: RunningProxy,
                                              http_upstream: Upstream) -> None:
    garbage = b"\x16\x03\x01\x00\x05" + b"\xff" * 300
    data, how = _raw(fast, b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n"
                     b"\r\n" + garbage)
    assert data.startswith(b"HTTP/1.1 200 Connection established\r\n\r\n")
    # the TLS layer may send an alert before it drops the connection; never HTTP
    assert b"HTTP/1.1" not in data[len(b"HTTP/1.1 200 Connection established\r\n\r\n"):]
    assert how in ("eof", "ConnectionResetError")
    _still_serves(fast, http_upstream)
    assert fast.session.summary.client_refusals == []  # garbage is not a refusal


def test_client_disconnecting_mid_request_leaves_others_served(
        fast: RunningProxy, http_upstream: Upstream) -> None:
    address = fast.run.proxy.proxy_address
    assert address is not None
    # half a head and half a body, each left open while another client is served
    halves = [b"GET http://127.0.0.1/json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Par",
              f"POST {http_upstream.url('/json')} HTTP/1.1\r\nHost: x\r\n"
              "Content-Length: 100\r\n\r\nonly-part".encode()]
    socks = []
    for half in halves:
        s = socket.create_connection(address, timeout=10)
        s.sendall(half)
        socks.append(s)
    _still_serves(fast, http_upstream)
    for s in socks:
        s.close()
    time.sleep(0.2)
    _still_serves(fast, http_upstream)
    assert fast.session.summary.requests == 2  # the halves were never asked about


def test_pipelined_requests_are_answered_in_order(fast: RunningProxy,
                                                  http_upstream: Upstream) -> None:
    url = http_upstream.url("/json")
    one = f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    chunked = (f"POST {url} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               "3\r\nabc\r\n0\r\n\r\n").encode()
    last = f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    data, how = _raw(fast, one + chunked + last)
    assert how == "eof"
    assert data.count(b"HTTP/1.1 200 OK\r\n") == 2 and data.count(JSON_BODY) == 2
    assert data.count(b"HTTP/1.1 502 Bad Gateway\r\n") == 1  # the POST was never recorded
    assert data.index(b"502 Bad") > data.index(JSON_BODY)
    assert fast.session.summary.unmatched.total == 1


def test_other_clients_are_served_while_one_is_held(http_upstream: Upstream,
                                                    run_proxy: ProxyFactory,
                                                    fault_proxy_factory: ProxyFactory,
                                                    ) -> None:
    """A held request (timeout fault) blocks neither the engine nor other clients."""
    _record(run_proxy, http_upstream, "held")
    with fault_proxy_factory("held", RecordMode.NONE, ["timeout,max=3s@GET */png"],
                             "fast") as p:
        result: list[tuple[bytes, str]] = []
        host = f"{http_upstream.host}:{http_upstream.port}"
        held = threading.Thread(target=lambda: result.append(_exchange(
            p, http_upstream, _request("GET", http_upstream.url("/png"), host))))
        held.start()
        time.sleep(0.3)
        start = time.monotonic()
        data, _ = _exchange(p, http_upstream, _request("GET", http_upstream.url("/json"), host))
        assert data.endswith(JSON_BODY)
        assert time.monotonic() - start < 2.0  # not behind the held one (held 3 s)
        held.join(10)
    assert result == [(b"", "eof")]


def test_plain_http_through_connect_sent_without_waiting(fast: RunningProxy,
                                                         http_upstream: Upstream) -> None:
    """A client that sends its request right behind the CONNECT gets one answer."""
    authority = f"{http_upstream.host}:{http_upstream.port}"
    data, how = _raw(fast, f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
                     f"GET /json HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
                     .encode())
    assert data.startswith(b"HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert data.count(JSON_BODY) == 1 and how == "eof"
    assert fast.session.summary.replayed == 1


def test_fast_engine_serves_replaying_sessions_and_refuses_a_recording_one(
        http_upstream: Upstream, run_proxy: ProxyFactory, proxy_ca, tmp_path: Path) -> None:
    """Named sessions (the proxy URL's user name) on the fast engine: a replaying one is
    served from its own cassette; one opened to record is answered 502 naming the fix."""

    from replayproxy import ProxyRun
    from tests.integration.test_sessions import control, curl

    with run_proxy("alpha", RecordMode.ALL) as p, p.client("curl") as c:
        c.get(http_upstream.url("/json"))
    with run_proxy("main", RecordMode.ALL) as p, p.client("curl") as c:
        c.get(http_upstream.url("/json"))
    cdir = p.run.cassette_dir
    with offline(http_upstream), ProxyRun("main", "none", cassette_dir=cdir,
                                          ca_dir=proxy_ca.directory) as run:
        assert run.engine_used == "fast"
        code, body, err = curl(run.session_url("alpha"), proxy_ca.bundle,
                               http_upstream.url("/json"))
        assert code == 0 and body.encode() == JSON_BODY, err
        status, _ = control(run, "POST", "/sessions", {"cassette": "rec", "mode": "all"})
        assert status == 201
        code, body, err = curl(run.session_url("rec"), proxy_ca.bundle,
                               http_upstream.url("/json"), "-i")
        assert body.startswith("HTTP/1.1 502") and "--engine mitmproxy" in body
    assert run.session_summaries["alpha"].replayed == 1
    with ProxyRun(None, "none", cassette_dir=cdir, ca_dir=proxy_ca.directory,
                  control=False) as run:
        assert (run.engine_used, run.engine_reason) == (
            "mitmproxy", "a proxy of named sessions only, whose cassettes are not known yet")


def test_fast_engine_applies_the_connection_limits(run_proxy: ProxyFactory,
                                                   http_upstream: Upstream,
                                                   tmp_path: Path) -> None:
    """[limits] on the fast engine: a slowloris client and an idle connection are closed
    after their timeouts while an ordinary client is served."""
    from tests.integration.test_connection_limits import (
        _closed_by_proxy,
        _config,
        _connect,
        _Slowloris,
    )

    config = _config(tmp_path, header_timeout="1s", idle_timeout="2s")
    with run_proxy("limits", RecordMode.ALL, config=config) as p, p.client("curl") as c:
        c.get(http_upstream.url("/json"))
    with run_proxy("limits", RecordMode.NONE, config=config, engine="fast") as p:
        slow = _Slowloris(p.url, http_upstream)
        idle = _connect(p.url)
        slow.start()
        with p.client("requests") as client:
            for _ in range(5):
                assert client.request("GET", http_upstream.url("/json")).body == JSON_BODY
                time.sleep(0.2)
        assert _closed_by_proxy(idle, within=10)
        slow.join(15)
        idle.close()
    assert slow.closed_after is not None and slow.closed_after < 10
    assert 0 < slow.sent < len(slow.data)
