"""Issue 6 through the real proxy: each fault as real clients observe it.

The proxy is built as ``replayproxy record/replay`` build it (a ``ProxyRun``: one
decision pipeline, faults asked before the cassette, the fault plan shared with the
control API under a lock). Most tests
record a small cassette against the local upstream first and inject faults while
replaying it; the ``live`` ones inject them in record mode, in front of the upstream,
and check what was (not) written. curl runs as a subprocess (its exit code is what a
shell script sees), requests and httpx in process; their error types are the ones
measured in /work/shared/mitmproxy-notes.md section 5.

Timing: only lower bounds are asserted (a delay took at least so long); every wait
is bounded.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ProtocolError
from urllib3.util.retry import Retry

from replayproxy.cassette.store import cassette_path, load_cassette, save_cassette
from replayproxy.config import Settings
from replayproxy.decision.session import SessionSummary
from replayproxy.engines.mitm.ca import CA
from replayproxy.engines.mitm.master import Proxy
from replayproxy.faults.plan import FaultPlan
from replayproxy.model import Interaction, RecordMode, Request, Response
from replayproxy.run import ProxyRun
from tests.conftest import UpstreamCA
from tests.integration.conftest import serving
from tests.integration.support import (
    BIG_BODY,
    CHUNKS,
    GZIP_BODY,
    GZIP_PAYLOAD,
    JSON_BODY,
    PNG_BODY,
    Upstream,
    base_env,
    free_port,
    parse_head,
)

# -- the proxy with faults, and raw clients ---------------------------------------------


@dataclass
class Curl:
    """What curl did: its exit code, the response head and the body bytes it got."""

    rc: int
    status: int | None
    headers: list[tuple[str, str]]
    body: bytes
    stderr: str

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass
class FaultProxy:
    run: ProxyRun
    workdir: Path
    summary: SessionSummary | None = None
    _n: int = 0

    @property
    def proxy(self) -> Proxy:
        return self.run.proxy

    @property
    def plan(self) -> FaultPlan:
        assert self.run.pipeline is not None
        return self.run.pipeline.faults

    @property
    def lock(self) -> threading.Lock:
        assert self.run.pipeline is not None
        return self.run.pipeline.lock

    @property
    def url(self) -> str:
        return self.run.proxy_url

    def hits(self) -> tuple[int, ...]:
        with self.lock:
            return self.plan.hits()

    def curl_env(self) -> dict[str, str]:
        bundle = str(self.proxy.ca.bundle)
        return base_env(CURL_CA_BUNDLE=bundle, SSL_CERT_FILE=bundle, http_proxy=self.url,
                        HTTPS_PROXY=self.url, https_proxy=self.url)

    def curl_cmd(self, url: str, *args: str, max_time: float = 30) -> tuple[list[str], Path,
                                                                            Path]:
        self._n += 1
        head = self.workdir / f"curl-{self._n}.head"
        out = self.workdir / f"curl-{self._n}.body"
        cmd = ["curl", "-sS", "--max-time", str(max_time), "--suppress-connect-headers",
               "-D", str(head), "-o", str(out), *args, url]
        return cmd, head, out

    def curl(self, url: str, *args: str, max_time: float = 30) -> Curl:
        """curl through the proxy; never asserts its exit code."""
        cmd, head, out = self.curl_cmd(url, *args, max_time=max_time)
        for stale in (head, out):  # curl writes neither when no response came
            stale.unlink(missing_ok=True)
        proc = subprocess.run(cmd, env=self.curl_env(), capture_output=True, text=True,
                              timeout=max_time + 30, check=False)
        raw = head.read_bytes() if head.exists() else b""
        status, headers = parse_head(raw) if raw.strip() else (None, [])
        body = out.read_bytes() if out.exists() else b""
        return Curl(proc.returncode, status, headers, body, proc.stderr)

    def requests(self, retry: Retry | None = None) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        s.proxies = {"http": self.url, "https": self.url}
        s.verify = str(self.proxy.ca.bundle)
        if retry is not None:
            adapter = HTTPAdapter(max_retries=retry)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
        return s

    def httpx(self, read: float = 30) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.proxy.ca.bundle))
        return httpx.Client(proxy=self.url, verify=context, trust_env=False,
                            timeout=httpx.Timeout(30, read=read))


FaultFactory = Callable[..., contextlib.AbstractContextManager[FaultProxy]]


@pytest.fixture
def fault_proxy(proxy_ca: CA, upstream_ca: UpstreamCA, cassette_dir: Path, tmp_path: Path,
                caplog: pytest.LogCaptureFixture) -> Iterator[FaultFactory]:
    """``with fault_proxy("name", RecordMode.NONE, faults=[...]) as p``.

    A ``ProxyRun`` with faults, as the CLI builds it; on exit stops it (``p.summary``)
    and fails if the proxy logged an error (mitmproxy logs an exception in an addon and
    carries on: a fault that crashed would show up here).
    """
    @contextlib.contextmanager
    def factory(name: str, mode: RecordMode, faults: Sequence[str] = (), engine: str = "auto"
                ) -> Iterator[FaultProxy]:
        run = ProxyRun(name, mode, cassette_dir=cassette_dir, settings=Settings(),
                       faults=faults, upstream_ca=upstream_ca.pem, ca_dir=proxy_ca.directory,
                       control=False, upstream_proxy="none", engine=engine)
        workdir = tmp_path / "clients"
        workdir.mkdir(exist_ok=True)
        fp = FaultProxy(run, workdir)
        with serving(fp, caplog):
            yield fp

    yield factory


def record(fault_proxy: FaultFactory, upstream: Upstream, name: str,
           *paths: str | tuple[str, str, bytes]) -> None:
    """Record ``paths`` (GET, or (method, path, JSON body)) with curl, no faults."""
    with fault_proxy(name, RecordMode.ALL) as p:
        for item in paths:
            method, path, body = ("GET", item, b"") if isinstance(item, str) else item
            args = ["-X", method]
            if body:
                args += ["--data-binary", body.decode(), "-H", "Content-Type: application/json"]
            got = p.curl(upstream.url(path), *args)
            assert got.rc == 0 and got.status == 200, got
    assert p.summary is not None and p.summary.recorded == len(paths)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.monotonic()
    result = fn()
    return time.monotonic() - start, result


# -- reset ------------------------------------------------------------------------------


# curl's exit code for a dropped connection: 52 "Empty reply from server" over plain
# HTTP; over a CONNECT tunnel curl negotiates HTTP/2 with the proxy and reports the
# killed stream as 92 (HTTP/2 stream not closed cleanly); the fast engine speaks HTTP/1.1
# in the tunnel too (52 there)
CURL_RESET = {"HTTP/1.1": 52, "HTTP/2": 92}


def curl_protocol(p: FaultProxy, upstream: Upstream) -> str:
    """What curl speaks with the proxy for ``upstream``: HTTP/2 in a mitmproxy tunnel."""
    tunnel = upstream.scheme == "https" and p.run.engine_used == "mitmproxy"
    return "HTTP/2" if tunnel else "HTTP/1.1"


def test_reset_drops_the_connection_with_no_response(upstream: Upstream, fault_proxy):
    record(fault_proxy, upstream, "reset", "/json", "/png")
    with fault_proxy("reset", RecordMode.NONE, ["reset@GET */json"]) as p:
        got = p.curl(upstream.url("/json"))
        assert got.rc == CURL_RESET[curl_protocol(p, upstream)], got
        assert got.status is None and got.body == b""

        with p.requests() as s, pytest.raises(requests.exceptions.ProxyError):
            s.get(upstream.url("/json"), timeout=30)
        with p.httpx() as c, pytest.raises(httpx.RemoteProtocolError):
            c.get(upstream.url("/json"))

        # another route on the same proxy is untouched
        with p.requests() as s:
            other = s.get(upstream.url("/png"), timeout=30)
        assert other.status_code == 200 and other.content == PNG_BODY
        assert p.hits() == (3,)


def test_reset_live_never_reaches_the_upstream_or_the_cassette(https_upstream, fault_proxy,
                                                               cassette_dir):
    with fault_proxy("live-reset", RecordMode.ALL, ["reset@*/json"]) as p:
        with p.requests() as s, pytest.raises(requests.exceptions.ConnectionError):
            s.get(https_upstream.url("/json"), timeout=30)
        with p.requests() as s:
            assert s.get(https_upstream.url("/png"), timeout=30).content == PNG_BODY
    assert https_upstream.hits("/json") == 0
    assert https_upstream.hits("/png") == 1
    cassette = load_cassette(cassette_path(cassette_dir, "live-reset"))
    assert [it.request.path for it in cassette.interactions()] == ["/png"]


# -- timeout ----------------------------------------------------------------------------


def test_timeout_makes_clients_give_up(https_upstream, fault_proxy):
    record(fault_proxy, https_upstream, "hold", "/json")
    with fault_proxy("hold", RecordMode.NONE, ["timeout,max=10s@*/json"]) as p:
        got = p.curl(https_upstream.url("/json"), max_time=1)
        assert got.rc == 28, got  # operation timed out

        with p.requests() as s, pytest.raises(requests.exceptions.ReadTimeout):
            s.get(https_upstream.url("/json"), timeout=(10, 1))
        with p.httpx(read=1) as c, pytest.raises(httpx.ReadTimeout):
            c.get(https_upstream.url("/json"))
        assert p.hits() == (3,)


def test_timeout_holds_only_its_flow_and_gives_up_after_max(http_upstream, fault_proxy):
    record(fault_proxy, http_upstream, "hold-max", "/json", "/png")
    hold = 3.0
    with fault_proxy("hold-max", RecordMode.NONE, [f"timeout,max={hold:g}s@*/json"]) as p:
        cmd, _, _ = p.curl_cmd(http_upstream.url("/json"), max_time=60)
        start = time.monotonic()
        held = subprocess.Popen(cmd, env=p.curl_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            # wait (bounded) until the proxy holds it, then use another route meanwhile
            deadline = time.monotonic() + 30
            while p.hits() != (1,):
                assert time.monotonic() < deadline, "the held request never arrived"
                time.sleep(0.02)
            with p.requests() as s:
                for _ in range(3):
                    assert s.get(http_upstream.url("/png"), timeout=30).content == PNG_BODY
            assert held.poll() is None, "the held request was answered while others ran"
            _, err = held.communicate(timeout=90)
        finally:
            if held.poll() is None:
                held.kill()
                held.wait(10)
        elapsed = time.monotonic() - start
        # after max the proxy gives up and drops the connection: curl sees no reply
        assert held.returncode == 52, err
        assert elapsed >= hold


# -- truncate ---------------------------------------------------------------------------


# plain HTTP: the body ends before Content-Length with `Connection: close` -> 18
# ("transfer closed with N bytes remaining"); over HTTP/2 to the proxy -> 92
CURL_TRUNCATE = {"HTTP/1.1": 18, "HTTP/2": 92}


def test_truncate_sends_part_of_the_body_then_closes(upstream: Upstream, fault_proxy):
    record(fault_proxy, upstream, "cut", "/json")
    with fault_proxy("cut", RecordMode.NONE, ["truncate,bytes=10@*/json"]) as p:
        got = p.curl(upstream.url("/json"))
        assert got.rc == CURL_TRUNCATE[curl_protocol(p, upstream)], got
        assert JSON_BODY.startswith(got.body) and len(got.body) <= 10

        with p.requests() as s, pytest.raises(requests.exceptions.ChunkedEncodingError):
            s.get(upstream.url("/json"), timeout=30)
        with p.httpx() as c, pytest.raises(httpx.RemoteProtocolError):
            c.get(upstream.url("/json"))
        assert p.hits() == (3,)


def test_truncate_live_records_the_full_body(http_upstream, fault_proxy, cassette_dir):
    with fault_proxy("live-cut", RecordMode.ALL, ["truncate@*/json"]) as p:
        got = p.curl(http_upstream.url("/json"))
        assert got.rc == 18, got
        assert len(got.body) == len(JSON_BODY) // 2
    cassette = load_cassette(cassette_path(cassette_dir, "live-cut"))
    assert [it.response.body for it in cassette.interactions()] == [JSON_BODY]
    # and replaying it without the fault gives the whole body
    with fault_proxy("live-cut", RecordMode.NONE) as p:
        got = p.curl(http_upstream.url("/json"))
        assert got.rc == 0 and got.body == JSON_BODY


# -- status -----------------------------------------------------------------------------


def test_status_answers_with_code_body_and_headers(upstream: Upstream, fault_proxy):
    record(fault_proxy, upstream, "status", "/json", "/png")
    spec = "status=503,body=down for maintenance,header=X-Test:yes,retry_after=7@GET */json"
    with fault_proxy("status", RecordMode.NONE, [spec]) as p:
        got = p.curl(upstream.url("/json"))
        assert got.rc == 0 and got.status == 503
        assert got.body == b"down for maintenance"
        assert got.header("X-Test") == "yes"
        assert got.header("Retry-After") == "7"
        assert got.header("X-Replayproxy") == "fault"
        assert got.header("Content-Type").startswith("text/plain")

        with p.httpx() as c:
            r = c.get(upstream.url("/json"))
            assert (r.status_code, r.reason_phrase) == (503, "Service Unavailable")
            assert c.get(upstream.url("/png")).content == PNG_BODY
        assert p.hits() == (2,)


def test_status_live_is_never_recorded(https_upstream, fault_proxy, cassette_dir):
    with fault_proxy("live-503", RecordMode.ALL, ["status=503,first=1@*/json"]) as p, \
            p.requests() as s:
        first = s.get(https_upstream.url("/json"), timeout=30)
        second = s.get(https_upstream.url("/json"), timeout=30)
    assert first.status_code == 503 and first.headers["X-Replayproxy"] == "fault"
    assert second.status_code == 200 and second.content == JSON_BODY
    assert https_upstream.hits("/json") == 1  # the 503 never went upstream
    cassette = load_cassette(cassette_path(cassette_dir, "live-503"))
    assert [(it.response.status, it.response.body) for it in cassette.interactions()] == [
        (200, JSON_BODY)]


def test_a_fault_answer_does_not_use_up_a_recorded_sequence(upstream: Upstream, fault_proxy):
    """A faulted request never reaches the cassette, as it would never reach a live API:
    the poll after a 503 still sees the first recorded answer."""
    record(fault_proxy, upstream, "seq", "/poll?id=job-9", "/poll?id=job-9")
    with fault_proxy("seq", RecordMode.NONE, ["status=503,first=1@GET */poll*"]) as p, \
            p.requests() as s:
        answers = [s.get(upstream.url("/poll?id=job-9"), timeout=30) for _ in range(3)]
    assert answers[0].status_code == 503
    assert [json.loads(r.content)["status"] for r in answers[1:]] == ["pending", "done"]
    assert p.summary is not None and p.summary.replayed == 2


# -- rate_limit -------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after_after_the_burst(https_upstream, fault_proxy):
    record(fault_proxy, https_upstream, "limit", "/json", "/png")
    with fault_proxy("limit", RecordMode.NONE, ["rate_limit=2/s@GET */json"]) as p, \
            p.requests() as s:
        answers = [s.get(https_upstream.url("/json"), timeout=30) for _ in range(10)]
        # the bucket starts full: the burst of 2 passes, then the sender outruns 2/s
        assert [r.status_code for r in answers[:2]] == [200, 200]
        limited = [r for r in answers if r.status_code == 429]
        assert limited, [r.status_code for r in answers]
        assert {r.headers["Retry-After"] for r in limited} == {"1"}
        assert {r.headers["X-Replayproxy"] for r in limited} == {"fault"}
        for r in answers:
            if r.status_code == 200:
                assert r.content == JSON_BODY
        # other routes are not limited
        assert {s.get(https_upstream.url("/png"), timeout=30).status_code
                for _ in range(5)} == {200}
        # once Retry-After has passed, a token is back
        time.sleep(1.05)
        assert s.get(https_upstream.url("/json"), timeout=30).status_code == 200


# -- latency ----------------------------------------------------------------------------


def test_latency_delays_the_response(https_upstream, fault_proxy):
    record(fault_proxy, https_upstream, "slow", "/json", "/png")
    rules = ["latency=300ms@GET */json", "latency=250ms,at=first_byte@GET */png"]
    with fault_proxy("slow", RecordMode.NONE, rules) as p, p.requests() as s:
        elapsed, r = timed(lambda: s.get(https_upstream.url("/json"), timeout=30))
        assert r.status_code == 200 and r.content == JSON_BODY
        assert elapsed >= 0.3
        elapsed, r = timed(lambda: s.get(https_upstream.url("/png"), timeout=30))
        assert r.status_code == 200 and r.content == PNG_BODY
        assert elapsed >= 0.25
        assert p.hits() == (1, 1)


def test_latency_recorded_scales_the_recorded_time_to_first_byte(fault_proxy, cassette_dir,
                                                                 http_upstream):
    url = http_upstream.url("/recorded")
    it = Interaction(
        Request("GET", "http", http_upstream.host, http_upstream.port, "/recorded", "",
                (("Host", f"{http_upstream.host}:{http_upstream.port}"),)),
        Response(200, "OK", (("Content-Type", "text/plain"), ("Content-Length", "2")), b"ok"),
        recorded_at=1_767_225_600.0, ttfb=0.2, duration=0.25)
    save_cassette(cassette_path(cassette_dir, "ttfb"), [it])
    with fault_proxy("ttfb", RecordMode.NONE, ["latency=recorded,factor=2"]) as p:
        start = time.monotonic()
        got = p.curl(url)
        elapsed = time.monotonic() - start
        assert got.rc == 0 and got.body == b"ok"
        assert elapsed >= 0.4  # 2 x the recorded 0.2 s
    assert http_upstream.total_requests == 0


def test_latency_live_delays_and_records_normally(http_upstream, fault_proxy, cassette_dir):
    with fault_proxy("live-slow", RecordMode.ALL, ["latency=300ms"]) as p, p.requests() as s:
        elapsed, r = timed(lambda: s.get(http_upstream.url("/json"), timeout=30))
        assert r.status_code == 200 and r.content == JSON_BODY
        assert elapsed >= 0.3
    cassette = load_cassette(cassette_path(cassette_dir, "live-slow"))
    assert [it.response.body for it in cassette.interactions()] == [JSON_BODY]


def test_latency_adds_up_and_delays_a_fault_answer(http_upstream, fault_proxy):
    record(fault_proxy, http_upstream, "slow-fault", "/json", "/png")
    rules = ["latency=200ms", "latency=100ms", "status=503@*/json", "reset@*/png"]
    with fault_proxy("slow-fault", RecordMode.NONE, rules) as p:
        start = time.monotonic()
        got = p.curl(http_upstream.url("/json"))
        elapsed = time.monotonic() - start
        assert got.rc == 0 and got.status == 503
        assert elapsed >= 0.3  # both delays, then the fault's answer
        start = time.monotonic()
        got = p.curl(http_upstream.url("/png"))
        elapsed = time.monotonic() - start
        assert got.rc == 52, got
        assert elapsed >= 0.3  # a slow server that then drops the connection
        assert p.hits() == (2, 2, 1, 1)


def test_slow_body_trickles_a_replayed_body(upstream: Upstream, fault_proxy):
    """Headers at once, then a few bytes at a time: a client whose read timeout (1 s)
    is shorter than the whole body's time (~1.8 s) still gets it, slowly."""
    record(fault_proxy, upstream, "trickle", "/json", "/png")
    with fault_proxy("trickle", RecordMode.NONE, ["slow_body=40b/s@*/json"]) as p, \
            p.requests() as s:
        start = time.monotonic()
        with s.get(upstream.url("/json"), timeout=(5, 1.0), stream=True) as r:
            headers_at = time.monotonic() - start
            chunks = [(time.monotonic() - start, c) for c in r.iter_content(chunk_size=1)]
        assert r.status_code == 200
        assert b"".join(c for _, c in chunks) == JSON_BODY
        # it came in pieces: the last byte well after the first (ten writes a second)
        assert chunks[-1][0] - chunks[0][0] >= (len(JSON_BODY) - 8) / 40
        assert chunks[0][0] - headers_at < chunks[-1][0] - chunks[0][0]
        other = s.get(upstream.url("/png"), timeout=30)  # other routes are untouched
        assert other.content == PNG_BODY
        assert p.hits() == (1,)
    assert upstream.connections == 2  # the two recordings; replay never went upstream


def test_slow_body_replayed_head_and_corrupt(http_upstream, fault_proxy):
    """A replayed HEAD has no body to trickle: its recorded headers (Content-Length
    included) come as they are; a corrupt that fires with slow_body is applied to the
    trickled body."""
    with fault_proxy("trickle-more", RecordMode.ALL) as p, p.requests() as s:
        assert s.get(http_upstream.url("/json"), timeout=30).content == JSON_BODY
        assert s.head(http_upstream.url("/json"), timeout=30).status_code == 200
    rules = ["slow_body=200b/s@*/json", "corrupt@GET */json"]
    with fault_proxy("trickle-more", RecordMode.NONE, rules) as p, p.requests() as s:
        r = s.head(http_upstream.url("/json"), timeout=(5, 1.0))
        assert r.status_code == 200 and r.content == b""
        assert r.headers["Content-Length"] == str(len(JSON_BODY))
        start = time.monotonic()
        with s.get(http_upstream.url("/json"), timeout=(5, 1.0), stream=True) as r:
            arrivals = _arrivals(r, start)
        body = b"".join(c for _, c in arrivals)
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(body)
        assert JSON_BODY.startswith(body) and not _is_json(body)
        if len(body) > 40:  # 20-byte writes: a short cut may come in one
            assert _pauses(arrivals) >= 1, arrivals
        assert p.hits() == (2, 1)
    # the HEAD's connection stayed open for the GET (closed unannounced, the GET raced it)
    assert p.summary is not None and p.summary.connections == 1
    assert http_upstream.hits("/json") == 1 and http_upstream.hits("/json", "HEAD") == 1


def test_stopping_the_proxy_mid_trickle_ends_the_trickle(http_upstream, fault_proxy):
    """The proxy stops at once while a slow body is still being sent, and quietly:
    Python 3.12's ``Server.wait_closed()`` would wait for the trickle to end, 3.11's
    returns at once and its handler is then cancelled with a logged CancelledError
    (``serving`` fails on that)."""
    record(fault_proxy, http_upstream, "stop-trickle", "/big")
    with fault_proxy("stop-trickle", RecordMode.NONE, ["slow_body=1kb/s@*/big"]) as p, \
            p.requests() as s, \
            s.get(http_upstream.url("/big"), timeout=(5, 5), stream=True) as r:
        assert r.status_code == 200
        assert len(r.raw.read(50, decode_content=False)) == 50  # it is trickling
        start = time.monotonic()
        p.proxy.stop()
        assert time.monotonic() - start < 3
        with pytest.raises(ProtocolError):  # cut short (all of it would take 85 min)
            r.raw.read(decode_content=False)


def _arrivals(r: requests.Response, start: float) -> list[tuple[float, bytes]]:
    """Read ``r``'s body a byte at a time as it arrives, undecoded, with the time of
    each read since ``start``."""
    return [(time.monotonic() - start, c) for c in r.raw.stream(1, decode_content=False)]


def _pauses(arrivals: list[tuple[float, bytes]], gap: float = 0.05) -> int:
    """How many times the body stopped for at least ``gap`` seconds between two reads."""
    times = [t for t, _ in arrivals]
    return sum(1 for a, b in zip(times, times[1:], strict=False) if b - a >= gap)


def _reference(fault_proxy: FaultFactory, cassette_dir: Path, upstream: Upstream,
               *requests_: tuple[str, str]) -> list[Response]:
    """Record (method, path) requests without faults; return the responses recorded."""
    with fault_proxy("reference", RecordMode.ALL) as p, p.requests() as s:
        for method, path in requests_:
            assert s.request(method, upstream.url(path), timeout=30).status_code == 200
    return [it.response for it in load_cassette(
        cassette_path(cassette_dir, "reference")).interactions()]


def test_slow_body_live_trickles_and_records_the_full_response(
        upstream: Upstream, fault_proxy: FaultFactory, cassette_dir: Path) -> None:
    """Record mode: the upstream's body reaches the client a few bytes at a time (a read
    timeout of 1 s against ~1.6 s for the whole body), and the cassette gets the
    upstream's response whole, exactly as recorded without the fault."""
    [reference] = _reference(fault_proxy, cassette_dir, upstream, ("GET", "/json"))
    rate = 40
    with fault_proxy("live-trickle", RecordMode.ALL, [f"slow_body={rate}b/s@*/json"]) as p, \
            p.requests() as s:
        start = time.monotonic()
        with s.get(upstream.url("/json"), timeout=(5, 1.0), stream=True) as r:
            arrivals = _arrivals(r, start)
        elapsed = time.monotonic() - start
        assert r.status_code == 200 and r.headers["X-Upstream"] == "json"
        assert int(r.headers["Content-Length"]) == len(JSON_BODY)
        assert b"".join(c for _, c in arrivals) == JSON_BODY
        # ten writes a second of rate/10 bytes: in pieces, over about size/rate seconds
        assert elapsed >= (len(JSON_BODY) - rate / 10) / rate
        assert arrivals[-1][0] - arrivals[0][0] >= (len(JSON_BODY) - 2 * rate / 10) / rate
        assert _pauses(arrivals) >= 5, arrivals
        assert p.hits() == (1,)
    assert upstream.hits("/json") == 2  # the reference and this one: sent upstream once
    [live] = load_cassette(cassette_path(cassette_dir, "live-trickle")).interactions()
    assert live.response == reference
    assert (live.request.method, live.request.scheme, live.request.host, live.request.port,
            live.request.path) == ("GET", upstream.scheme, upstream.host, upstream.port, "/json")


def test_slow_body_live_gzip_is_trickled_as_on_the_wire(https_upstream, fault_proxy,
                                                        cassette_dir):
    """A gzip body is trickled compressed, Content-Encoding kept (requests over HTTP/1.1
    and curl, which speaks HTTP/2 to the proxy); the cassette holds the gzip bytes."""
    [reference] = _reference(fault_proxy, cassette_dir, https_upstream, ("GET", "/gzip"))
    rate = 60
    with fault_proxy("live-gzip", RecordMode.ALL, [f"slow_body={rate}b/s@*/gzip"]) as p:
        with p.requests() as s:
            start = time.monotonic()
            with s.get(https_upstream.url("/gzip"), timeout=(5, 1.0), stream=True) as r:
                arrivals = _arrivals(r, start)
            elapsed = time.monotonic() - start
        assert r.status_code == 200 and r.headers["Content-Encoding"] == "gzip"
        body = b"".join(c for _, c in arrivals)
        assert body == GZIP_BODY and gzip.decompress(body) == GZIP_PAYLOAD
        assert elapsed >= (len(GZIP_BODY) - rate / 10) / rate
        assert _pauses(arrivals) >= 5, arrivals

        start = time.monotonic()
        got = p.curl(https_upstream.url("/gzip"))  # no --compressed: the bytes as sent
        elapsed = time.monotonic() - start
        assert got.rc == 0 and got.status == 200, got
        assert got.header("Content-Encoding") == "gzip" and got.body == GZIP_BODY
        assert elapsed >= (len(GZIP_BODY) - rate / 10) / rate
        assert p.hits() == (2,)
    assert https_upstream.hits("/gzip") == 3
    recorded = [it.response for it in load_cassette(
        cassette_path(cassette_dir, "live-gzip")).interactions()]
    assert [(r.status, r.headers, r.body) for r in recorded] == [
        (reference.status, reference.headers, GZIP_BODY)] * 2


def test_slow_body_live_chunked_big_and_head(http_upstream, fault_proxy, cassette_dir):
    """A chunked upstream body is trickled with its length announced; a 5 MiB body
    arrives whole; a HEAD has no body to trickle. All are recorded as without the fault."""
    reference = _reference(fault_proxy, cassette_dir, http_upstream, ("GET", "/chunked"),
                           ("HEAD", "/json"))
    assert ("Transfer-Encoding", "chunked") in reference[0].headers
    rules = ["slow_body=10kb/s@GET */chunked", "slow_body=20mb/s@GET */big",
             "slow_body=10b/s@HEAD */json"]
    chunked = b"".join(CHUNKS)
    with fault_proxy("live-mixed", RecordMode.ALL, rules) as p, p.requests() as s:
        start = time.monotonic()
        with s.get(http_upstream.url("/chunked"), timeout=(5, 1.0), stream=True) as r:
            arrivals = _arrivals(r, start)
        assert r.status_code == 200 and "Transfer-Encoding" not in r.headers
        assert int(r.headers["Content-Length"]) == len(chunked)
        assert b"".join(c for _, c in arrivals) == chunked
        assert _pauses(arrivals) >= 2, arrivals  # 1 kB ten times a second: 3 writes

        # the headers wait for the whole upstream body and its recording, as they do
        # without the fault (seconds, for 5 MiB): a generous read timeout
        start = time.monotonic()
        with s.get(http_upstream.url("/big"), timeout=(5, 30), stream=True) as r:
            headers_at = time.monotonic() - start
            body = r.raw.read(decode_content=False)
        elapsed = time.monotonic() - start
        assert r.status_code == 200 and body == BIG_BODY
        # 5 MiB at 20 MiB/s: 2 MiB writes with two 0.1 s sleeps between them; the client
        # may see the headers a little after the first write went out (measured 0.19996 s
        # on a loaded machine), so the bound leaves it 50 ms
        assert elapsed - headers_at >= 0.15

        r = s.head(http_upstream.url("/json"), timeout=(5, 1.0))  # 10 b/s: no wait
        assert r.status_code == 200 and r.content == b""
        assert r.headers["Content-Length"] == str(len(JSON_BODY))
        assert p.hits() == (1, 1, 1)
    recorded = [it.response for it in load_cassette(
        cassette_path(cassette_dir, "live-mixed")).interactions()]
    assert [recorded[0], recorded[2]] == reference
    assert recorded[1].status == 200 and recorded[1].body == BIG_BODY


def test_slow_body_live_sends_a_request_body_upstream_once(https_upstream, fault_proxy,
                                                            cassette_dir):
    body = b'{"amount": 100}'
    with fault_proxy("live-post", RecordMode.ALL, ["slow_body=400b/s@POST */v1/charges"]) as p, \
            p.requests() as s:
        r = s.post(https_upstream.url("/v1/charges"), data=body, timeout=(5, 1.0),
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 200
        assert r.json() == {"method": "POST", "path": "/v1/charges", "query": "",
                            "content_type": "application/json", "body": body.decode(), "n": 1}
    assert https_upstream.hits("/v1/charges", "POST") == 1
    [it] = load_cassette(cassette_path(cassette_dir, "live-post")).interactions()
    assert it.request.body == body and it.response.body == r.content


def test_slow_body_live_with_truncate_cuts_the_trickle(http_upstream, fault_proxy,
                                                       cassette_dir):
    rules = ["slow_body=200b/s@*/json", "truncate,bytes=20@*/json"]
    with fault_proxy("live-slow-cut", RecordMode.ALL, rules) as p, p.requests() as s:
        got = bytearray()
        with s.get(http_upstream.url("/json"), timeout=(5, 1.0), stream=True) as r, \
                pytest.raises(requests.exceptions.ChunkedEncodingError):
            for chunk in r.iter_content(chunk_size=1):
                got += chunk
        assert bytes(got) == JSON_BODY[:20]
        assert p.hits() == (1, 1)
    [it] = load_cassette(cassette_path(cassette_dir, "live-slow-cut")).interactions()
    assert it.response.body == JSON_BODY


def test_slow_body_live_upstream_failure_is_the_usual_502(fault_proxy, cassette_dir):
    """The upstream refuses the connection: the client gets mitmproxy's 502, with or
    without the fault, and both are recorded as that 502, marked (#12)."""
    dead = f"http://127.0.0.1:{free_port()}"
    with fault_proxy("live-dead", RecordMode.ALL, ["slow_body=10b/s@*/json"]) as p, \
            p.requests() as s:
        faulted = s.get(f"{dead}/json", timeout=30)
        plain = s.get(f"{dead}/other", timeout=30)
        assert p.hits() == (1,)
    assert faulted.status_code == plain.status_code == 502
    assert faulted.headers["Content-Type"] == plain.headers["Content-Type"]
    assert faulted.content == plain.content
    assert p.summary is not None and p.summary.recorded == 2
    assert [f.kind for f in p.summary.upstream_failures] == ["connection refused"] * 2
    recorded = load_cassette(cassette_path(cassette_dir, "live-dead")).interactions()
    assert [(it.request.path, it.response.status, it.response.body) for it in recorded] == \
        [("/json", 502, faulted.content), ("/other", 502, plain.content)]


# -- corrupt ----------------------------------------------------------------------------


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def test_corrupt_mangles_the_body(https_upstream, fault_proxy):
    record(fault_proxy, https_upstream, "bad", "/json", "/gzip", "/png")
    rules = ["corrupt@GET */json", "corrupt@GET */gzip", "corrupt=random@GET */png"]
    with fault_proxy("bad", RecordMode.NONE, rules) as p:
        got = p.curl(https_upstream.url("/json"))
        assert got.rc == 0 and got.status == 200
        assert got.body != JSON_BODY and not _is_json(got.body)
        assert JSON_BODY.startswith(got.body)  # cut short
        with p.requests() as s:
            r = s.get(https_upstream.url("/json"), timeout=30)
            assert r.status_code == 200
            with pytest.raises(requests.exceptions.JSONDecodeError):
                r.json()
            # a gzip body is decoded first: the client gets bad JSON, not a bad gzip
            r = s.get(https_upstream.url("/gzip"), timeout=30)
            assert r.status_code == 200 and "Content-Encoding" not in r.headers
            assert r.content != GZIP_PAYLOAD and not _is_json(r.content)
            assert GZIP_PAYLOAD.startswith(r.content)
            r = s.get(https_upstream.url("/png"), timeout=30)
            assert r.status_code == 200
            assert len(r.content) == len(PNG_BODY) and r.content != PNG_BODY
        assert p.hits() == (2, 1, 1)


# -- refuse_connect ---------------------------------------------------------------------


def test_refuse_connect_over_https_fails_the_connect(https_upstream, fault_proxy):
    connections = https_upstream.connections
    with fault_proxy("refused", RecordMode.ALL, ["refuse_connect@127.0.0.1"]) as p:
        got = p.curl(https_upstream.url("/json"))
        assert got.rc == 56, got  # CONNECT tunnel failed, response 502
        with p.requests() as s, pytest.raises(requests.exceptions.ProxyError):
            s.get(https_upstream.url("/json"), timeout=30)
        with p.httpx() as c, pytest.raises(httpx.ProxyError):
            c.get(https_upstream.url("/json"))
        # a host the rule does not name still connects (same server, other name)
        with p.requests() as s:
            r = s.get(f"https://localhost:{https_upstream.port}/json", timeout=30)
            assert r.status_code == 200 and r.content == JSON_BODY
        assert p.hits() == (3,)
    assert https_upstream.connections == connections + 1  # only the localhost one


def test_refuse_connect_over_http_is_a_502(http_upstream, fault_proxy, cassette_dir):
    with fault_proxy("refused-http", RecordMode.ALL, ["refuse_connect@127.0.0.1"]) as p:
        got = p.curl(http_upstream.url("/json"))
        assert got.rc == 0 and got.status == 502
        assert got.header("X-Replayproxy") == "fault"
        assert b"connection refused" in got.body
    assert http_upstream.connections == 0
    assert p.summary is not None and p.summary.recorded == 0
    assert not cassette_path(cassette_dir, "refused-http").exists()


# -- targeting --------------------------------------------------------------------------


def test_first_2_lets_a_retrying_client_succeed_on_the_third_try(https_upstream, fault_proxy):
    record(fault_proxy, https_upstream, "retry", "/json")
    with fault_proxy("retry", RecordMode.NONE, ["status=503,first=2@GET */json"]) as p:
        retry = Retry(total=3, status_forcelist=[503], backoff_factor=0)
        with p.requests(retry) as s:
            r = s.get(https_upstream.url("/json"), timeout=30)
        assert r.status_code == 200 and r.content == JSON_BODY
        assert p.hits() == (2,)

    # the same client with a single retry gives up: both faults really fired
    with fault_proxy("retry", RecordMode.NONE, ["status=503,first=2@GET */json"]) as p:
        with p.requests(Retry(total=1, status_forcelist=[503], backoff_factor=0)) as s, \
                pytest.raises(requests.exceptions.RetryError):
            s.get(https_upstream.url("/json"), timeout=30)
        assert p.hits() == (2,)


def test_nth_2_fails_only_the_second_request(http_upstream, fault_proxy):
    record(fault_proxy, http_upstream, "nth", "/json")
    with fault_proxy("nth", RecordMode.NONE, ["status=500,nth=2@*/json"]) as p, \
            p.requests() as s:
        codes = [s.get(http_upstream.url("/json"), timeout=30).status_code for _ in range(4)]
        assert codes == [200, 500, 200, 200]
        assert p.hits() == (1,)


def test_route_targets_method_and_path(https_upstream, fault_proxy):
    charge = ("POST", "/v1/charges", b'{"amount": 100}')
    refund = ("POST", "/v1/refunds", b'{"amount": 100}')
    record(fault_proxy, https_upstream, "routes", charge, refund, "/v1/charges")
    with fault_proxy("routes", RecordMode.NONE, ["status=503@POST */v1/charges"]) as p, \
            p.requests() as s:
        body, ct = b'{"amount": 100}', {"Content-Type": "application/json"}
        assert s.get(https_upstream.url("/v1/charges"), timeout=30).status_code == 200
        r = s.post(https_upstream.url("/v1/refunds"), data=body, headers=ct, timeout=30)
        assert r.status_code == 200 and r.json()["path"] == "/v1/refunds"
        r = s.post(https_upstream.url("/v1/charges"), data=body, headers=ct, timeout=30)
        assert r.status_code == 503 and r.headers["X-Replayproxy"] == "fault"
        assert p.hits() == (1,)


def _outcomes(p: FaultProxy, upstream: Upstream, n: int) -> list[str]:
    out = []
    for _ in range(n):
        with p.requests() as s:
            try:
                r = s.get(upstream.url("/json"), timeout=30)
            except requests.exceptions.ConnectionError:
                out.append("reset")
            else:
                assert r.status_code == 200 and r.content == JSON_BODY
                out.append("ok")
    return out


def test_same_seed_gives_the_same_decisions_in_two_runs(https_upstream, fault_proxy):
    record(fault_proxy, https_upstream, "seeded", "/json")
    spec = "reset,p=0.5,seed=7"
    runs = []
    for _ in range(2):
        with fault_proxy("seeded", RecordMode.NONE, [spec]) as p:
            runs.append(_outcomes(p, https_upstream, 20))
            assert p.hits() == (runs[-1].count("reset"),)
    assert runs[0] == runs[1]
    assert 0 < runs[0].count("reset") < 20, runs[0]
    # and it is exactly what the core plan decides for that seed
    plan = FaultPlan([spec])
    probe = Request("GET", "https", "127.0.0.1", https_upstream.port, "/json", "", ())
    expected = ["ok" if plan.decide(probe, 0.0) is None else "reset" for _ in range(20)]
    assert runs[0] == expected


# -- a fault never breaks the proxy -----------------------------------------------------


def test_faults_on_empty_and_binary_bodies_leave_other_flows_alone(http_upstream,
                                                                   fault_proxy, cassette_dir):
    host, port = http_upstream.host, http_upstream.port

    def it(path: str, body: bytes, ctype: str, encoding: str | None = None) -> Interaction:
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        if encoding:
            headers.append(("Content-Encoding", encoding))
        return Interaction(Request("GET", "http", host, port, path, "", ()),
                           Response(200, "OK", tuple(headers), body),
                           recorded_at=1_767_225_600.0, ttfb=0.0, duration=0.0)

    save_cassette(cassette_path(cassette_dir, "edge"), [
        it("/empty-json", b"", "application/json"),
        it("/empty-random", b"", "application/octet-stream"),
        it("/empty-cut", b"", "text/plain"),
        it("/png", PNG_BODY, "image/png"),
        it("/bad-gzip", b"not gzip at all", "application/json", "gzip"),
        it("/json", JSON_BODY, "application/json"),
        it("/empty-gzip", b"", "application/json", "gzip"),
    ])
    rules = ["corrupt@*/empty-json", "corrupt=random@*/empty-random", "truncate@*/empty-cut",
             "corrupt@*/png", "truncate,fraction=0.9@*/png", "corrupt@*/bad-gzip",
             "latency=recorded,factor=3@*/json", "corrupt@*/empty-gzip"]
    with fault_proxy("edge", RecordMode.NONE, rules) as p:
        got = p.curl(http_upstream.url("/empty-json"))
        assert got.rc == 0 and got.body == b"{"
        got = p.curl(http_upstream.url("/empty-random"))
        assert got.rc == 0 and len(got.body) == 16
        got = p.curl(http_upstream.url("/empty-cut"))
        assert got.rc == 18 and got.body == b""  # announced 1 byte, sent none
        got = p.curl(http_upstream.url("/png"))  # corrupt comes first: truncate is shadowed
        assert got.rc == 0 and got.body != PNG_BODY
        got = p.curl(http_upstream.url("/bad-gzip"))
        assert got.rc == 0 and got.status == 200 and not _is_json(got.body)
        # an empty gzip body: Content-Encoding dropped too (mitmproxy 12's decode() skips
        # empty bodies), so the client gets the bad JSON as it is, not gzip-encoded
        got = p.curl(http_upstream.url("/empty-gzip"))
        assert got.rc == 0 and got.body == b"{" and got.header("Content-Encoding") is None
        # the other route still replays, untouched
        for _ in range(2):
            got = p.curl(http_upstream.url("/json"))
            assert got.rc == 0 and got.body == JSON_BODY
        assert p.hits() == (1, 1, 1, 1, 0, 1, 2, 1)
    assert http_upstream.total_requests == 0
