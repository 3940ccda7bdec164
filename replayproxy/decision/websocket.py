"""Replaying a recorded WebSocket: the proxy plays the server, one step at a time.

A ``Conversation`` holds one recorded ``WebSocketLog`` and says what the server does:

- ``start()``, right after the handshake: the server messages recorded before the
  first client message;
- ``receive(message)``, for each client message: if it matches the next recorded
  client message (``replayproxy.matching.messages``: the handshake's matching rule, as
  for a request body, after the same redaction), the server messages that followed it;
  otherwise the conversation ends with a close (``UNEXPECTED_CODE``) and
  ``unexpected`` says which message came closest and how it differs.

Each answer is a list of ``Action``: ``Send`` a message, ``Close`` with a code, or
``Drop`` the connection with no close frame, each after ``wait`` seconds: the
recorded gap to the event before it (the handshake, a client message, a server
message) times ``pace``, plus any ``ws_delay``. When the recorded messages are used up
the server closes as recorded (a close frame with the recorded code, a dropped
connection when the server closed without one); a close by the client, or a recording
that ended with the socket open, leaves it to the client. ``WebSocketFaults`` close or
drop the connection after N server messages. The engine only sleeps and sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replayproxy.cassette.view import shorten_message
from replayproxy.faults.effects import WsClose, WsDelay, WsDrop
from replayproxy.faults.plan import FaultAction
from replayproxy.matching.diagnostics import Difference
from replayproxy.matching.messages import message_differences, messages_match
from replayproxy.matching.rules import MatchRule
from replayproxy.model import (
    Interaction,
    Request,
    WebSocketLog,
    WebSocketMessage,
    header_value,
    is_websocket_upgrade,
)
from replayproxy.redaction.redactor import Redactor

__all__ = [
    "UNEXPECTED_CODE",
    "Action",
    "Close",
    "Conversation",
    "Drop",
    "Send",
    "UnexpectedMessage",
    "WebSocketFaults",
    "websocket_faults",
    "replay_problem",
]

UNEXPECTED_CODE = 1008
"""The close code after an unexpected client message (policy violation)."""
UNEXPECTED_REASON = "replayproxy: unexpected message (see the proxy log)"


def replay_problem(interaction: Interaction, request: Request | None = None) -> str | None:
    """Why a recorded protocol switch cannot be replayed to ``request`` (None: it can, or
    it is no switch): replay must fail loudly rather than hand the client a dead
    connection."""
    if interaction.response.status != 101:
        return None
    upgrade = (header_value(interaction.response.headers, "upgrade") or "").strip()
    if upgrade.lower() != "websocket":
        return (f"the recording switched protocols to {upgrade or 'an unnamed protocol'!r}, "
                "which replayproxy cannot replay (only WebSocket)")
    if interaction.websocket is None:
        return ("the cassette holds only the handshake of this WebSocket, no messages "
                "(recorded by an older replayproxy): re-record it")
    if request is not None and not is_websocket_upgrade(request.headers):
        return ("it matches a recorded WebSocket, but it is no WebSocket handshake (no "
                "'Upgrade: websocket' header)")
    return None


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` to the client after ``wait`` seconds."""

    wait: float
    message: WebSocketMessage


@dataclass(frozen=True, slots=True)
class Close:
    """Send a close frame after ``wait`` seconds; the conversation is over."""

    wait: float
    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Drop:
    """Drop the connection with no close frame after ``wait`` seconds."""

    wait: float


Action = Send | Close | Drop


@dataclass(frozen=True, slots=True)
class WebSocketFaults:
    """What ``ws_*`` fault rules do to one replayed WebSocket."""

    close_after: int | None = None
    """Close (``close_code``, ``close_reason``) after this many server messages."""
    close_code: int = 1001
    close_reason: str = ""
    drop_after: int | None = None
    """Drop the connection after this many server messages."""
    delay: float = 0.0
    """Seconds added before every server message."""

    def __bool__(self) -> bool:
        return self != WebSocketFaults()


def websocket_faults(action: FaultAction | None) -> WebSocketFaults:
    """What the ``ws_*`` rules that fired for a handshake do to its WebSocket: delays
    add up; of several closes and drops, the earliest applies."""
    if action is None:
        return WebSocketFaults()
    close: WsClose | None = None
    drop: int | None = None
    delay = 0.0
    for fired in action.fired:
        effect = fired.effect
        if isinstance(effect, WsDelay):
            delay += effect.seconds
        elif isinstance(effect, WsClose) and (close is None or effect.after < close.after):
            close = effect
        elif isinstance(effect, WsDrop) and (drop is None or effect.after < drop):
            drop = effect.after
    if close is not None and drop is not None:
        if drop <= close.after:
            close = None
        else:
            drop = None
    return WebSocketFaults(close_after=close.after if close else None,
                           close_code=close.code if close else 1001,
                           close_reason=close.reason if close else "",
                           drop_after=drop, delay=delay)


@dataclass(frozen=True, slots=True)
class UnexpectedMessage:
    """A client message that the recording does not have at that point."""

    cassette: str
    url: str
    """The URL of the WebSocket's handshake."""
    number: int
    """Which client message it was on this connection (1-based)."""
    received: WebSocketMessage
    expected: WebSocketMessage | None
    """The recorded client message expected there; None: the recording had no more."""
    differences: tuple[Difference, ...]

    @property
    def message(self) -> str:
        """Plain text for the log and the run summary, like an unmatched request's."""
        lines = [f"replayproxy: WebSocket {self.url} (cassette {self.cassette!r}): client "
                 f"message {self.number} was not expected: {shorten_message(self.received)}"]
        if self.expected is None:
            lines.append("  the recording has no more client messages on this WebSocket")
        else:
            lines.append(f"Closest recorded: client message {self.number} "
                         f"{shorten_message(self.expected)}")
            lines += [f"  {d.describe()}" for d in self.differences[:10]]
        lines.append(f"Re-record with `replayproxy record -c {self.cassette} -- CMD`.")
        return "\n".join(lines) + "\n"

    def as_json(self) -> dict[str, Any]:
        """The same as a JSON-safe dict (for reports)."""
        return {"error": "unexpected websocket message", "cassette": self.cassette,
                "url": self.url, "number": self.number,
                "received": shorten_message(self.received, 2000),
                "expected": shorten_message(self.expected, 2000) if self.expected else None,
                "differences": [d.as_json() for d in self.differences]}


class Conversation:
    """The server's side of one recorded WebSocket, played against a client.

    Args:
        log: the recorded messages and close.
        rule: the matching rule of the handshake's route.
        cassette: the cassette's name (for messages).
        request: the handshake as received (its URL for messages; redaction context).
        redactor: redacts each client message as recorded ones were (None: not redacted).
        pace: multiplies the recorded gaps (0: no waiting).
        faults: what ``ws_*`` faults do to this WebSocket.
    """

    def __init__(self, log: WebSocketLog, rule: MatchRule, *, cassette: str,
                 request: Request, redactor: Redactor | None = None, pace: float = 1.0,
                 faults: WebSocketFaults | None = None) -> None:
        self.log = log
        self.rule = rule
        self.cassette = cassette
        self.request = request
        self.redactor = redactor
        self.pace = max(0.0, pace)
        self.faults = faults or WebSocketFaults()
        self.unexpected: UnexpectedMessage | None = None
        self.finished = False
        """True once the server side is over (closed or dropped)."""
        self.sent = 0
        """Server messages sent so far."""
        self.received = 0
        """Client messages received so far."""
        self._next = 0
        self._last_at = 0.0

    def start(self) -> list[Action]:
        """What the server does right after the handshake."""
        return self._serve()

    def receive(self, message: WebSocketMessage) -> list[Action]:
        """What the server does after the client sent ``message``."""
        if self.finished:
            return []
        self.received += 1
        messages = self.log.messages
        expected = messages[self._next] if self._next < len(messages) else None
        compared = message
        if self.redactor is not None:
            compared = self.redactor.redact_message(self.request, message)
        if expected is not None and expected.from_client and \
                messages_match(expected, compared, self.rule):
            self._next += 1
            self._last_at = expected.at
            return self._serve()
        if expected is not None and not expected.from_client:
            expected = None  # the server is not done: no client message was due
        url = self.request.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        self.unexpected = UnexpectedMessage(
            self.cassette, url, self.received, compared, expected,
            message_differences(expected, compared, self.rule))
        self.finished = True
        return [Close(0.0, UNEXPECTED_CODE, UNEXPECTED_REASON)]

    def _fault(self) -> Action | None:
        """A fault's end of the conversation once enough server messages went out."""
        faults = self.faults
        if faults.drop_after is not None and self.sent >= faults.drop_after:
            return Drop(0.0)
        if faults.close_after is not None and self.sent >= faults.close_after:
            return Close(0.0, faults.close_code, faults.close_reason)
        return None

    def _serve(self) -> list[Action]:
        actions: list[Action] = []
        messages = self.log.messages
        while True:
            ended = self._fault()
            if ended is not None:
                self.finished = True
                return [*actions, ended]
            if self._next >= len(messages) or messages[self._next].from_client:
                break
            message = messages[self._next]
            wait = max(0.0, message.at - self._last_at) * self.pace + self.faults.delay
            actions.append(Send(wait, message))
            self._next += 1
            self._last_at = message.at
            self.sent += 1
        if self._next >= len(messages) and self.log.closed_by == "server":
            self.finished = True
            actions.append(Drop(0.0) if self.log.close_code is None else
                           Close(0.0, self.log.close_code, self.log.close_reason))
        return actions
