"""What a fault does, concretely: the effects a ``FaultPlan`` decides and an engine applies.

Each effect is a frozen value: wait (``Delay``), send the body slowly (``Trickle``), or
one *terminal* fault that replaces or breaks the response (``Respond``, ``Reset``,
``Hold``, ``Truncate``, ``Corrupt``, ``RefuseConnect``), or what happens to a replayed
WebSocket's messages (``WsClose``, ``WsDrop``, ``WsDelay``). The engine sleeps, kills and
rewrites; ``replayproxy.faults.mangle`` computes the bytes of a truncated or corrupt body.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

from replayproxy.model import Headers

__all__ = [
    "TERMINAL",
    "Corrupt",
    "CorruptMode",
    "Delay",
    "DelayAt",
    "Effect",
    "Hold",
    "RefuseConnect",
    "Reset",
    "Respond",
    "Terminal",
    "Trickle",
    "Truncate",
    "WebSocketEffect",
    "WsClose",
    "WsDelay",
    "WsDrop",
]


class DelayAt(StrEnum):
    """Where a latency is spent."""

    HEADERS = "headers"
    """Wait the full delay before the response is sent (or the request forwarded)."""
    FIRST_BYTE = "first_byte"
    """The response's first byte leaves no earlier than the delay after the request came."""


class CorruptMode(StrEnum):
    """How ``corrupt`` mangles a body."""

    JSON = "json"
    """Cut the body short so it is no longer valid JSON."""
    RANDOM = "random"
    """Replace the body with random bytes of the same length."""


@dataclass(frozen=True, slots=True)
class Delay:
    """Wait before the response.

    ``factor`` set means "the recorded time to first byte, times factor" (the
    ``recorded`` distribution); ``seconds`` is then unused.
    """

    seconds: float
    at: DelayAt = DelayAt.HEADERS
    factor: float | None = None

    def wait(self, elapsed: float = 0.0, recorded_ttfb: float | None = None) -> float:
        """Seconds to sleep now.

        Args:
            elapsed: seconds since the request arrived (only ``at=first_byte`` uses it).
            recorded_ttfb: the recorded interaction's time to first byte, or in live
                mode the upstream's; None when unknown (a ``recorded`` delay is then 0).
        """
        recorded = self.factor is not None
        target = (self.factor or 0.0) * (recorded_ttfb or 0.0) if recorded else self.seconds
        if self.at is DelayAt.FIRST_BYTE:
            return max(0.0, target - elapsed)
        return target


@dataclass(frozen=True, slots=True)
class Trickle:
    """Send the response body at ``bytes_per_second``."""

    bytes_per_second: int


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer with this response instead (``status`` and ``rate_limit``)."""

    status: int
    headers: Headers = ()
    body: bytes = b""
    trailers: Headers = ()
    """Sent after the body: a gRPC error's ``grpc-status`` and ``grpc-message``."""


@dataclass(frozen=True, slots=True)
class Reset:
    """Drop the connection with no response."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Accept the request and never answer; give up after ``max_seconds``."""

    max_seconds: float


@dataclass(frozen=True, slots=True)
class Truncate:
    """Send the headers and part of the body, then close (see ``mangle.truncate_body``)."""

    keep_bytes: int | None = None
    fraction: float | None = None


@dataclass(frozen=True, slots=True)
class Corrupt:
    """Mangle the body (see ``mangle.corrupt_body``); ``seed`` makes the mangling repeatable."""

    mode: CorruptMode
    seed: int


@dataclass(frozen=True, slots=True)
class RefuseConnect:
    """The connection to the host fails (a CONNECT is refused)."""


@dataclass(frozen=True, slots=True)
class WsClose:
    """Close a replayed WebSocket with a close frame after ``after`` server messages."""

    after: int = 0
    code: int = 1001
    reason: str = ""


@dataclass(frozen=True, slots=True)
class WsDrop:
    """Drop a replayed WebSocket's connection, no close frame, after ``after`` server
    messages."""

    after: int = 0


@dataclass(frozen=True, slots=True)
class WsDelay:
    """Wait ``seconds`` more before every server message of a replayed WebSocket."""

    seconds: float


Terminal: TypeAlias = Respond | Reset | Hold | Truncate | Corrupt | RefuseConnect
WebSocketEffect: TypeAlias = WsClose | WsDrop | WsDelay
Effect: TypeAlias = Delay | Trickle | Terminal | WebSocketEffect
TERMINAL = (Respond, Reset, Hold, Truncate, Corrupt, RefuseConnect)
"""The terminal effect classes, for ``isinstance``."""
