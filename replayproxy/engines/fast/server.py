"""The fast engine: a lean asyncio HTTP/1.1 server that carries out the pipeline's plans.

It serves replay only (the decision pipeline never says ``Forward`` to it: see
``replayproxy.engines.choice``): forward-proxy requests in absolute form, reverse
listeners, and HTTPS through CONNECT with TLS terminated here (``tls``). Keep-alive,
pipelining and chunked request bodies are handled; requests are answered in order.

The fast path: a request head's exact bytes map to its parsed form, and head plus body
to the ``Request`` built from them, so a request seen before skips parsing; the same
``Request`` object then hits the session's redaction cache and the index's memo. The
pipeline still decides every request (sequences and faults stay exact); a recorded
response's bytes are assembled once per cassette position.

Runs on its own thread and event loop, like the mitm engine, so synchronous code (the
CLI, a pytest fixture) can start it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from replayproxy.decision.pipeline import FaultAnswer, Pipeline, Planned
from replayproxy.decision.session import CassetteSession, Replay, Unmatched
from replayproxy.decision.sessions import SessionRefused, Sessions, session_name
from replayproxy.decision.websocket import replay_problem
from replayproxy.engines.choice import fast_engine_can_serve
from replayproxy.engines.fast import answers
from replayproxy.engines.fast.http1 import (
    MAX_HEAD,
    Head,
    HttpError,
    assemble,
    own_reason,
    parse_head,
    read_chunked,
    set_header,
)
from replayproxy.engines.fast.tls import Certificates
from replayproxy.engines.listening import Listening
from replayproxy.errors import ConfigError, ProxyStartError, ReplayproxyError
from replayproxy.faults.effects import Corrupt, Hold, RefuseConnect, Reset, Respond, Truncate
from replayproxy.faults.plan import FaultAction
from replayproxy.limits import DEFAULT_LIMITS, ConnectionTable, Limits, connection_cap
from replayproxy.model import Request, Response, format_url
from replayproxy.upstream import reverse_targets

if TYPE_CHECKING:
    from replayproxy.engines.mitm.ca import CA

__all__ = ["FastProxy"]

log = logging.getLogger("replayproxy")

_START_TIMEOUT = 30.0
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_CACHED_BODY = 64 * 1024
_CACHE_HEADS = 4096
_CACHE_RESPONSES = 20_000
_PAUSE_AT = 4 * 1024 * 1024
_CONNECTED = b"HTTP/1.1 200 Connection established\r\n\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Where:
    """Where the requests of a connection go: ``scheme`` None for the forward proxy
    (absolute-form targets), else a tunnel's or reverse listener's upstream. Shared by
    every connection to the same place, with the parsed heads seen there."""

    __slots__ = ("heads", "host", "port", "reverse", "scheme")

    def __init__(self, scheme: str | None, host: str = "", port: int = 0,
                 reverse: bool = False) -> None:
        self.scheme, self.host, self.port, self.reverse = scheme, host, port, reverse
        self.heads: dict[bytes, Head] = {}


class _Tls:
    """TLS over memory buffers: bytes from the client in, plain text out, and back."""

    __slots__ = ("incoming", "obj", "outgoing", "ready")

    def __init__(self, context: ssl.SSLContext) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.ready = False

    def feed(self, data: bytes) -> bytes:
        """Decrypt what arrived (the handshake first). Raises ssl.SSLError on a failed
        handshake, EOFError when the client closed TLS."""
        self.incoming.write(data)
        if not self.ready:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.ready = True
        parts = []
        while True:
            try:
                chunk = self.obj.read(262144)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                raise EOFError from None
            if not chunk:
                break
            parts.append(chunk)
        return b"".join(parts)

    def encrypt(self, data: bytes) -> bytes:
        self.obj.write(data)
        return self.outgoing.read()


class _Conn(asyncio.Protocol):
    """One client connection: requests parsed, decided and answered in order."""

    def __init__(self, engine: FastProxy, where: Where) -> None:
        self.engine = engine
        self.where = where
        self.pipeline = engine.pipeline
        """The session this connection's requests go to (a CONNECT may name one)."""
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.tls: _Tls | None = None
        self.tunnel: tuple[str, int] | None = None
        """The CONNECT target, until the tunnel's first bytes say TLS or not."""
        self.busy = False
        self.closed = False
        self.write_paused = False
        self.read_paused = False
        self.continued = False
        self.eof = False
        self.discarding = False
        self.port = 0
        """The proxy port the client connected to."""
        self.last_received: float | None = None
        """When bytes last came in (for the header and idle timeouts)."""
        self.task: asyncio.Task[None] | None = None

    # -- asyncio ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sockname = transport.get_extra_info("sockname")
        self.port = int(sockname[1]) if sockname else 0
        self.engine.connections.add(self)
        admitted, evict = self.engine.table.admit(self, time.time())
        if not admitted:
            log.warning("refused a connection: %d are open with a request in progress "
                        "each, the most allowed; raise max_connections in [limits] if this "
                        "is not a flood", self.engine.table.cap)
            self.abort()
            return
        if isinstance(evict, _Conn):
            log.info("closing the connection waiting longest, to make room (%d connections "
                     "open)", len(self.engine.table))
            evict.abort()
        if self.engine.pipeline is not None:
            self.engine.pipeline.session.note_connection()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.engine.connections.discard(self)
        self.engine.table.closed(self)
        if self.task is not None:
            self.task.cancel()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.process()

    def eof_received(self) -> bool:
        self.eof = True
        if self.discarding:
            self.abort()
            return True
        if not self.busy:
            self.close()
        return True  # a pipelined request still being answered finishes first

    def data_received(self, data: bytes) -> None:
        self.last_received = time.time()
        if self.closed or self.discarding:
            return
        if self.tunnel is not None and self.tls is None:
            host, port = self.tunnel
            if data[:1] == b"\x16":
                self.tls = _Tls(self.engine.certificates.context(host))
            else:  # plain HTTP in the tunnel
                self.tunnel = None
                self.where = self.engine.where("http", host, port)
        if self.tls is not None:
            data = self._decrypt(data)
            if not data:
                return
        self.buf += data
        if self.busy or self.write_paused:
            if len(self.buf) > _PAUSE_AT and self.transport is not None:
                self.transport.pause_reading()
                self.read_paused = True
            return
        self.process()

    def _decrypt(self, data: bytes) -> bytes:
        assert self.tls is not None
        handshaken = self.tls.ready
        try:
            plain = self.tls.feed(data)
        except EOFError:
            self.close()
            return b""
        except ssl.SSLError as e:
            self._flush_tls()
            host = self.tunnel[0] if self.tunnel else self.where.host
            message = e.reason or str(e)
            if "ALERT" in message.upper():  # the client said no to the certificate
                log.warning("a client refused the proxy's certificate for %s: %s", host, message)
                if self.pipeline is not None:
                    self.pipeline.session.note_refusal(host, message)
            else:
                log.info("TLS handshake with a client for %s failed: %s", host, message)
            self.abort()
            return b""
        if not handshaken and self.tls.ready and self.tunnel is not None:
            host, port = self.tunnel
            self.tunnel = None
            self.where = self.engine.where("https", host, port)
        self._flush_tls()
        return plain

    def _flush_tls(self) -> None:
        if self.tls is not None and self.transport is not None:
            pending = self.tls.outgoing.read()
            if pending:
                self.transport.write(pending)

    # -- output -------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            return
        if self.tls is not None:
            data = self.tls.encrypt(data)
        self.transport.write(data)

    def close(self) -> None:
        """Close after what was written (TLS: with a close_notify)."""
        if self.closed or self.transport is None:
            return
        self.closed = True
        if self.tls is not None and self.tls.ready:
            with contextlib.suppress(ssl.SSLError):
                self.tls.obj.unwrap()
            self._flush_tls()
        self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    def refuse(self, error: HttpError) -> None:
        """Answer a request the engine will not serve, then close."""
        log.info("bad request from a client: %s", error.message)
        response = answers.plain(error.status, error.message + "\n", "bad-request")
        headers = list(response.headers)
        set_header(headers, "Connection", "close")
        self.write(assemble(Response(response.status, own_reason(error.status),
                                     tuple(headers), response.body))[0])
        if self.tls is not None or self.transport is None or not self.transport.can_write_eof():
            self.close()
            return
        # a lingering close, as servers do: what the client still sends is read and
        # dropped (closing on unread data would reset the connection, and the client
        # could lose the answer), until it closes or for 2 s at most
        self.discarding = True
        self.buf.clear()
        self.transport.write_eof()
        asyncio.get_running_loop().call_later(2, self.abort)

    # -- input --------------------------------------------------------------------------

    def process(self) -> None:
        """Answer every complete request in the buffer, in order, until one needs to
        wait (a fault, a slow client)."""
        buf = self.buf
        while buf and not self.busy and not self.closed and not self.write_paused \
                and self.tunnel is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0 or end > MAX_HEAD:
                if len(buf) > MAX_HEAD:
                    self.refuse(HttpError(431, f"request head over {MAX_HEAD} bytes"))
                elif buf[:2] == b"\r\n":
                    del buf[:2]  # a blank line before a request is ignored (RFC 9112 2.2)
                    continue
                break
            raw = bytes(buf[:end])
            where = self.where
            head = where.heads.get(raw)
            try:
                if head is None:
                    if raw.startswith(b"\r\n"):
                        del buf[:2]
                        continue
                    head = parse_head(raw)
                    if len(where.heads) >= _CACHE_HEADS:
                        where.heads.clear()
                    where.heads[raw] = head
                start = end + 4
                if head.length >= 0:
                    stop = start + head.length
                    if len(buf) < stop:
                        self._continue(head)
                        break
                    body = bytes(buf[start:stop])
                else:
                    framed = read_chunked(buf, start)
                    if framed is None:
                        self._continue(head)
                        break
                    body, stop = framed
            except HttpError as e:
                self.refuse(e)
                return
            del buf[:stop]
            self.continued = False
            self._request(head, body)
        if self.read_paused and len(buf) < _PAUSE_AT // 4 and self.transport is not None \
                and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    def _continue(self, head: Head) -> None:
        if head.expect_continue and not self.continued:
            self.continued = True
            self.write(_CONTINUE)

    def _request(self, head: Head, body: bytes) -> None:
        started = time.time()
        request = head.requests.get(body)
        if request is None:
            if head.method == "CONNECT":
                self._connect(head)
                return
            try:
                request = self.engine.request_of(self.where, head, body)
            except HttpError as e:
                self.refuse(e)
                return
            if len(body) <= _CACHED_BODY:
                if len(head.requests) >= 64:
                    head.requests.clear()
                head.requests[body] = request
        engine = self.engine
        pipeline = self._pipeline(head, request.method, request.url)
        if pipeline is None:
            return
        try:
            planned = pipeline.decide(request, time.monotonic())
        except Exception as e:
            self._failed(pipeline, request, e, head.close)
            return
        plan = planned.plan
        if isinstance(plan, Replay) and plan.served.interaction.response.status == 101:
            self._switch(pipeline, plan, request, head.close)
            return
        if planned.fault is None:
            if isinstance(plan, Replay):
                data, close = engine.replay_bytes(pipeline, plan, request.method)
                self.write(data)
                if close or head.close:
                    self.close()
                engine.table.ready(self, started)
                return
            if isinstance(plan, Unmatched):
                self._send(engine.unmatched(plan, head), request.method, head.close)
                return
        self.busy = True
        engine.table.begin(self, "request")  # never timed out while it is carried out
        self.task = asyncio.ensure_future(self._carry_out(pipeline, head, request, planned,
                                                          started))

    def _pipeline(self, head: Head, method: str, url: str) -> Pipeline | None:
        """The pipeline for a request (``_session``), if this engine can serve its
        cassette now (a cassette swapped in by ``ProxyRun.use_cassette`` may record, or
        hold HTTP/2 records); else it answers 502 naming the fix and returns None."""
        pipeline = self._session(head, method, url)
        if pipeline is None:
            return None
        why_not = self.engine.cannot_serve(pipeline)
        if why_not is None:
            return pipeline
        message = (f"cassette {pipeline.session.name!r}: the fast engine cannot serve it "
                   f"({why_not}): start the proxy with --engine mitmproxy")
        log.warning("refused %s %s: %s", method, url, message)
        self._send(answers.plain(502, message + "\n", "session"), method, head.close)
        return None

    def _session(self, head: Head, method: str, url: str) -> Pipeline | None:
        """The pipeline for a request: the session its Proxy-Authorization names (as
        the mitm engine reads it), else this connection's (a tunnel's CONNECT may have
        named one), else the run's own. None after answering 407, or 502 for a session
        this engine cannot serve (one that records, say)."""
        sessions = self.engine.sessions
        if sessions is None or (self.where.reverse and self.pipeline is not None):
            return self.pipeline
        try:
            name = sessions.on_port(self.port)  # a session's own port
            if name is None:
                credential = next((v for k, v in head.headers
                                   if k.lower() == "proxy-authorization"), None)
                if credential is None and self.pipeline is not None:
                    return self.pipeline
                name = session_name(credential)
            pipeline = sessions.pipeline(name)
        except SessionRefused as e:
            log.warning("refused %s %s: %s", method, url, e)
            response = answers.plain(407, f"{e}\n", "session")
            headers = [*response.headers,
                       ("Proxy-Authenticate", 'Basic realm="replayproxy: name a cassette"')]
            self._send(Response(407, response.reason, tuple(headers), response.body), method,
                       head.close)
            return None
        if method == "CONNECT":
            self.pipeline = pipeline
        return pipeline

    def _switch(self, pipeline: Pipeline, plan: Replay, request: Request,
                close: bool) -> None:
        """A recorded protocol switch (101): an error, as the mitm engine says it, never a
        dead 101 (a cassette with WebSocket messages is served by mitmproxy)."""
        problem = replay_problem(plan.served.interaction, request) or \
            "the fast engine does not replay WebSockets: use --engine mitmproxy"
        log.error("cannot replay %s %s: %s", request.method, request.url, problem)
        pipeline.session.summary.errors.append(f"{request.method} {request.url}: {problem}")
        self._send(answers.plain(502, f"replayproxy: {problem}\n", "error"), request.method,
                   close)

    def _failed(self, pipeline: Pipeline, request: Request, e: Exception,
                close: bool) -> None:
        """Never let a failure to decide go unanswered: 500, listed in the summary."""
        if isinstance(e, ReplayproxyError):
            message = e.render({})
            log.error("cannot answer %s %s: %s", request.method, request.url, message)
        else:
            message = f"replayproxy internal error: {e!r}"
            log.exception("replayproxy failed on %s", request.url)
        pipeline.session.summary.errors.append(f"{request.method} {request.url}: {message}")
        self._send(answers.plain(500, message + "\n", "error"), request.method, close)

    def _send(self, response: Response, method: str, close: bool) -> None:
        data, closes = assemble(response, method)
        self.write(data)
        if close or closes:
            self.close()

    def _connect(self, head: Head) -> None:
        try:
            target = urlsplit(f"//{head.target}")
            host, port = target.hostname, target.port
        except ValueError:
            host = port = None
        if not host or not port or self.where.scheme is not None:
            self.refuse(HttpError(400, f"bad CONNECT target {head.target!r}: give HOST:PORT"))
            return
        pipeline = self._pipeline(head, "CONNECT", f"{host}:{port}")
        if pipeline is None:
            return
        action = pipeline.decide_connect(host, port, time.monotonic())
        if action is not None:
            log.info("fault: refusing CONNECT %s:%d", host, port)
            self._send(answers.refused(), "CONNECT", head.close)
            return
        self.write(_CONNECTED)
        self.tunnel = (host, port)
        self.engine.table.ready(self, time.time())
        if self.buf:  # the client did not wait for the answer
            data = bytes(self.buf)
            self.buf.clear()  # in place: ``process`` holds this very buffer
            self.data_received(data)

    # -- plans that wait ----------------------------------------------------------------

    async def _carry_out(self, pipeline: Pipeline, head: Head, request: Request,
                         planned: Planned, started: float) -> None:
        try:
            await self._answer(head, request, planned, started)
        except asyncio.CancelledError:
            pass
        except Exception as e:
            if not self.closed:
                self._failed(pipeline, request, e, True)
        finally:
            self.busy = False
            self.task = None
            self.engine.table.end(self, "request", time.time())
            if not self.closed:
                self.process()
                if self.eof and not self.busy:
                    self.close()

    async def _answer(self, head: Head, request: Request, planned: Planned,
                      started: float) -> None:
        plan = planned.plan
        method = request.method
        if isinstance(plan, FaultAnswer):
            terminal = plan.action.terminal
            what = {Respond: "status", Reset: "reset", Hold: "timeout",
                    RefuseConnect: "refused"}.get(type(terminal), "fault")
            log.info("fault: %s on %s %s", what, method, request.url)
            if isinstance(terminal, Reset):
                await _wait(plan.action, started, None)
                self.close()
                return
            if isinstance(terminal, Hold):
                await asyncio.sleep(terminal.max_seconds)
                self.close()
                return
            response = answers.refused() if isinstance(terminal, RefuseConnect) \
                else answers.fault_response(terminal) if isinstance(terminal, Respond) \
                else answers.plain(500, "replayproxy: unknown fault\n", "error")
            await self._after(response, plan.action, method, head.close, started, None,
                              request.url)
            return
        action = planned.fault
        assert action is not None
        if isinstance(plan, Replay):
            recorded = plan.served.whole()  # a big body left in the cassette, copied
            if action.trickle is not None:
                await self._trickle(recorded.response, action, method, head.close, started,
                                    recorded.ttfb, request.url)
                return
            await self._after(recorded.response, action, method, head.close, started,
                              recorded.ttfb, request.url)
            return
        assert isinstance(plan, Unmatched)
        await self._after(self.engine.unmatched(plan, head), action, method, head.close,
                          started, None, request.url)

    async def _after(self, response: Response, action: FaultAction, method: str,
                     close: bool, started: float, recorded: float | None, url: str) -> None:
        """What a fault does to a response on its way out: wait, break the body, and a
        slow body that is not trickled waits as long as sending it would take."""
        if recorded is None:
            recorded = max(0.0, time.time() - started)
        await _wait(action, started, recorded)
        response = self._broken(response, action, url)
        if action.trickle is not None:
            await asyncio.sleep(len(response.body) / max(action.trickle.bytes_per_second, 1))
        self._send(response, method, close)

    def _broken(self, response: Response, action: FaultAction, url: str) -> Response:
        terminal = action.terminal
        if isinstance(terminal, (Truncate, Corrupt)):
            log.info("fault: %s body on %s", type(terminal).__name__.lower(), url)
            return answers.break_body(response, terminal)
        return response

    async def _trickle(self, response: Response, action: FaultAction, method: str,
                       close: bool, started: float, recorded: float, url: str) -> None:
        """Send a replayed body at the slow_body rate, then close. A response with no body
        (to a HEAD) is sent as any other, the connection kept unless ``close``: closing it
        unannounced would break the client's next request on it."""
        assert action.trickle is not None
        await _wait(action, started, recorded)
        original = len(response.body)
        response = self._broken(response, action, url)
        if not answers.has_body(method, response):
            self._send(response, method, close)
            return
        announced = max(original, 1) if isinstance(action.terminal, Truncate) else None
        rate = max(action.trickle.bytes_per_second, 1)
        log.info("fault: slow_body at %d B/s on %s", rate, url)
        self.write(answers.trickle_head(response, announced))
        body = response.body
        step = max(1, rate // 10)  # ten writes a second
        for start in range(0, len(body), step):
            if self.closed:
                return
            self.write(body[start:start + step])
            if start + step < len(body):
                await asyncio.sleep(step / rate)
        self.close()


async def _wait(action: FaultAction, started: float, recorded: float | None) -> None:
    """Sleep for every latency rule that fired, in rule order."""
    for delay in action.delays:
        seconds = delay.wait(time.time() - started, recorded)
        if seconds > 0:
            await asyncio.sleep(seconds)


class FastProxy(Listening):
    """The fast engine on its own thread, serving ``pipeline`` (replay only).

    The same surface as the mitm engine's ``Proxy``: ``start``/``stop``, the URLs and
    the environment a child needs.

    Args:
        pipeline: the decision for this run's own cassette (None: named sessions only).
        ca: the CA whose certificates HTTPS tunnels present.
        host: listen address (default 127.0.0.1 only).
        port: forward-proxy port; 0 picks a free one.
        reverse: upstream base URLs to also serve, each on its own port.
        sessions: the run's named sessions (``decision.sessions``): a client naming one
            in its proxy URL is served from it, if it replays only.
        limits: the header and idle timeouts and the connection cap (``[limits]``),
            applied as the mitm engine applies them (``replayproxy.limits``).
        reuse_port: bind with ``SO_REUSEPORT``, sharing ``port`` (and ``reverse_ports``)
            with other processes serving the same run (``serve --workers``).
        reverse_ports: each ``reverse`` upstream's port [default: a free one each].
    """

    ca: CA

    def __init__(self, pipeline: Pipeline | None, *, ca: CA, host: str = "127.0.0.1",
                 port: int = 0,
                 reverse: str | Sequence[str] | None = None,
                 sessions: Sessions | None = None, limits: Limits = DEFAULT_LIMITS,
                 reuse_port: bool = False, reverse_ports: Sequence[int] = ()) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"invalid {{port}} {port}: use 0 (a free port) up to 65535")
        self.reuse_port = reuse_port
        self.pipeline = pipeline
        self.sessions = sessions
        self.ca = ca
        self.host = host
        self.port = port
        self.reverses = reverse_targets(reverse)
        self.reverse = self.reverses[0] if self.reverses else None
        self.reverse_ports = list(reverse_ports) or [0] * len(self.reverses)
        self.proxy_address: tuple[str, int] | None = None
        self.reverse_addresses: dict[str, tuple[str, int]] = {}
        self.certificates = Certificates(ca.directory, ca.cert)
        self.connections: set[_Conn] = set()
        self.limits = limits
        self.table = ConnectionTable(limits, connection_cap(limits.max_connections,
                                                            _open_files()))
        self._sweeper: asyncio.Task[None] | None = None
        self._wheres: dict[tuple[str, str, int], Where] = {}
        self._forward = Where(None)
        self._own: dict[int, Where] = {}
        self._responses: weakref.WeakKeyDictionary[
            CassetteSession, dict[tuple[int, bool], tuple[bytes, bool]]] = \
            weakref.WeakKeyDictionary()
        """Each cassette's response bytes, by its session (named sessions have their own,
        and ``use_cassette`` swaps a new one in)."""
        self._servable: weakref.WeakKeyDictionary[CassetteSession, str | None] = \
            weakref.WeakKeyDictionary()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.base_events.Server] = []

    # -- what the connections ask -------------------------------------------------------

    def where(self, scheme: str, host: str, port: int) -> Where:
        """The shared ``Where`` of a tunnel to ``scheme://host:port``."""
        key = (scheme, host, port)
        found = self._wheres.get(key)
        if found is None:
            found = self._wheres[key] = Where(scheme, host, port)
        return found

    def cannot_serve(self, pipeline: Pipeline) -> str | None:
        """Why this engine cannot serve a pipeline's cassette (None: it can); asked once
        per cassette session (a named session's, or one ``use_cassette`` swapped in)."""
        session = pipeline.session
        if session not in self._servable:
            self._servable[session] = fast_engine_can_serve(
                session.mode, session.index.cassette, pipeline.faults.list())
        return self._servable[session]

    def request_of(self, where: Where, head: Head, body: bytes) -> Request:
        """The ``Request`` as the mitm engine converts it: absolute-form targets in
        the forward proxy, Proxy-* headers dropped, Expect dropped once answered, the
        Host header of a reverse listener's upstream."""
        target = head.target
        scheme, host, port = where.scheme, where.host, where.port
        reverse = where.reverse
        if scheme is None or not target.startswith("/"):
            if target.startswith("/") or "://" not in target:
                raise HttpError(400, f"{head.method} {target[:100]}: this is a proxy; send "
                                "requests in absolute form (http://host/path) or CONNECT")
            parts = urlsplit(target)
            try:
                given = parts.port
            except ValueError:
                given = -1
            host, scheme = parts.hostname or "", parts.scheme.lower()
            if scheme not in ("http", "https") or not host or given == -1:
                raise HttpError(400, f"bad request target {target[:100]!r}")
            port = given or (443 if scheme == "https" else 80)
            own = self._own.get(port) if scheme == "http" and host in _LOOPBACK else None
            if own is not None:
                assert own.scheme is not None
                scheme, host, port, reverse = own.scheme, own.host, own.port, True
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
        path, _, query = target.partition("?")
        headers = [(k, v) for k, v in head.headers if not k.lower().startswith("proxy-")]
        if head.expect_continue:
            headers = [(k, v) for k, v in headers if k.lower() != "expect"]
        if reverse:
            set_header(headers, "Host", format_url(scheme, host, port, "").split("://", 1)[1])
        return Request(head.method, scheme, host, port, path, query, tuple(headers), body,
                       head.version)

    def replay_bytes(self, pipeline: Pipeline, plan: Replay, method: str
                     ) -> tuple[bytes, bool]:
        """The bytes of a recorded response, assembled once per cassette position."""
        cache = self._responses.get(pipeline.session)
        if cache is None:
            cache = self._responses[pipeline.session] = {}
        key = (plan.served.position, method == "HEAD")
        found = cache.get(key)
        if found is None:
            found = assemble(plan.served.whole().response, method)
            if len(found[0]) <= _CACHED_BODY * 16:
                if len(cache) >= _CACHE_RESPONSES:
                    cache.clear()
                cache[key] = found
        return found

    def unmatched(self, plan: Unmatched, head: Head) -> Response:
        for line in plan.message.splitlines():
            log.warning("%s", line)
        return answers.unmatched_response(plan, answers.accept_of(head.headers))

    # -- lifecycle ----------------------------------------------------------------------

    def _listen(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, port))
            sock.listen(1024)
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:
                raise ProxyStartError(
                    f"cannot listen on {self.host}:{port}: the port is taken; choose "
                    "another with {port}, or {port} 0 for a free one", port=port) from None
            raise ProxyStartError(f"cannot listen on {self.host}:{port}: {e.strerror}; "
                                  "choose another address or {port}", port=port) from None
        sock.setblocking(False)
        return sock

    def start(self) -> FastProxy:
        """Start listening; return when the proxy accepts connections.

        Raises:
            ProxyStartError: a port could not be bound.
        """
        socks = [self._listen(self.port)]
        try:
            socks += [self._listen(p) for p in self.reverse_ports]
        except BaseException:
            for s in socks:
                s.close()
            raise
        self.proxy_address = socks[0].getsockname()[:2]
        for target, sock in zip(self.reverses, socks[1:], strict=True):
            addr = sock.getsockname()[:2]
            self.reverse_addresses[target] = addr
            parts = urlsplit(target)
            assert parts.hostname is not None
            scheme = parts.scheme
            where = Where(scheme, parts.hostname, parts.port or
                          (443 if scheme == "https" else 80), reverse=True)
            self._own[addr[1]] = where
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = _new_loop()
            self._loop = loop
            try:
                for sock in socks:
                    where = self._own.get(sock.getsockname()[1], self._forward) \
                        if sock is not socks[0] else self._forward
                    self._servers.append(loop.run_until_complete(loop.create_server(
                        lambda w=where: _Conn(self, w), sock=sock)))  # type: ignore[misc]
            except BaseException as e:
                failure.append(e)
                ready.set()
                loop.close()
                return
            self._sweeper = loop.create_task(self._sweep_forever())
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._shutdown())
                loop.close()

        self._thread = threading.Thread(target=run, name="replayproxy-fast", daemon=True)
        self._thread.start()
        if not ready.wait(_START_TIMEOUT) or failure:
            self.stop()
            raise ProxyStartError(f"the proxy did not start: {failure[:1]!r}")
        return self

    def add_listener(self) -> tuple[str, int]:
        """Listen on one more (free) port as a forward proxy, while running; its address
        (a session's port of its own). Thread-safe: called from the control API's thread.

        Raises:
            ProxyStartError: no port could be bound.
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError("the proxy is not running")
        sock = self._listen(0)

        async def serve() -> None:
            self._servers.append(await loop.create_server(
                lambda: _Conn(self, self._forward), sock=sock))

        asyncio.run_coroutine_threadsafe(serve(), loop).result(_START_TIMEOUT)
        host, port = sock.getsockname()[:2]
        return str(host), int(port)

    async def _sweep_forever(self) -> None:
        """Close the connections past the header or idle timeout, a few times a timeout."""
        tick = min(1.0, max(0.05, min(self.limits.header_timeout,
                                      self.limits.idle_timeout) / 5))
        while True:
            await asyncio.sleep(tick)
            expired = list(self.table.expired(
                time.time(), lambda conn: cast(_Conn, conn).last_received))
            for conn, reason in expired:
                self.table.closed(conn)
                log.info("closing a client connection: %s", reason)
                cast(_Conn, conn).abort()

    async def _shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.abort()
        tasks = [c.task for c in self.connections if c.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for _ in range(100):  # the aborted transports finish closing (uvloop warns else)
            if not self.connections:
                break
            await asyncio.sleep(0.01)
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1)
        for _ in range(3):
            await asyncio.sleep(0)

    def stop(self) -> None:
        """Stop serving and close every connection. Idempotent."""
        if self._thread is None:
            return
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(60)
        self._thread = None
        self.certificates.close()

    def __enter__(self) -> FastProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()



def _open_files() -> int | None:
    """The soft limit on open files (None: unlimited)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (optional), else asyncio's."""
    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()  # type: ignore[no-any-return, unused-ignore]
