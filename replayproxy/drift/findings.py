"""What the drift check finds: a ``Finding`` (severity, kind, location, both sides).

``replayproxy.drift.compare`` makes them; the drift plan classifies an interaction by
the ``worst`` of its findings; the reports and the history show and store them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Finding", "FindingKind", "Scalar", "Severity", "worst"]


class Severity(StrEnum):
    """How much a difference matters; declared worst first."""

    BREAKING = "breaking"
    """A client written against the recording may fail: the check fails."""
    ADDITIVE = "additive"
    """Something new that a client can ignore: worth re-recording, does not fail."""
    NOISE = "noise"
    """Expected to differ on every call (ids, timestamps): shown, never fails."""

    @property
    def rank(self) -> int:
        """0 for the worst: sort by it to list breaking findings first."""
        return _SEVERITY_RANK[self]


class FindingKind(StrEnum):
    """What changed."""

    STATUS_CLASS_CHANGED = "status_class_changed"
    STATUS_CHANGED = "status_changed"
    CONTENT_TYPE_CHANGED = "content_type_changed"
    HEADER_ADDED = "header_added"
    HEADER_MISSING = "header_missing"
    FIELD_MISSING = "field_missing"
    FIELD_ADDED = "field_added"
    TYPE_CHANGED = "type_changed"
    BODY_NOT_JSON = "body_not_json"
    SIZE_CLASS_CHANGED = "size_class_changed"
    VALUE_CHANGED = "value_changed"


Scalar = str | int | float | bool | None
"""A short, JSON-safe value shown in a finding."""

_SEVERITY_RANK: dict[Severity, int] = {s: i for i, s in enumerate(Severity)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One classified difference between a recorded response and a live one."""

    severity: Severity
    kind: FindingKind
    location: str
    """``status``, ``header Content-Type``, ``body $.items[*].amount`` or ``body``."""
    recorded: Scalar
    """The recorded side: a type name (``number``), a value, a size class; None if absent."""
    live: Scalar
    """The live side, in the same form as ``recorded``."""

    def describe(self) -> str:
        """``breaking type_changed at body $.amount: recorded number, live string``

        Values (of ``value_changed`` and headers) are shown as JSON, type names, media
        types and size classes as they are.
        """
        return (f"{self.severity} {self.kind} at {self.location}: "
                f"recorded {self.recorded_text}, live {self.live_text}")

    @property
    def recorded_text(self) -> str:
        """The recorded side as ``describe()`` shows it: values and headers as JSON,
        type names, media types and size classes as they are, ``(absent)`` for None."""
        return _show(self.recorded, self.kind in _VALUE_KINDS)

    @property
    def live_text(self) -> str:
        """The live side, shown like ``recorded_text``."""
        return _show(self.live, self.kind in _VALUE_KINDS)

    def as_json(self) -> dict[str, Scalar]:
        """A JSON-safe dict for reports."""
        return {"severity": self.severity.value, "kind": self.kind.value,
                "location": self.location, "recorded": self.recorded, "live": self.live}


_VALUE_KINDS = frozenset({FindingKind.VALUE_CHANGED, FindingKind.HEADER_ADDED,
                          FindingKind.HEADER_MISSING})


def _show(value: Scalar, quote: bool) -> str:
    if value is None:
        return "(absent)"
    return json.dumps(value, ensure_ascii=False) if quote else str(value)


def worst(findings: Iterable[Finding]) -> Severity | None:
    """The most severe severity among ``findings``; None if there are none."""
    return min((f.severity for f in findings), key=lambda s: s.rank, default=None)
