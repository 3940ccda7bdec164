"""Real parts for the integration tests: a local upstream, clients, the CLI.

Nothing here mocks replayproxy. The upstream is a stdlib threaded HTTP server, over
real TLS with a ``trustme`` CA (or plain HTTP), that counts the TCP connections it
accepts so a test can prove replay never reached it. Clients are curl (subprocess),
requests and httpx, each returning the status, headers and body bytes exactly as
received (no content decoding), so record and replay can be compared byte for byte.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import json
import os
import random
import re
import select
import shlex
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import requests

from replayproxy.model import RecordMode

# -- bodies the upstream serves ---------------------------------------------------------

JSON_BODY = json.dumps({"hello": "world", "items": [1, 2, 3], "nested": {"ok": True}}).encode()
GZIP_PAYLOAD = json.dumps({"compressed": True, "greeting": "hello gzip", "n": 42}).encode()
GZIP_BODY = gzip.compress(GZIP_PAYLOAD, mtime=0)
BIG_BODY = random.Random(5).randbytes(5 * 1024 * 1024)
CHUNKS = [b"first chunk\n", b"second, longer chunk " + b"x" * 3000 + b"\n", b"third\n"]
FIXED_DATE = "Thu, 01 Jan 2026 00:00:00 GMT"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF
    )


def make_png(width: int = 16, height: int = 16) -> bytes:
    """A valid RGB PNG whose pixels cover every byte value (a truly binary body)."""
    rows = b"".join(
        b"\x00" + bytes((x * 16 + y + c * 85) % 256 for x in range(width) for c in range(3))
        for y in range(height)
    )
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


PNG_BODY = make_png()


# -- the upstream -----------------------------------------------------------------------


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """Base of the test upstreams' handlers: HTTP/1.1 keep-alive, the TLS handshake done
    in the handler's thread (not the accepting one), no logging."""

    protocol_version = "HTTP/1.1"
    server_version = "upstream/1.0"
    sys_version = ""
    timeout = 15  # an idle keep-alive connection frees its thread after this
    server: CountingServer

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Handler(QuietHandler):
    def date_time_string(self, timestamp: float | None = None) -> str:
        return FIXED_DATE  # identical traffic gives identical bytes

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None,
              extra: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        for k, v in extra or []:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path, url.query
        body = b""
        if "Content-Length" in self.headers:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.count_request(self.command, path)
        if path == "/json":
            self._send(200, JSON_BODY, {"Content-Type": "application/json",
                                        "X-Upstream": "json"})
        elif path == "/gzip":
            self._send(200, GZIP_BODY, {"Content-Type": "application/json",
                                        "Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
        elif path == "/png":
            self._send(200, PNG_BODY, {"Content-Type": "image/png"})
        elif path == "/big":
            self._send(200, BIG_BODY, {"Content-Type": "application/octet-stream"})
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in CHUNKS:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/echo":
            reply = json.dumps({
                "method": self.command,
                "query": query,
                "length": len(body),
                "body": body.decode("latin-1"),
            }).encode()
            self._send(200 if self.command == "POST" else 405, reply,
                       {"Content-Type": "application/json"})
        elif path == "/poll":
            n = self.server.next_poll(parse_qs(query).get("id", [""])[0])
            state = "pending" if n == 1 else "done"
            self._send(200, json.dumps({"status": state}).encode(),
                       {"Content-Type": "application/json"})
        elif path == "/query":
            self._send(200, f"query={query}".encode(), {"Content-Type": "text/plain"})
        elif path == "/headers":
            self._send(200, b"headers", {"Content-Type": "text/plain"},
                       [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-MiXed-Case", "Yes")])
        elif path.startswith(("/v1/", "/v2/")):
            # an API of sorts: any method, any body; echoes what it got and counts how
            # often it got exactly that, so a replayed sequence shows its recorded order
            n = self.server.next_call(f"{self.command} {self.path} {body!r}")
            reply = json.dumps({
                "method": self.command,
                "path": path,
                "query": query,
                "content_type": self.headers.get("Content-Type", ""),
                "body": body.decode("latin-1"),
                "n": n,
            }).encode()
            self._send(200, reply, {"Content-Type": "application/json"})
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self._send(code, f"status {code}".encode(), {"Content-Type": "text/plain"})
        else:
            self._send(404, b"not found", {"Content-Type": "text/plain"})

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch


class CountingServer(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads
    block_on_close = True

    def __init__(self, tls: ssl.SSLContext | None,
                 handler: type[http.server.BaseHTTPRequestHandler] | None = None) -> None:
        self.tls = tls
        self.lock = threading.Lock()
        self.connections = 0
        self.requests: Counter[tuple[str, str]] = Counter()
        self.polls: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.open_sockets: set[socket.socket] = set()
        super().__init__(("127.0.0.1", 0), handler or _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        with self.lock:
            self.connections += 1
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self.lock:
            self.open_sockets.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client going away mid-handshake is not the test's business

    def count_request(self, method: str, path: str) -> None:
        with self.lock:
            self.requests[(method, path)] += 1

    def next_poll(self, key: str) -> int:
        with self.lock:
            self.polls[key] += 1
            return self.polls[key]

    def next_call(self, key: str) -> int:
        with self.lock:
            self.calls[key] += 1
            return self.calls[key]

    def close_open_connections(self) -> None:
        with self.lock:
            socks = list(self.open_sockets)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class Upstream:
    """A local HTTP(S) server on 127.0.0.1, port 0, that counts accepted connections."""

    def __init__(self, tls: ssl.SSLContext | None = None,
                 handler: type[http.server.BaseHTTPRequestHandler] | None = None) -> None:
        self._server = CountingServer(tls, handler)
        self.scheme = "https" if tls else "http"
        host, port = self._server.server_address[:2]
        self.host, self.port = str(host), int(port)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.running = True

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        with self._server.lock:
            return self._server.connections

    def hits(self, path: str, method: str = "GET") -> int:
        with self._server.lock:
            return self._server.requests[(method, path)]

    @property
    def total_requests(self) -> int:
        with self._server.lock:
            return sum(self._server.requests.values())

    def stop(self) -> None:
        """Stop serving and close every connection. Idempotent."""
        if not self.running:
            return
        self.running = False
        self._server.shutdown()
        self._server.close_open_connections()
        self._server.server_close()
        self._thread.join(10)


# -- clients ----------------------------------------------------------------------------

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection"}
PROXY_ENV_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
                   "http_proxy", "https_proxy", "all_proxy", "no_proxy")


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment without any proxy settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in PROXY_ENV_NAMES and (not k.startswith("REPLAYPROXY_")
                                            or k == "REPLAYPROXY_REPORT_DB")}
    env.update(extra)
    return env


@dataclass
class Resp:
    """What a client received: status, header pairs as received, body bytes undecoded."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def comparable(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """Status, end-to-end headers (lower-cased names, in order) and body."""
        headers = [(k.lower(), v) for k, v in self.headers if k.lower() not in _HOP_BY_HOP]
        return self.status, headers, self.body


class Client:
    """A real HTTP client using a proxy (or none), trusting ``ca_file``."""

    kind = "?"

    def __init__(self, proxy_url: str | None, ca_file: Path, workdir: Path) -> None:
        self.proxy_url = proxy_url
        self.ca_file = ca_file
        self.workdir = workdir

    def get(self, url: str, headers: Mapping[str, str] | None = None) -> Resp:
        return self.request("GET", url, headers=headers)

    def post(self, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> Resp:
        return self.request("POST", url, body=body, headers=headers)

    def request(self, method: str, url: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Resp:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CurlClient(Client):
    """curl in a subprocess, configured only through the environment, as a user would."""

    kind = "curl"

    def __init__(self, proxy_url: str | None, ca_file: Path, workdir: Path,
                 env: Mapping[str, str] | None = None) -> None:
        super().__init__(proxy_url, ca_file, workdir)
        if env is None:
            env = base_env(CURL_CA_BUNDLE=str(ca_file), SSL_CERT_FILE=str(ca_file))
            if proxy_url:
                env.update(http_proxy=proxy_url, HTTPS_PROXY=proxy_url, https_proxy=proxy_url)
        self.env = dict(env)
        self._n = 0

    def request(self, method: str, url: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, extra: tuple[str, ...] = ()) -> Resp:
        self._n += 1
        head = self.workdir / f"curl-{self._n}.head"
        out = self.workdir / f"curl-{self._n}.body"
        cmd = ["curl", "-sS", "--max-time", "60", "--suppress-connect-headers",
               "-D", str(head), "-o", str(out), "-X", method, *extra]
        for k, v in (headers or {}).items():
            cmd += ["-H", f"{k}: {v}"]
        if body is not None:
            data = self.workdir / f"curl-{self._n}.data"
            data.write_bytes(body)
            cmd += ["--data-binary", f"@{data}"]
        cmd.append(url)
        proc = subprocess.run(cmd, env=self.env, capture_output=True, timeout=90, check=False)
        assert proc.returncode == 0, f"curl failed ({proc.returncode}): {proc.stderr!r}"
        status, hdrs = parse_head(head.read_bytes())
        return Resp(status, hdrs, out.read_bytes())


def parse_head(raw: bytes) -> tuple[int, list[tuple[str, str]]]:
    """Parse curl's ``-D`` output; the last header block wins (skips 1xx)."""
    blocks = [b for b in raw.replace(b"\r\n", b"\n").split(b"\n\n") if b.strip()]
    lines = blocks[-1].decode("latin-1").split("\n")
    status = int(lines[0].split()[1])
    headers = []
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers.append((k, v.strip()))
    return status, headers


class RequestsClient(Client):
    kind = "requests"

    def __init__(self, proxy_url: str | None, ca_file: Path, workdir: Path) -> None:
        super().__init__(proxy_url, ca_file, workdir)
        self.session = requests.Session()
        self.session.trust_env = False  # this machine pre-sets REQUESTS_CA_BUNDLE etc.
        if proxy_url:
            self.session.proxies = {"http": proxy_url, "https": proxy_url}
        self.session.verify = str(ca_file)

    def request(self, method: str, url: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Resp:
        with self.session.request(method, url, data=body, headers=dict(headers or {}),
                                  stream=True, timeout=60) as r:
            data = r.raw.read(decode_content=False)
            return Resp(r.status_code, list(r.raw.headers.items()), data)

    def close(self) -> None:
        self.session.close()


class HttpxClient(Client):
    kind = "httpx"

    def __init__(self, proxy_url: str | None, ca_file: Path, workdir: Path) -> None:
        super().__init__(proxy_url, ca_file, workdir)
        self.client = httpx.Client(proxy=proxy_url, verify=ssl.create_default_context(
            cafile=str(ca_file)), trust_env=False, timeout=60)

    def request(self, method: str, url: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Resp:
        with self.client.stream(method, url, content=body, headers=dict(headers or {})) as r:
            data = b"".join(r.iter_raw())
            pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in r.headers.raw]
            return Resp(r.status_code, pairs, data)

    def close(self) -> None:
        self.client.close()


CLIENTS: dict[str, type[Client]] = {"curl": CurlClient, "requests": RequestsClient,
                                    "httpx": HttpxClient}


# -- matching: configuration files, the offline check, the payment scenario ------------


def control_call(url: str, token: str, method: str, path: str,
                 payload: Any = None) -> tuple[int, Any]:
    """A call to the control API at ``url`` (never through a proxy): its status and
    decoded JSON answer."""
    request = urllib.request.Request(
        url + path, method=method,
        data=json.dumps(payload).encode() if payload is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def write_config(tmp_path: Path, text: str, *, name: str = "pyproject.toml") -> Path:
    """A configuration file in its own directory (never the CLI's working directory).

    For pyproject.toml, ``text`` is TOML whose tables are relative to [tool.replayproxy]
    (``[match]`` becomes ``[tool.replayproxy.match]``); replayproxy.toml takes it as is.
    """
    directory = tmp_path / "conf"
    directory.mkdir(exist_ok=True)
    text = textwrap.dedent(text)
    if name == "pyproject.toml":
        text = text.replace("[[match.", "[[tool.replayproxy.match.").replace(
            "[match]", "[tool.replayproxy.match]")
        text = '[project]\nname = "app"\n\n[tool.replayproxy]\n' + text
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def offline(upstream: Upstream) -> Iterator[None]:
    """Assert that nothing in the block reached the upstream."""
    connections, served = upstream.connections, upstream.total_requests
    yield
    assert upstream.connections == connections, "replay connected to the upstream"
    assert upstream.total_requests == served


AMOUNT_URL_PATH = "/v1/payments"
RECORDED_PAYMENT = b'{"amount": 1200, "currency": "eur", "customer": "cus_1"}'
CHANGED_PAYMENT = b'{"amount": 1500, "currency": "eur", "customer": "cus_1"}'
AMOUNT_DIFF = "body $.amount: recorded 1200, received 1500"


def record_payment(run_proxy: Any, upstream: Upstream, name: str = "pay") -> Resp:
    """Record a GET and the payment POST (#2) with curl through ``run_proxy``."""
    with run_proxy(name, RecordMode.ALL) as p, p.client("curl") as c:
        c.get(upstream.url("/v1/customers/cus_1"))
        return c.post(upstream.url(AMOUNT_URL_PATH), RECORDED_PAYMENT,
                      {"Content-Type": "application/json"})


# -- the CLI in a subprocess ------------------------------------------------------------


def cli(*args: str | os.PathLike[str], env: Mapping[str, str], cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m replayproxy ARGS`` and wait for it (bounded)."""
    return subprocess.run(replayproxy_cmd(*args), env=dict(env), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


def cli_bytes(*args: str | os.PathLike[str], env: Mapping[str, str], cwd: Path | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """Like ``cli`` with stdout and stderr as bytes (to compare a CMD's output exactly)."""
    return subprocess.run(replayproxy_cmd(*args), env=dict(env), cwd=cwd, capture_output=True,
                          timeout=timeout, check=False)


def replayproxy_cmd(*args: str | os.PathLike[str]) -> list[str]:
    return [sys.executable, "-m", "replayproxy", *map(str, args)]


_STARTUP = re.compile(r"replayproxy: (recording|replaying) .* via proxy http://127\.0\.0\.1:\d+$")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("replayproxy: error:")]


def assert_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A user error: non-zero exit, exactly one ``replayproxy: error:`` line naming
    ``needles``, nothing else on stderr or stdout, no traceback. Returns the line."""
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    others = [line for line in proc.stderr.splitlines() if line not in lines]
    # at most the start-up line (`replayproxy: recording cassette ... via proxy ...`)
    assert all(_STARTUP.match(line) for line in others), f"noise on stderr:\n{proc.stderr}"
    assert not proc.stdout.strip(), proc.stdout
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@dataclass
class Background:
    """A subprocess whose stdout is read line by line without blocking forever."""

    proc: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    _buf: bytes = b""

    def read_until(self, predicate: Any, timeout: float = 30) -> list[str]:
        """Read stdout lines until ``predicate(lines)`` is true; bounded by ``timeout``."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while not predicate(self.lines):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; stdout so far: {self.lines}"
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not ready:
                assert self.proc.poll() is None, f"process exited {self.proc.returncode}"
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                assert predicate(self.lines), f"stdout closed; got {self.lines}"
                break
            self._buf += chunk
            *complete, self._buf = self._buf.split(b"\n")
            self.lines.extend(c.decode() for c in complete)
        return self.lines


@contextlib.contextmanager
def background(cmd: list[str], *, env: Mapping[str, str], cwd: Path | None = None,
               stderr_path: Path | None = None) -> Iterator[Background]:
    """Start ``cmd``; on exit kill it (by its own PID) if it still runs, and reap it."""
    err = stderr_path.open("wb") if stderr_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(cmd, env=dict(env), cwd=cwd, stdout=subprocess.PIPE,
                                stderr=err)
        try:
            yield Background(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
            assert proc.stdout is not None
            proc.stdout.close()
    finally:
        if stderr_path:
            err.close()  # type: ignore[union-attr]


def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.05,
             what: str = "condition") -> None:
    """Poll ``predicate`` until true, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def parse_exports(lines: list[str]) -> dict[str, str]:
    """``export K=V`` lines (shell-quoted values) -> dict."""
    env = {}
    for line in lines:
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            env[k] = shlex.split(v)[0] if v else ""
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
