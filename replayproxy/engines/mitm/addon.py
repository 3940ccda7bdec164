"""The mitmproxy addon of replayproxy: it carries out the decision pipeline's plans.

A thin adapter. In ``request`` it converts the flow into a ``Request`` once, asks the
``Pipeline`` for a plan and carries it out: a fault's own answer, a recorded response,
the "unmatched" answer, or nothing (the request goes upstream). In ``response`` it
records what came from upstream, then applies what a fault does to the response
(latency, truncation, corruption, a slow body). It decides nothing itself.

The state of a flow is one typed ``FlowState`` in ``flow.metadata[STATE]``.

Given a ``Pipeline``, the addon uses it; otherwise it builds one from its options
(``replayproxy_cassette`` and friends), which is how the mitmdump scripts use it::

    mitmdump -s record.py --set replayproxy_cassette=NAME
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from mitmproxy import connection, ctx, exceptions, http, tls
from mitmproxy.proxy import server_hooks

from replayproxy.config import home_dir, load_settings
from replayproxy.decision.alpn import AlpnPolicy
from replayproxy.decision.failures import CAUSE_HEADER, MARKER, TIMEOUT_MARKER, WAITED_HEADER
from replayproxy.decision.pipeline import FaultAnswer, Pipeline, Planned
from replayproxy.decision.session import CassetteSession, Forward, Replay, Unmatched
from replayproxy.decision.sessions import SessionRefused, Sessions, session_name
from replayproxy.decision.websocket import UnexpectedMessage, replay_problem, websocket_faults
from replayproxy.engines.mitm import h2, http1_trailers, streams, trickle, websocket
from replayproxy.engines.mitm.convert import (
    bad_gateway,
    fault_response,
    interaction_from_flow,
    plain_response,
    request_from_flow,
    response_from_flow,
    to_flow_response,
)
from replayproxy.errors import MITMPROXY_WORDS, ReplayproxyError
from replayproxy.faults.effects import Corrupt, Hold, RefuseConnect, Reset, Respond, Truncate
from replayproxy.faults.mangle import corrupt_body, truncate_body
from replayproxy.faults.plan import FaultAction, FaultPlan
from replayproxy.faults.spec import parse_fault
from replayproxy.model import Interaction, RecordMode, Request
from replayproxy.redaction.redactor import Redactor, load_key
from replayproxy.streams import broken_off, parse_pace

__all__ = ["STATE", "FlowState", "ReplayproxyAddon", "Role"]

log = logging.getLogger("replayproxy")

_UNAVAILABLE = 14
"""The gRPC status of an unmatched call: what gRPC makes of the 502 others get."""

STATE = "replayproxy"
"""The ``flow.metadata`` key of a flow's ``FlowState``."""

_PROTOCOL_ERROR = 1002
"""The close code of a WebSocket peer that sent something that is not WebSocket."""

_OFFLINE = (
    "replayproxy is replaying offline: no upstream connections (record with "
    "`replayproxy record` or use --record-mode new_episodes)"
)


class Role(Enum):
    """Whose flow this is."""

    OURS = "ours"
    """A client's request, planned by the pipeline."""
    OTHER = "other"
    """Answered by another addon before ours (proxy authentication, mitmproxy 12's CRL):
    not the upstream's response, so never recorded."""
    FETCH = "fetch"
    """The upstream copy of a live request with a slow body: recorded as a plain live
    exchange, no fault applies to it."""


@dataclass(slots=True)
class FlowState:
    """What replayproxy knows about one flow."""

    role: Role
    planned: Planned | None = None
    pipeline: Pipeline | None = None
    """The session's pipeline that planned it (the run's own unless a session is named)."""
    request: Request | None = None
    """The request as converted when it came in (before any rewriting)."""
    recorded_ttfb: float | None = None
    """Time to first byte of the recorded response, for ``first_byte`` latency."""
    trickled: bool = False
    """The response comes from the trickle server: stream it, touch it no more."""

    def __deepcopy__(self, memo: dict[int, Any]) -> FlowState:
        # a copied flow (``flow.copy()``) shares the pipeline; the rest is immutable
        return dataclasses.replace(self)


def _state(flow: http.HTTPFlow) -> FlowState | None:
    state = flow.metadata.get(STATE)
    return state if isinstance(state, FlowState) else None


def _mark_fetch(flow: http.HTTPFlow, pipeline: Pipeline | None) -> None:
    flow.metadata[STATE] = FlowState(Role.FETCH, Planned(Forward()), pipeline)


async def _wait(flow: http.HTTPFlow, action: FaultAction, recorded: float | None) -> None:
    """Sleep for every latency rule that fired, in rule order."""
    for delay in action.delays:
        elapsed = time.time() - flow.request.timestamp_start
        seconds = delay.wait(elapsed, recorded)
        if seconds > 0:
            await asyncio.sleep(seconds)


def _break_body(flow: http.HTTPFlow, terminal: object, resp: http.Response) -> int | None:
    """Apply a ``truncate`` or ``corrupt`` to ``resp``; for a truncate, return the
    length announced for the whole body (the part sent is shorter)."""
    if isinstance(terminal, Truncate):
        body = resp.raw_content or b""
        part = truncate_body(body, terminal)
        resp.raw_content = part
        announced = max(len(body), 1)
        resp.headers["content-length"] = str(announced)
        resp.headers.pop("transfer-encoding", None)
        resp.headers["connection"] = "close"
        log.info("fault: truncate %d of %d bytes on %s", len(part), len(body),
                 flow.request.pretty_url)
        return announced
    if isinstance(terminal, Corrupt):
        # decode and drop Content-Encoding by hand: mitmproxy 12's ``Message.decode()``
        # does nothing on an empty body, so an empty gzip body kept its header and the
        # mangled bytes went out gzip-encoded again (11 and 12 now send the same)
        decoded = resp.get_content(strict=False) or b""
        resp.headers.pop("content-encoding", None)
        resp.content = corrupt_body(decoded, terminal)
        log.info("fault: corrupt body on %s", flow.request.pretty_url)
    return None


def _unexpected(pipeline: Pipeline, unexpected: UnexpectedMessage) -> None:
    """A replayed WebSocket's client sent what the recording does not hold."""
    for line in unexpected.message.splitlines():
        log.warning("%s", line)
    pipeline.session.note_unexpected(unexpected)


def _session_refused(message: str) -> http.Response:
    """407: the session the client named cannot be used (the reason in the body)."""
    response = plain_response(407, message + "\n", "session")
    response.headers["Proxy-Authenticate"] = 'Basic realm="replayproxy: name a cassette"'
    return response


def _refused() -> http.Response:
    return http.Response.make(502, b"replayproxy fault: connection refused\n",
                              {"X-Replayproxy": "fault"})


def _unmatched_response(flow: http.HTTPFlow, unmatched: Unmatched) -> http.Response:
    for line in unmatched.message.splitlines():
        log.warning("%s", line)
    if "json" in flow.request.headers.get("accept", "").lower():
        return http.Response.make(502, unmatched.as_json_bytes(),
                                  {"Content-Type": "application/json",
                                   "X-Replayproxy": "unmatched"})
    return plain_response(502, unmatched.message, "unmatched")


class ReplayproxyAddon:
    """Record, replay and inject faults, as a ``Pipeline`` plans per request.

    Args:
        pipeline: the decision for this run; None builds one from the addon's options.
        default_mode: the record mode when built from options.
        sessions: the run's sessions (see ``decision.sessions``): a client naming a
            cassette in its proxy URL is served from that session's pipeline.
        pace: how fast recorded streams are replayed: their recorded pacing times this
            (0 as fast as possible, 1 real time); from the options when built from them.
    """

    def __init__(self, pipeline: Pipeline | None = None, *,
                 default_mode: RecordMode = RecordMode.NONE,
                 sessions: Sessions | None = None, pace: float = 1.0) -> None:
        self.pipeline = pipeline
        self.default_mode = default_mode
        self.sessions = sessions
        self.pace = pace
        self._owns_pipeline = pipeline is None and sessions is None
        self._failed = False
        self._trickle = trickle.TrickleServer()
        self._tunnels: dict[str, Pipeline] = {}
        """The session of each client connection that named one (CONNECT tunnels)."""
        self._alpn: dict[int, AlpnPolicy] = {}
        """The protocol policy of each session's pipeline (by its id)."""
        http1_trailers.install()

        self._websockets = websocket.WebSocketServer()
        self._open_websockets: dict[str, http.HTTPFlow] = {}
        """Recorded WebSockets still open: written when they end, or when the proxy stops."""

    def _configured(self) -> bool:
        return self.pipeline is not None or self.sessions is not None

    def _named(self, flow: http.HTTPFlow) -> tuple[str | None, Pipeline | None]:
        """The session ``flow`` names (its port, its Proxy-Authorization, its tunnel's
        CONNECT) and its pipeline, else the run's own. Raises SessionRefused."""
        if self.sessions is None:
            return None, self.pipeline
        name = self.sessions.on_port(flow.client_conn.sockname[1]) \
            if flow.client_conn.sockname else None
        if name is None:
            name = session_name(flow.request.headers.get("proxy-authorization"))
        if name is None and flow.client_conn.id in self._tunnels:
            return None, self._tunnels[flow.client_conn.id]
        return name, self.sessions.pipeline(name)

    def _session(self, flow: http.HTTPFlow) -> Pipeline | None:
        """The pipeline serving ``flow``: the session its Proxy-Authorization (or its
        tunnel's CONNECT) names, else the run's own. None after answering 407."""
        try:
            name, pipeline = self._named(flow)
        except SessionRefused as e:
            log.warning("refused %s %s: %s", flow.request.method, flow.request.pretty_url, e)
            flow.metadata[STATE] = FlowState(Role.OTHER)
            flow.response = _session_refused(str(e))
            return None
        if name is not None and pipeline is not None:
            self._tunnels[flow.client_conn.id] = pipeline
        return pipeline

    # -- mitmdump options ---------------------------------------------------------------

    def load(self, loader: Any) -> None:
        loader.add_option(
            "replayproxy_cassette", str, "", "Name of the cassette to record into / replay from."
        )
        loader.add_option(
            "replayproxy_cassette_dir", str, "cassettes", "Directory holding the cassettes."
        )
        loader.add_option(
            "replayproxy_record_mode", str, self.default_mode.value,
            "When to record and when to replay.", choices=[m.value for m in RecordMode],
        )
        loader.add_option(
            "replayproxy_config", str, "",
            "Configuration file (default: replayproxy.toml or pyproject.toml in the "
            "current directory).",
        )
        loader.add_option(
            "replayproxy_strict", bool, False,
            "Treat requests beyond a recorded sequence as unmatched instead of repeating.",
        )
        loader.add_option(
            "replayproxy_fault", Sequence[str], [],
            "Inject a fault: KIND[=VALUE][,OPTION=VALUE...][@ROUTE] (repeatable).",
        )
        loader.add_option(
            "replayproxy_pace", str, "",
            "Replay recorded streams at their recorded pacing times this (0: as fast as "
            "possible, 1: real time) [default: the configuration's pace, else 1].",
        )

    def configure(self, updated: set[str]) -> None:
        if not self._owns_pipeline or not any(k.startswith("replayproxy_") for k in updated):
            return
        opts = ctx.options
        failed, self._failed = self._failed, False
        if not opts.replayproxy_cassette:
            if failed:
                # mitmproxy rolls the options back after our error and configures again
                # with the old ones: keep our error rather than replace it with this one
                return
            raise exceptions.OptionsError(
                "replayproxy: set the cassette name: --set replayproxy_cassette=NAME"
            )
        self._close()
        self._failed = True
        try:
            settings = load_settings(Path(opts.replayproxy_config) if opts.replayproxy_config
                                     else None)
            try:
                self.pace = parse_pace(opts.replayproxy_pace) if opts.replayproxy_pace \
                    else settings.pace
            except ValueError as e:
                raise exceptions.OptionsError(f"replayproxy_pace: {e}") from None
            session = CassetteSession(
                opts.replayproxy_cassette_dir,
                opts.replayproxy_cassette,
                RecordMode.parse(opts.replayproxy_record_mode),
                strict=opts.replayproxy_strict or settings.strict,
                match=settings.match,
                redactor=Redactor(settings.redact, load_key(home_dir())),
            )
            faults = FaultPlan(settings.faults)
            for spec in opts.replayproxy_fault:
                try:
                    faults.add(parse_fault(spec))
                except ValueError as e:
                    raise exceptions.OptionsError(f"replayproxy_fault {spec!r}: {e}") from None
            self.pipeline = Pipeline(session, faults)
            self._failed = False
        except ReplayproxyError as e:
            raise exceptions.OptionsError(e.render(MITMPROXY_WORDS)) from None
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from None

    # -- lifecycle ----------------------------------------------------------------------

    async def running(self) -> None:
        # mitmproxy's default "eager" strategy connects upstream as soon as a client opens
        # an HTTPS tunnel; replay must not, so switch to "lazy"
        replaying = (self.pipeline is not None and not self.pipeline.records) or (
            self.pipeline is None and self.sessions is not None)
        if replaying and ctx.options.connection_strategy != "lazy":
            ctx.options.update(connection_strategy="lazy")
        await self._trickle.start()
        await self._websockets.start()

    async def done(self) -> None:
        await self._trickle.stop()
        await self._websockets.stop()
        for flow in list(self._open_websockets.values()):
            self.websocket_end(flow)  # still open: keep what went over it so far
        self._close()

    def _close(self) -> None:
        if self.pipeline is not None and self._owns_pipeline:
            summary = self.pipeline.session.close()
            log.info("cassette %s: %d replayed, %d recorded, %d unmatched", summary.path,
                     summary.replayed, summary.recorded, summary.unmatched.total)

    # -- connections --------------------------------------------------------------------

    def client_connected(self, client: connection.Client) -> None:
        if self.pipeline is not None:
            self.pipeline.session.note_connection()

    def client_disconnected(self, client: connection.Client) -> None:
        self._tunnels.pop(client.id, None)

    def tls_failed_client(self, data: tls.TlsData) -> None:
        pipeline = self._tunnels.get(data.context.client.id, self.pipeline)
        if pipeline is None:
            return
        host = data.conn.sni or (data.context.server.address or ("", 0))[0]
        message = data.conn.error or "TLS handshake failed"
        log.warning("a client refused the proxy's certificate for %s: %s", host, message)
        pipeline.session.note_refusal(host, message)

    def tls_start_client(self, data: tls.TlsData) -> None:
        pipeline = self._tunnels.get(data.context.client.id, self.pipeline)
        policy = None
        if pipeline is not None:
            cassette = pipeline.session.index.cassette
            policy = self._alpn.get(id(pipeline))
            if policy is None or policy.cassette is not cassette:
                policy = self._alpn[id(pipeline)] = AlpnPolicy(
                    cassette, records=pipeline.records, http2=ctx.options.http2)
        h2.choose_protocol(data, policy)

    def tls_start_server(self, data: tls.TlsData) -> None:
        h2.upstream_offers(data)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        pipeline = self._tunnels.get(data.client.id, self.pipeline)
        if pipeline is None:
            if self.sessions is None:
                return
        elif pipeline.records:
            return
        # replay refuses every upstream connection; our loopback servers are not upstream
        if data.server.address not in (self._trickle.address, self._websockets.address) \
                or data.server.address is None:
            data.server.error = _OFFLINE

    def http_connect(self, flow: http.HTTPFlow) -> None:
        pipeline = self._session(flow)
        if pipeline is None:
            return
        action = pipeline.decide_connect(flow.request.host, flow.request.port,
                                         time.monotonic())
        if action is not None:
            log.info("fault: refusing CONNECT %s:%d", flow.request.host, flow.request.port)
            flow.response = _refused()
        elif not pipeline.records and ctx.options.connection_strategy == "eager":
            # a replay-only session in a run that records: answer the CONNECT ourselves,
            # or mitmproxy would connect upstream first ("eager") and fail the tunnel
            flow.response = http.Response(flow.request.data.http_version, 200,
                                          b"Connection established", http.Headers(), b"",
                                          None, time.time(), time.time())

    # -- requests -----------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        if not self._configured() or _state(flow) is not None:
            return  # not configured, or planned already (the copy of a slow live request)
        if flow.response is not None:
            flow.metadata[STATE] = FlowState(Role.OTHER)
            return
        if flow.error is not None:
            return  # killed by another addon
        pipeline = self._session(flow)
        if pipeline is None:
            return  # answered 407
        try:
            request = request_from_flow(flow.request)
            planned = pipeline.decide(request, time.monotonic())
        except Exception as e:  # never let a failure here send the request upstream
            if isinstance(e, ReplayproxyError):  # e.g. a damaged entry: one line, no trace
                message = e.render(MITMPROXY_WORDS if self._owns_pipeline else {})
                log.error("cannot answer %s %s: %s", flow.request.method,
                          flow.request.pretty_url, message)
            else:
                message = f"replayproxy internal error: {e!r}"
                log.exception("replayproxy failed on %s", flow.request.url)
            pipeline.session.summary.errors.append(
                f"{flow.request.method} {flow.request.pretty_url}: {message}")
            flow.metadata[STATE] = FlowState(Role.OTHER)
            flow.response = plain_response(500, message + "\n", "error")
            return
        state = FlowState(Role.OURS, planned, pipeline, request)
        flow.metadata[STATE] = state
        plan = planned.plan
        if isinstance(plan, FaultAnswer):
            await self._fault_answer(flow, plan)
            return
        if isinstance(plan, Replay):
            served = plan.served
            if served.interaction.response.status == 101:
                self._replay_upgrade(flow, state, plan, planned.fault)
                return
            if planned.fault is None and streams.play(flow, served.interaction, served.body,
                                                      self.pace, self._trickle):
                state.trickled = True
                return
            recorded = served.whole()
            flow.response = to_flow_response(recorded.response)
            h2.fit_trailers(flow)
            state.recorded_ttfb = recorded.ttfb
        elif isinstance(plan, Unmatched):
            flow.response = _unmatched_response(flow, plan)
            h2.grpc_error(flow, _UNAVAILABLE, plan.message, "unmatched")
        if planned.fault is not None and planned.fault.trickle is not None:
            await self._trickle_response(flow, state, plan, planned.fault)

    def _replay_upgrade(self, flow: http.HTTPFlow, state: FlowState, plan: Replay,
                        action: FaultAction | None) -> None:
        """Replay a WebSocket: its handshake goes to the loopback server, which plays the
        recorded server; a switch it cannot replay is an error, never a dead 101."""
        pipeline = state.pipeline
        assert pipeline is not None and state.request is not None
        recorded = plan.served.interaction
        problem = replay_problem(recorded, state.request)
        if problem is None and self._websockets.address is None:
            problem = "the WebSocket server of the proxy is not running"
        if problem is not None:
            log.error("cannot replay %s %s: %s", flow.request.method, flow.request.pretty_url,
                      problem)
            pipeline.session.summary.errors.append(
                f"{flow.request.method} {flow.request.pretty_url}: {problem}")
            flow.response = plain_response(502, f"replayproxy: {problem}\n", "error")
            return
        assert self._websockets.address is not None
        conversation = pipeline.session.conversation(
            plan.served, state.request, pace=self.pace,
            faults=websocket_faults(action))
        path = self._websockets.register(conversation, recorded.response.headers,
                                         lambda u: _unexpected(pipeline, u),
                                         lambda n: websocket.drop_after(flow, n))
        trickle.point_at(flow, self._websockets.address, path)

    async def _fault_answer(self, flow: http.HTTPFlow, plan: FaultAnswer) -> None:
        terminal = plan.action.terminal
        what = {Respond: "status", Reset: "reset", Hold: "timeout",
                RefuseConnect: "refused"}.get(type(terminal), "fault")
        log.info("fault: %s on %s %s", what, flow.request.method, flow.request.pretty_url)
        if isinstance(terminal, RefuseConnect):
            flow.response = _refused()
        elif isinstance(terminal, Respond):
            flow.response = fault_response(terminal)
            h2.fit_trailers(flow)
        elif isinstance(terminal, Reset):
            # latency rules apply here too: a slow server that then drops the connection
            await _wait(flow, plan.action, None)
            flow.kill()
        elif isinstance(terminal, Hold):
            # an async hook holds only this flow; the others go on (measured)
            await asyncio.sleep(terminal.max_seconds)
            flow.kill()

    async def _trickle_response(self, flow: http.HTTPFlow, state: FlowState,
                                plan: Replay | Forward | Unmatched,
                                action: FaultAction) -> None:
        """Send the response through the trickle server: the replayed one, or, live,
        the upstream's (fetched first as a copy, which is what gets recorded)."""
        assert action.trickle is not None
        if self._trickle.address is None:
            return
        if flow.response is not None and isinstance(plan, Replay):
            response, recorded = flow.response, state.recorded_ttfb
        elif flow.response is None and trickle.fetchable(flow):
            state.trickled = True  # the client's flow is never recorded: the copy is
            fetched = await trickle.fetch_copy(
                flow, lambda copy: _mark_fetch(copy, state.pipeline))
            if fetched is None:
                return
            response, recorded = fetched
        else:
            return  # unmatched, an upgrade: the response hook waits instead
        state.trickled = True
        await _wait(flow, action, recorded)
        announced = _break_body(flow, action.terminal, response)
        if not trickle.has_body(flow.request, response):
            flow.response = response  # nothing to trickle: sent as it is
            return
        rate = action.trickle.bytes_per_second
        log.info("fault: slow_body at %d B/s on %s", rate, flow.request.pretty_url)
        trickle.point_at(flow, self._trickle.address,
                         self._trickle.register(response, rate, announced))

    # -- responses ----------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = _state(flow)
        if state is not None and state.trickled and flow.response is not None:
            flow.response.stream = True
            streams.dress(flow)
        elif state is not None and state.role is Role.OURS and state.planned is not None \
                and not state.planned.answers_by_itself and state.planned.fault is None:
            streams.start_recording(flow)

    async def response(self, flow: http.HTTPFlow) -> None:
        state = _state(flow)
        if state is None or state.role is Role.OTHER or state.planned is None \
                or flow.response is None or state.pipeline is None:
            return
        if state.request is not None:
            state.pipeline.finished(state.request, time.time() - flow.request.timestamp_start)
        if not state.planned.answers_by_itself and not state.trickled:
            if flow.websocket is not None:
                self._open_websockets[flow.id] = flow  # written when it ends
                if websocket_faults(state.planned.fault):
                    log.warning("ws_* faults act on replayed WebSockets only; %s is live, "
                                "its messages go through untouched", flow.request.pretty_url)
            elif not self._record(flow, state):
                return
        if state.trickled or state.role is Role.FETCH:
            return
        plan = state.planned.plan
        action = plan.action if isinstance(plan, FaultAnswer) else state.planned.fault
        if action is None:
            return
        resp = flow.response
        recorded = state.recorded_ttfb
        if recorded is None and resp.timestamp_start and flow.request.timestamp_start:
            recorded = max(0.0, resp.timestamp_start - flow.request.timestamp_start)
        await _wait(flow, action, recorded)
        _break_body(flow, action.terminal, resp)
        if action.trickle is not None:
            # not trickled (a fault's own answer, an unmatched request, an upgrade): it
            # waits as long as sending it at that rate would take, then goes in one piece
            size = len(resp.raw_content or b"")
            await asyncio.sleep(size / max(action.trickle.bytes_per_second, 1))

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        websocket.drop_when_due(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        ws = flow.websocket
        state = _state(flow)
        if ws is not None and ws.closed_by_client and ws.close_code == _PROTOCOL_ERROR:
            # the URL as the client asked for it (a replayed one goes to our loopback)
            url = state.request.url if state is not None and state.request is not None \
                else flow.request.pretty_url
            log.warning("a WebSocket client sent data that is not valid WebSocket frames on "
                        "%s (%s): connection closed with code 1002", url,
                        ws.close_reason or "protocol error")
        if self._open_websockets.pop(flow.id, None) is not None and state is not None:
            self._record(flow, state)

    def error(self, flow: http.HTTPFlow) -> None:
        """An upstream failure while recording: keep what the client got (mitmproxy's
        502), marked, so replay answers the same; the summary lists it with its cause."""
        state = _state(flow)
        if state is not None and state.trickled and streams.played(flow):
            streams.ended_early(flow)
        if state is None and self._configured():
            unfinished = h2.unfinished_request(flow)
            if unfinished is not None:
                with contextlib.suppress(SessionRefused):
                    pipeline = self._named(flow)[1]
                    if pipeline is not None:  # counts in the run's verdict
                        pipeline.session.summary.errors.append(unfinished)
            return
        if state is None or state.role is Role.OTHER or state.planned is None \
                or state.planned.answers_by_itself or state.trickled \
                or state.pipeline is None or flow.error is None:
            return
        if streams.recording(flow):
            if streams.grpc(flow) and h2.stream_reset(flow):
                streams.discard(flow)  # a cancelled call: not recorded (see h2.py)
            else:
                self._record(flow, state)  # what arrived, marked as cut
            return
        message = flow.error.msg
        if flow.response is not None and flow.response.timestamp_end is not None:
            return  # answered in full; the client went away afterwards
        if h2.stream_reset(flow):
            return
        timed_out = message == "Client disconnected."
        if timed_out:
            if flow.response is not None:
                return  # the client left while the answer was on its way
            waited = time.time() - flow.request.timestamp_start
            message = (f"no answer after {waited:.1f} s, the client gave up (timed out) "
                       "and disconnected")
        oneline = " ".join(message.split())
        request = state.request or request_from_flow(flow.request)
        start = flow.request.timestamp_start
        elapsed = round(max(0.0, time.time() - start), 6)
        response = bad_gateway(oneline)
        if timed_out:
            # the client saw no answer at all: a placeholder, replayed as no answer
            response.status_code = 504
            response.reason = "Gateway Timeout"
            response.headers["X-Replayproxy"] = TIMEOUT_MARKER
            response.headers[WAITED_HEADER] = f"{elapsed:.3f}"
        else:
            response.headers["X-Replayproxy"] = MARKER
        response.headers[CAUSE_HEADER] = oneline.encode("ascii", "replace").decode()
        interaction = Interaction(request, response_from_flow(response),
                                  recorded_at=round(start, 3), ttfb=elapsed, duration=elapsed)
        try:
            state.pipeline.record_failure(interaction, oneline)
        except Exception:
            log.exception("replayproxy could not record the failure of %s", flow.request.url)
        log.warning("upstream failed for %s %s: %s", flow.request.method,
                    flow.request.pretty_url, oneline)

    def _record(self, flow: http.HTTPFlow, state: FlowState) -> bool:
        """Record the upstream's response; False (and the flow killed, or answered with
        the one-line error) if it could not be written: losing a recording silently is
        worse than stopping."""
        assert state.pipeline is not None
        body = None
        try:
            interaction, body = streams.recorded(
                flow, interaction_from_flow(flow, state.request))
            if flow.websocket is not None:
                interaction = replace(interaction, websocket=websocket.websocket_log(flow))
            if broken_off(interaction):  # an upstream failure: listed, fails the run
                findings = state.pipeline.record_failure(interaction, interaction.cut, body)
            else:
                findings = state.pipeline.record(interaction, body)
        except ReplayproxyError as e:  # e.g. a redaction pattern stopped by its time limit
            message = e.render(MITMPROXY_WORDS if self._owns_pipeline else {})
            log.error("cannot record %s %s: %s", flow.request.method,
                      flow.request.pretty_url, message)
            state.pipeline.session.summary.errors.append(
                f"{flow.request.method} {flow.request.pretty_url}: {message}")
            flow.response = plain_response(500, message + "\n", "error")
            return False
        except Exception:
            log.exception("replayproxy could not record %s", flow.request.url)
            if flow.killable:
                flow.kill()
            return False
        finally:
            if body is not None:
                body.close()
        for finding in findings:
            log.error("secret left after redaction in %s %s: %s: %s (%s)",
                      flow.request.method, flow.request.pretty_url, finding.location,
                      finding.rule, finding.excerpt)
        return True
