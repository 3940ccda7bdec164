"""Fault injection: rules the user writes, the plan that decides, the effects engines apply.

- ``spec``: the rule grammar (``parse_fault``, ``fault_from_table``) → frozen ``FaultSpec``;
  ``values``: the durations, sizes, rates and headers inside a rule;
- ``plan``: ``FaultPlan.decide(request, now)`` → ``FaultAction`` (decides, never acts);
- ``effects``: what an action asks for (``Delay``, ``Respond``, ``Reset``, ...);
- ``mangle``: the bytes of a truncated or corrupt body;
- ``control``: the HTTP control API and its client ``FaultControl`` (imported on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from replayproxy.faults.effects import (
    Corrupt,
    CorruptMode,
    Delay,
    DelayAt,
    Effect,
    Hold,
    RefuseConnect,
    Reset,
    Respond,
    Terminal,
    Trickle,
    Truncate,
)
from replayproxy.faults.mangle import corrupt_body, truncate_body
from replayproxy.faults.plan import FaultAction, FaultPlan, Fired
from replayproxy.faults.spec import (
    Distribution,
    FaultKind,
    FaultSpec,
    LatencyParams,
    RateLimitParams,
    fault_from_table,
    parse_fault,
)
from replayproxy.faults.values import duration_seconds

if TYPE_CHECKING:
    from replayproxy.faults.control import ControlServer, FaultControl

__all__ = [
    "ControlServer",
    "Corrupt",
    "CorruptMode",
    "Delay",
    "DelayAt",
    "Distribution",
    "Effect",
    "FaultAction",
    "FaultControl",
    "FaultKind",
    "FaultPlan",
    "FaultSpec",
    "Fired",
    "Hold",
    "LatencyParams",
    "RateLimitParams",
    "RefuseConnect",
    "Reset",
    "Respond",
    "Terminal",
    "Trickle",
    "Truncate",
    "corrupt_body",
    "duration_seconds",
    "fault_from_table",
    "parse_fault",
    "truncate_body",
]

_CONTROL = ("ControlServer", "FaultControl")


def __getattr__(name: str) -> Any:
    """The control API's names, imported on first use (it loads http.server and urllib)."""
    if name in _CONTROL:
        from replayproxy.faults import control

        return getattr(control, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
