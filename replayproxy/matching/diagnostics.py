"""Why a request matched nothing: the closest recordings and how they differ.

Candidates are ranked the way a person would look: same method and host first, then
the most similar path, then the fewest differing fields. The field-level difference is
computed with deepdiff on the normalised views of ``matchers.request_view``, so ignored
fields never show up, and each difference names where it is (``query page``,
``header x-api-version``, ``body $.amount``) with the recorded and received values.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from replayproxy.matching.rules import EXACT_MATCHERS, MatchRule, request_view
from replayproxy.model import Interaction, Request

__all__ = ["Candidate", "Difference", "MISSING", "compare", "rank", "render_candidates"]


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


MISSING: Any = _Missing()
"""Stands for a value present on one side only."""


@dataclass(frozen=True, slots=True)
class Difference:
    """One field that differs between a recorded request and the received one."""

    field: str
    """``method``, ``scheme``, ``host``, ``port``, ``path``, ``query``, ``header``, ``body``."""
    location: str
    """Where in the field: a parameter or header name, a JSON path; "" for the whole."""
    recorded: Any
    received: Any

    def describe(self) -> str:
        """``body $.amount: recorded 1200, received 1500``"""
        where = f"{self.field} {self.location}" if self.location else self.field
        return f"{where}: recorded {_show(self.recorded)}, received {_show(self.received)}"

    def as_json(self) -> dict[str, Any]:
        """A JSON-safe form for the 502 body and reports."""
        return {"field": self.field, "location": self.location,
                "recorded": _jsonable(self.recorded), "received": _jsonable(self.received)}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A recorded interaction close to a request, with what differs."""

    position: int
    """0-based position in the cassette (shown 1-based as ``#N``)."""
    interaction: Interaction
    differences: tuple[Difference, ...]


_JSON_LIMIT = 2000
"""Longest text or body kept whole in a JSON diagnosis (a 200 KB body stays out)."""


def _jsonable(value: Any) -> Any:
    if value is MISSING:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return f"<{len(value)} bytes>"
    if isinstance(value, str) and len(value) > _JSON_LIMIT:
        return f"{value[:_JSON_LIMIT]}… ({len(value) - _JSON_LIMIT} more characters)"
    return value


def _show(value: Any, limit: int = 80) -> str:
    if value is MISSING:
        return "(missing)"
    if isinstance(value, bytes):
        text = repr(value) if len(value) <= limit else f"<{len(value)} bytes> {value[:40]!r}…"
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_path(keys: Iterable[Any]) -> str:
    out = "$"
    for k in keys:
        if isinstance(k, int):
            out += f"[{k}]"
        elif isinstance(k, str) and k.isidentifier():
            out += f".{k}"
        else:
            out += f"[{json.dumps(k)}]"
    return out


def _locate(path: list[Any]) -> tuple[str, str]:
    top, rest = path[0], path[1:]
    if top in ("query", "headers"):
        field = "query" if top == "query" else "header"
        return field, str(rest[0]) if rest else ""
    if top == "body":
        if rest and rest[0] == "graphql":
            return "body", f"graphql {rest[1]}" + (_json_path(rest[2:])[1:] if rest[2:] else "") \
                if len(rest) > 1 else "graphql"
        if rest and rest[0] == "grpc":
            return "body", f"grpc message {rest[1] + 1}" if len(rest) > 1 else "grpc"
        if rest and rest[0] == "multipart":
            return "body", f"multipart part {rest[1] + 1}" if len(rest) > 1 else "multipart"
        return "body", _json_path(rest) if rest else ""
    return str(top), ""


def _unwrap(field: str, value: Any) -> Any:
    if field in ("query", "header") and isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def compare(recorded: Request, received: Request, rule: MatchRule,
            exact: tuple[str, ...] = EXACT_MATCHERS) -> tuple[Difference, ...]:
    """Every difference between two requests under ``rule``, recorded side first."""
    from deepdiff import DeepDiff  # ~100 ms to import (pydantic): only when diffing

    a, b = request_view(recorded, rule, exact), request_view(received, rule, exact)
    try:
        diff = DeepDiff(a, b, view="tree", verbose_level=2, ignore_private_variables=False)
    except RecursionError:  # a body nested too deeply for deepdiff: show it whole, as bytes
        if "body" not in a:
            raise
        a["body"], b["body"] = recorded.body, received.body
        diff = DeepDiff(a, b, view="tree", verbose_level=2, ignore_private_variables=False)
    out: dict[tuple[str, str], Difference] = {}
    for level in (lv for levels in diff.tree.values() for lv in levels):
        path = level.path(output_format="list")
        if not path:
            continue
        field, location = _locate(path)
        if field in ("query", "header") and len(path) > 2:
            # inside a multi-valued parameter or header: report its whole value list
            key = path[0]
            rec, rcv = a[key].get(path[1], MISSING), b[key].get(path[1], MISSING)
        else:
            rec = MISSING if _absent(level.t1) else level.t1
            rcv = MISSING if _absent(level.t2) else level.t2
        out.setdefault((field, location),
                       Difference(field, location, _unwrap(field, rec), _unwrap(field, rcv)))
    order = {name: i for i, name in enumerate((*EXACT_MATCHERS, "query", "header", "body"))}
    return tuple(sorted(out.values(), key=lambda d: (order.get(d.field, 99), d.location)))


def _absent(value: Any) -> bool:
    return type(value).__name__ == "NotPresent"


def rank(request: Request, candidates: Iterable[tuple[int, Interaction]], rule: MatchRule,
         exact: tuple[str, ...] = EXACT_MATCHERS, limit: int = 3) -> list[Candidate]:
    """The ``limit`` closest candidates to ``request``, closest first."""
    def coarse(rec: Request) -> tuple[int, float]:
        same = (rec.method.upper() == request.method.upper()) + (
            rec.host.lower() == request.host.lower())
        return -same, -difflib.SequenceMatcher(None, rec.path, request.path).ratio()

    scored = sorted((coarse(it.request), position, it) for position, it in candidates)
    detailed = []
    for score, position, it in scored[: max(limit * 4, 12)]:
        differences = compare(it.request, request, rule, exact)
        detailed.append(((*score, len(differences), position),
                         Candidate(position, it, differences)))
    detailed.sort(key=lambda d: d[0])
    return [c for _, c in detailed[:limit]]


def render_candidates(candidates: list[Candidate]) -> list[str]:
    """Lines describing the closest candidates, for logs and the 502 body."""
    if not candidates:
        return ["The cassette is empty."]
    lines = []
    for i, c in enumerate(candidates):
        q = c.interaction.request
        head = "Closest recorded" if i == 0 else "Next closest"
        lines.append(f"{head}: #{c.position + 1} {q.method} {q.url}")
        if c.differences:
            lines.extend(f"  {d.describe()}" for d in c.differences[:10])
            if len(c.differences) > 10:
                lines.append(f"  … and {len(c.differences) - 10} more differences")
        else:
            lines.append("  no differences: the recorded sequence for it is used up "
                         "(--strict or on_exhausted = \"error\")")
    return lines
