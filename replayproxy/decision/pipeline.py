"""The per-request decision: one pure function from a request and the time to a plan.

An engine converts what arrived into a ``Request`` once, asks ``Pipeline.decide`` and
carries the ``Plan`` out; it decides nothing itself. A plan is one of:

- ``FaultAnswer``: a fault answers by itself (an error status, a dropped connection, a
  held request, a refused connection); the cassette is not asked, so a recorded
  sequence stays in step, as it would against a live API;
- ``Replay``: answer with a recorded response;
- ``Forward``: send the request upstream and ``record`` what comes back;
- ``Unmatched``: nothing recorded matches and this mode may not go upstream; the plan
  carries the diagnosis (the closest recordings and how they differ).

The last three carry ``fault``: what a fault does to the response on its way to the
client (latency, a slow body, truncation, corruption), or None. Faults act after a
response is recorded, so a cassette only ever holds the upstream's real response.

A CONNECT is asked with ``decide_connect``: only ``refuse_connect`` rules apply there.

The fault plan is shared with the fault control API, which changes it from another
thread; ``lock`` guards it. Everything else runs on the engine's one event loop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from replayproxy.decision.failures import recorded_timeout
from replayproxy.decision.requestlog import RequestLog
from replayproxy.decision.session import CassetteSession, Forward, Replay, Unmatched
from replayproxy.faults.effects import Hold, RefuseConnect, Reset, Respond
from replayproxy.faults.plan import FaultAction, FaultPlan, Fired
from replayproxy.model import Interaction, Request
from replayproxy.redaction.scan import Finding
from replayproxy.streams import BodyFile

__all__ = ["FaultAnswer", "Pipeline", "Plan", "Planned", "decide"]


@dataclass(frozen=True, slots=True)
class FaultAnswer:
    """A fault answers the request itself: ``action.terminal`` is a ``Respond``,
    ``Reset``, ``Hold`` or ``RefuseConnect``; ``action.delays`` come first."""

    action: FaultAction


Plan = FaultAnswer | Replay | Forward | Unmatched


@dataclass(frozen=True, slots=True)
class Planned:
    """A plan and what a fault does to its response (None: nothing)."""

    plan: Plan
    fault: FaultAction | None = None

    @property
    def answers_by_itself(self) -> bool:
        """True when the engine must not send the request upstream nor record it."""
        return not isinstance(self.plan, Forward)


_ANSWERS = (Respond, Reset, Hold, RefuseConnect)
_HOW = {FaultAnswer: "fault", Replay: "replayed", Forward: "forwarded", Unmatched: "unmatched"}

HELD_EXTRA = 5.0
"""Seconds a recorded timeout holds a request beyond what the client waited when it was
recorded, before the connection is dropped."""


def _session_plan(session: CassetteSession, request: Request,
                  fault: FaultAction | None = None) -> Planned:
    """The cassette's plan; a recorded timeout is carried out as one: no answer (held,
    then dropped), as the client saw it when recording."""
    plan = session.decide(request)
    if isinstance(plan, Replay):
        waited = recorded_timeout(plan.served.interaction.response)
        if waited is not None:
            hold = Hold(waited + HELD_EXTRA)
            return Planned(FaultAnswer(FaultAction((Fired(-1, "recorded timeout", hold),))))
    return Planned(plan, fault)


def decide(session: CassetteSession, faults: FaultPlan | None, request: Request,
           now: float) -> Planned:
    """What to do with ``request`` arriving at ``now`` (a monotonic clock, seconds).

    Faults are asked first: a fault that answers by itself never uses up a recorded
    interaction. A plain-HTTP request's upstream connection may be refused
    (``refuse_connect`` rules with scheme http).
    """
    action: FaultAction | None = None
    if faults is not None and len(faults):
        if request.scheme == "http":
            refused = faults.decide_connect(request.host, request.port, "http", now)
            if refused is not None:
                session.note_request(request)
                return Planned(FaultAnswer(refused))
        action = faults.decide(request, now)
        if action is not None and isinstance(action.terminal, _ANSWERS):
            session.note_request(request)
            return Planned(FaultAnswer(action))
    return _session_plan(session, request, action)


class Pipeline:
    """The decision for one proxy run: a cassette session and a fault plan.

    Args:
        session: the cassette in use (a run may swap it for another between requests:
            ``ProxyRun.use_cassette``).
        faults: the fault rules (shared with the control API under ``lock``).
        lock: guards ``faults`` against the control API's thread.
        requests: where every decided request is logged, with its outcome (see
            ``decision.requestlog``) [default: a new log].
    """

    def __init__(self, session: CassetteSession, faults: FaultPlan | None = None,
                 lock: threading.Lock | None = None, requests: RequestLog | None = None
                 ) -> None:
        self.session = session
        self.faults = faults if faults is not None else FaultPlan()
        self.lock = lock or threading.Lock()
        self.requests = requests if requests is not None else RequestLog()

    @property
    def records(self) -> bool:
        """True if this run may send requests upstream."""
        return self.session.records

    def decide(self, request: Request, now: float) -> Planned:
        """The plan for ``request`` (see ``decide``), counted in the run's tally and
        logged in ``requests``."""
        try:
            if not len(self.faults):
                planned = _session_plan(self.session, request)
            else:
                with self.lock:
                    planned = decide(self.session, self.faults, request, now)
        except BaseException:
            self.requests.add(request, "error")
            raise
        self.session.summary.tally.planned(request, _HOW[type(planned.plan)],
                                           fault=planned.fault is not None)
        self.requests.add(request, _HOW[type(planned.plan)])
        return planned

    def finished(self, request: Request, seconds: float) -> None:
        """Note how long ``request`` took to be answered (for the run report)."""
        self.session.summary.tally.finished(request, seconds)

    def decide_connect(self, host: str, port: int, now: float) -> FaultAction | None:
        """A ``refuse_connect`` fault for a CONNECT to ``host:port``, or None."""
        if not len(self.faults):
            return None
        with self.lock:
            action = self.faults.decide_connect(host, port, "https", now)
        return action if action is not None and isinstance(action.terminal,
                                                            RefuseConnect) else None

    def record(self, interaction: Interaction, body: BodyFile | None = None
               ) -> list[Finding]:
        """Store a forwarded exchange in the cassette (redacted, scanned); see
        ``CassetteSession.record`` (``body``: a big response body kept in a file)."""
        findings = self.session.record(interaction, body)
        self.session.summary.tally.recorded(interaction.request)
        return findings

    def record_failure(self, interaction: Interaction, message: str,
                       body: BodyFile | None = None) -> list[Finding]:
        """Store an upstream failure as the answer the client got; see
        ``CassetteSession.record_failure``."""
        return self.session.record_failure(interaction, message, body)
