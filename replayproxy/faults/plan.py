"""The fault decision: which rules fire for a request, and what the engine should do.

A ``FaultPlan`` holds the rules (``replayproxy.faults.spec.FaultSpec``) and their
mutable state (counters, seeded generators, token buckets, hit counts) and answers
``decide(request, now)`` with a frozen ``FaultAction`` or None. The plan only decides;
the engine sleeps, kills and rewrites (the effects are in ``replayproxy.faults.effects``).
Time is passed in and every random draw comes from a rule's seeded generator, so two
plans built from the same rules make the same decisions for the same requests.

How rules combine (checked in order, for one request):

- Every rule whose route matches *sees* the request, whatever the other rules do: its
  request counter advances, it draws its random number, its bucket refills and takes a
  token. Adding or removing a rule never changes another rule's decisions.
- Of the rules that fire, every ``latency`` applies (the delays add up, in rule order),
  the first ``slow_body`` applies, and the first *terminal* fault applies: ``status``,
  ``reset``, ``timeout``, ``truncate``, ``corrupt``, ``rate_limit`` (its 429). Rules
  that fire after the first slow_body or terminal are shadowed: not applied, not hit.
- ``refuse_connect`` rules are only asked by ``decide_connect`` (a CONNECT, or a
  plain-HTTP request's upstream connection), and ``decide`` ignores them.
- ``ws_close``, ``ws_drop`` and ``ws_delay`` rules see WebSocket handshakes only (a
  request with ``Upgrade: websocket``); their effects apply to the replayed messages.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from replayproxy.faults.effects import (
    TERMINAL,
    Corrupt,
    CorruptMode,
    Delay,
    Effect,
    Respond,
    Terminal,
    Trickle,
)
from replayproxy.faults.spec import (
    WEBSOCKET_KINDS,
    FaultKind,
    FaultSpec,
    LatencyParams,
    RateLimitParams,
    parse_fault,
)
from replayproxy.model import Request, is_websocket_upgrade
from replayproxy.routes import Route

__all__ = ["FaultAction", "FaultPlan", "Fired"]


@dataclass(frozen=True, slots=True)
class Fired:
    """One rule's part in a decision: its index in the plan, its text, its effect."""

    index: int
    spec: str
    effect: Effect


@dataclass(frozen=True, slots=True)
class FaultAction:
    """What to do to one request: the rules that fired, in rule order."""

    fired: tuple[Fired, ...]

    @property
    def delays(self) -> tuple[Delay, ...]:
        """Every delay, in rule order (the addon waits for each)."""
        return tuple(f.effect for f in self.fired if isinstance(f.effect, Delay))

    @property
    def trickle(self) -> Trickle | None:
        """The body rate, if a slow_body rule fired."""
        return next((f.effect for f in self.fired if isinstance(f.effect, Trickle)), None)

    @property
    def terminal(self) -> Terminal | None:
        """The one fault that replaces or breaks the response, if any."""
        return next((f.effect for f in self.fired if isinstance(f.effect, TERMINAL)), None)

# -- deciding --------------------------------------------------------------------------


class _Rule:
    """One rule and its state: matched requests, hits, generator, token bucket."""

    __slots__ = ("hits", "last", "matched", "rng", "spec", "tokens")

    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed if spec.seed is not None else f"fault:{spec.text}")
        self.matched = 0
        self.hits = 0
        params = spec.params
        self.tokens = float(params.burst) if isinstance(params, RateLimitParams) else 0.0
        self.last: float | None = None

    def step(self, now: float) -> Effect | None:
        """Count one matching request; return this rule's effect if it fires."""
        self.matched += 1
        spec, params = self.spec, self.spec.params
        if isinstance(params, RateLimitParams):
            return self._take_token(params, now)
        if spec.first is not None:
            fires = self.matched <= spec.first
        elif spec.nth is not None:
            fires = self.matched == spec.nth
        elif spec.p is not None:
            fires = self.rng.random() < spec.p
        else:
            fires = True
        if not fires:
            return None
        if isinstance(params, LatencyParams):
            return params.sample(self.rng)
        if isinstance(params, CorruptMode):
            return Corrupt(params, self.rng.getrandbits(32))
        return params

    def _take_token(self, params: RateLimitParams, now: float) -> Respond | None:
        last = now if self.last is None else self.last
        self.last = max(last, now)
        self.tokens = min(float(params.burst), self.tokens + max(0.0, now - last) * params.rate)
        if self.tokens >= 1.0 - 1e-9:
            self.tokens = max(0.0, self.tokens - 1.0)
            return None
        wait = (1.0 - self.tokens) / params.rate
        retry_after = max(1, math.ceil(wait - 1e-9))
        return Respond(429, (("Retry-After", str(retry_after)), *params.headers), params.body)


def _connect_matches(route: Route, scheme: str, host: str, port: int) -> bool:
    # "/" for host globs and URL globs ending in "/*"; "" for a bare "https://host"
    return (route.matches_fields("CONNECT", scheme, host, port, "/")
            or route.matches_fields("CONNECT", scheme, host, port, ""))


class FaultPlan:
    """The fault rules of a proxy run and their state; decides, never acts.

    Not thread-safe: call it from the proxy's event loop (the control API included).
    """

    def __init__(self, specs: Iterable[FaultSpec | str] = ()) -> None:
        self._rules: tuple[_Rule, ...] = ()
        for spec in specs:
            self.add(spec)

    def add(self, spec: FaultSpec | str) -> int:
        """Append a rule (a spec string is parsed) with fresh state; return its index."""
        parsed = parse_fault(spec) if isinstance(spec, str) else spec
        self._rules = (*self._rules, _Rule(parsed))
        return len(self._rules) - 1

    def clear(self) -> None:
        """Remove every rule and its state."""
        self._rules = ()

    def hits(self) -> tuple[int, ...]:
        """How many times each rule was applied, by index."""
        return tuple(rule.hits for rule in self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def decide(self, request: Request, now: float) -> FaultAction | None:
        """What to do to ``request`` arriving at ``now`` (seconds, any monotonic clock).

        Returns None when no rule applies. ``refuse_connect`` rules are not asked.
        """
        return self._decide(now, lambda route: route.matches(request), connect=False,
                            websocket=is_websocket_upgrade(request.headers))

    def decide_connect(self, host: str, port: int, scheme: str = "https",
                       now: float = 0.0) -> FaultAction | None:
        """Whether the connection to ``host:port`` is refused (only refuse_connect rules).

        For a CONNECT (``scheme`` https), or a plain-HTTP request's upstream connection
        (``scheme`` http). The route's method part, if any, is CONNECT; the path is empty.
        """
        return self._decide(now, lambda route: _connect_matches(route, scheme, host, port),
                            connect=True)

    def _decide(self, now: float, matches: Callable[[Route], bool], *,
                connect: bool, websocket: bool = False) -> FaultAction | None:
        fired: list[Fired] = []
        slow = terminal = False
        for index, rule in enumerate(self._rules):
            spec = rule.spec
            if (spec.kind is FaultKind.REFUSE_CONNECT) is not connect:
                continue
            if spec.kind in WEBSOCKET_KINDS and not websocket:
                continue
            if spec.route is not None and not matches(spec.route):
                continue
            effect = rule.step(now)
            if effect is None:
                continue
            if isinstance(effect, Trickle):
                if slow:
                    continue
                slow = True
            elif isinstance(effect, TERMINAL):
                if terminal:
                    continue
                terminal = True
            rule.hits += 1
            fired.append(Fired(index, spec.text, effect))
        return FaultAction(tuple(fired)) if fired else None

    def list(self) -> tuple[FaultSpec, ...]:
        """The rules, in order (their index is their position)."""
        return tuple(rule.spec for rule in self._rules)
