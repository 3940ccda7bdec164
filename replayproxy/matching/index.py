"""Finding the recorded interaction that answers a request.

By default a request matches a recorded one when method, scheme, host, port and path
are equal (host case-insensitively), the query holds the same parameters in any order,
and the bodies are equal by content type (JSON semantically, forms as multimaps,
multipart by parts, GraphQL by operation, query and variables; else byte for byte).
``MatchConfig`` changes all of this per cassette and per route (see ``matchers``).

The index is keyed by the exact fields (method, scheme, host, port, path unless the
configuration drops some), so building it costs one tuple per interaction and a lookup
does not depend on the size of the cassette. Inside a bucket, entries are grouped by
their normalised ``match_key`` the first time the bucket is asked for, so JSON bodies
are parsed once per recorded interaction at most.

Identical requests recorded several times are served in recorded order, tracked per
match key; once they are used up the last one repeats, or, with ``on_exhausted =
"error"`` (``strict``), the request counts as unmatched.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, replace
from typing import Any

from replayproxy.cassette.format import without_gc
from replayproxy.cassette.store import CassetteFile
from replayproxy.errors import CassetteError
from replayproxy.matching.diagnostics import Candidate, rank
from replayproxy.matching.rules import (
    EXACT_MATCHERS,
    Exhausted,
    MatchConfig,
    MatchRule,
    match_key,
)
from replayproxy.model import Interaction, Request

__all__ = ["ReplayIndex", "Served"]

_MEMO = 4096
"""Requests (and decoded interactions) ``match`` keeps for the next time."""

_FIELDS = {"method": 0, "scheme": 1, "host": 2, "port": 3, "path": 4}


def _normal(name: str, value: Any) -> Any:
    if name == "method":
        return str(value).upper()
    if name in ("scheme", "host"):
        return str(value).lower()
    if name == "port":
        return int(value)
    return value


@dataclass(frozen=True, slots=True)
class Served:
    """A replayed interaction and where it stands in the cassette."""

    interaction: Interaction
    position: int
    """0-based index of the interaction in the cassette."""
    repeated: bool
    """True when the sequence was used up and the last response is repeated."""
    body: memoryview | None = None
    """The response body when it was left in the cassette's bytes (a big one, see
    ``CassetteFile.lean``): ``interaction``'s body is then empty."""

    def whole(self) -> Interaction:
        """The interaction with its response body (copied out of the cassette's bytes
        when it was left there)."""
        if self.body is None:
            return self.interaction
        response = replace(self.interaction.response, body=bytes(self.body))
        return replace(self.interaction, response=response)


class ReplayIndex:
    """Matches requests against one cassette and remembers what was served.

    Args:
        cassette: the loaded cassette.
        config: matchers and rules; default: ``MatchConfig()``.
        strict: make every rule's ``on_exhausted`` "error".
    """

    def __init__(self, cassette: CassetteFile, config: MatchConfig | None = None, *,
                 strict: bool = False) -> None:
        self.cassette = cassette
        self.config = config or MatchConfig()
        self.strict = strict
        self.served: set[int] = set()
        self._exact = tuple(_FIELDS[name] for name in self.config.exact)
        self._names = self.config.exact
        self._buckets: dict[tuple[Any, ...], list[int]] = {}
        self._groups: dict[tuple[Any, ...], tuple[MatchRule, dict[Hashable, list[int]]]] = {}
        self._cursor: dict[tuple[Any, ...], int] = {}
        # the fast path for a request seen before (equal, usually the very object an
        # engine keeps for the same bytes): its bucket key, rule and match key, and the
        # decoded interactions served; both depend on the cassette and rules only, never
        # on what was served, so sequences stay exact
        self._memo: dict[Request, tuple[tuple[Any, ...], MatchRule, Hashable]] = {}
        self._decoded: dict[int, tuple[Interaction, memoryview | None]] = {}
        default = self.config.exact == EXACT_MATCHERS
        with without_gc():
            for i, q in enumerate(cassette.fields):
                try:
                    if default:  # the common case, inlined: 100,000 entries in ~0.1 s
                        key = (q[0].upper(), q[1].lower(), q[2].lower(), int(q[3]), q[4])
                    else:
                        key = tuple(_normal(n, q[f]) for n, f in zip(self._names, self._exact,
                                                                      strict=True))
                except (TypeError, IndexError, ValueError, AttributeError):
                    raise CassetteError(
                        f"cassette {cassette.name!r}: malformed interaction #{i + 1}"
                    ) from None
                self._buckets.setdefault(key, []).append(i)

    def _key(self, request: Request) -> tuple[Any, ...]:
        return tuple(_normal(n, getattr(request, n)) for n in self._names)

    def rule_for(self, request: Request) -> MatchRule:
        """The matching rule that applies to ``request``."""
        rule = self.config.rule_for(request.method, request.scheme, request.host,
                                    request.port, request.path)
        if self.strict and rule.on_exhausted is not Exhausted.ERROR:
            rule = replace(rule, on_exhausted=Exhausted.ERROR)
        return rule

    def _group(self, key: tuple[Any, ...], rule: MatchRule) -> dict[Hashable, list[int]] | None:
        cached = self._groups.get(key)
        if cached is not None and (cached[0] is rule or cached[0] == rule):
            return cached[1]
        positions = self._buckets.get(key)
        if positions is None:
            return None
        group: dict[Hashable, list[int]] = {}
        for i in positions:
            recorded = self.cassette.request(i)
            group.setdefault(match_key(recorded, rule), []).append(i)
        self._groups[key] = (rule, group)
        return group

    def identity(self, request: Request) -> Hashable:
        """A key equal for two requests exactly when they match each other under this
        index's rules (sequence position aside)."""
        return self._key(request), match_key(request, self.rule_for(request))

    def match(self, request: Request) -> Served | None:
        """Return the interaction to serve for ``request``, or None if nothing matches."""
        memo = self._memo.get(request)
        if memo is None:
            key = self._key(request)
            if key not in self._buckets:
                return None
            rule = self.rule_for(request)
            rest = match_key(request, rule)
            if len(self._memo) >= _MEMO:
                self._memo.clear()
            self._memo[request] = (key, rule, rest)
        else:
            key, rule, rest = memo
        group = self._group(key, rule)
        if group is None:
            return None
        positions = group.get(rest)
        if not positions:
            return None
        cursor = self._cursor.get((key, rest), 0)
        if cursor < len(positions):
            self._cursor[(key, rest)] = cursor + 1
            position, repeated = positions[cursor], False
        elif rule.on_exhausted is Exhausted.ERROR:
            return None
        else:
            position, repeated = positions[-1], True
        self.served.add(position)
        found = self._decoded.get(position)
        if found is None:
            found = self.cassette.lean(position)
            if len(self._decoded) >= _MEMO:
                self._decoded.clear()
            self._decoded[position] = found
        interaction, body = found
        return Served(interaction, position, repeated, body)

    def closest(self, request: Request, limit: int = 3) -> list[Candidate]:
        """The recorded interactions closest to ``request``, with their differences."""
        rule = self.rule_for(request)
        host = request.host.lower()
        fields = self.cassette.fields
        same_host = [i for i in range(len(fields)) if str(fields[i][2]).lower() == host]
        pool = same_host or list(range(len(fields)))
        if len(pool) > 5000:  # keep a miss cheap on huge cassettes: same method first
            method = request.method.upper()
            pool = [i for i in pool if str(fields[i][0]).upper() == method][:5000] or \
                pool[:5000]
            # ...but always with the recordings that share the request's exact fields
            pool = sorted({*pool, *self._buckets.get(self._key(request), [])[:5000]})
        # only requests are compared: a big response body stays in the cassette's bytes
        # (a candidate's interaction then has an empty body, see ``CassetteFile.lean``)
        return rank(request, ((i, self.cassette.lean(i)[0]) for i in pool), rule,
                    self.config.exact, limit)

    def unused(self) -> list[int]:
        """Return the positions of interactions never served, in recorded order."""
        return [i for i in range(len(self.cassette)) if i not in self.served]
