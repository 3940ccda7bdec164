"""Fault rules as the user writes them: the grammar, validated into a frozen ``FaultSpec``.

A fault rule is written ``KIND[=VALUE][,OPTION=VALUE...][@ROUTE]``::

    status=503,first=2@GET https://api.example.com/v1/*
    latency=300ms@*/search*
    reset,p=0.1,seed=7
    rate_limit=5/s@POST */v1/charges
    timeout@*

- The spec is split at its **first** ``@``: what comes before is the kind and its
  options (split at ``,``, each option at its first ``=``), what comes after is the
  route, taken whole, so a route may contain ``,``, ``=`` and further ``@``. Option
  values therefore cannot contain ``,`` or ``@``; write such a rule as a table
  (``fault_from_table``), where each option is its own key.
- ``ROUTE`` is a ``routes.parse_route`` pattern, ``[METHOD ]URL_GLOB``; without one the
  rule applies to every request.
- ``VALUE`` is shorthand for the kind's main option: ``status=503`` is
  ``status,code=503``, ``timeout=10s`` is ``timeout,max=10s`` (see ``_MAIN``).
- Targeting, for every kind but ``rate_limit``: ``p=0.1`` (probability, drawn from the
  rule's own ``random.Random``, seeded with ``seed=N`` or else with the rule's text),
  ``nth=N`` (only the Nth request the route matches), ``first=N`` (the first N), or
  none of these: always. At most one of ``p``, ``nth`` and ``first``.

``parse_fault`` and ``fault_from_table`` give a frozen ``FaultSpec``; bad input raises
``ValueError`` with one line naming the spec (or table key), what is wrong and what is
allowed. The option values (durations, sizes, rates, headers) are parsed by
``replayproxy.faults.values``; ``replayproxy.faults.plan`` decides with the specs.
"""

from __future__ import annotations

import difflib
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

from replayproxy import grpc_wire
from replayproxy.faults import values
from replayproxy.faults.effects import (
    CorruptMode,
    Delay,
    DelayAt,
    Hold,
    RefuseConnect,
    Reset,
    Respond,
    Trickle,
    Truncate,
    WsClose,
    WsDelay,
    WsDrop,
)
from replayproxy.faults.values import BadValue
from replayproxy.model import Headers
from replayproxy.routes import Route, parse_route

__all__ = [
    "WEBSOCKET_KINDS",
    "Distribution",
    "FaultKind",
    "FaultSpec",
    "LatencyParams",
    "Params",
    "RateLimitParams",
    "fault_from_table",
    "parse_fault",
]


class FaultKind(StrEnum):
    """The fault catalogue."""

    LATENCY = "latency"
    STATUS = "status"
    RESET = "reset"
    TIMEOUT = "timeout"
    TRUNCATE = "truncate"
    CORRUPT = "corrupt"
    SLOW_BODY = "slow_body"
    RATE_LIMIT = "rate_limit"
    REFUSE_CONNECT = "refuse_connect"
    WS_CLOSE = "ws_close"
    WS_DROP = "ws_drop"
    WS_DELAY = "ws_delay"


WEBSOCKET_KINDS = frozenset({FaultKind.WS_CLOSE, FaultKind.WS_DROP, FaultKind.WS_DELAY})
"""Kinds that act on a replayed WebSocket's messages; they see WebSocket handshakes only."""



class Distribution(StrEnum):
    """How a latency rule picks its delay."""

    FIXED = "fixed"
    UNIFORM = "uniform"
    LOGNORMAL = "lognormal"
    RECORDED = "recorded"



# -- specs: what the user asked for ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencyParams:
    """A latency rule's distribution; ``sample`` draws one ``Delay``."""

    distribution: Distribution
    seconds: float = 0.0
    """fixed: the delay; uniform: the centre."""
    jitter: float = 0.0
    """uniform: the delay is seconds ± jitter (jitter <= seconds)."""
    median: float = 0.0
    sigma: float = 0.0
    cap: float = 0.0
    """lognormal: median, sigma of the underlying normal, and the largest delay drawn."""
    factor: float = 1.0
    """recorded: the recorded time to first byte is multiplied by this."""
    at: DelayAt = DelayAt.HEADERS

    def sample(self, rng: random.Random) -> Delay:
        """Draw a delay (fixed and recorded draw nothing)."""
        if self.distribution is Distribution.RECORDED:
            return Delay(0.0, self.at, self.factor)
        seconds = self.seconds
        if self.distribution is Distribution.UNIFORM:
            seconds += rng.uniform(-self.jitter, self.jitter)
        elif self.distribution is Distribution.LOGNORMAL:
            seconds = min(self.cap, rng.lognormvariate(math.log(self.median), self.sigma))
        return Delay(max(0.0, seconds), self.at)


@dataclass(frozen=True, slots=True)
class RateLimitParams:
    """A token bucket: ``limit`` requests per ``per_seconds``, at most ``burst`` at once."""

    limit: int
    per_seconds: float
    burst: int
    headers: Headers = ()
    body: bytes = b""

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self.limit / self.per_seconds


Params: TypeAlias = (LatencyParams | RateLimitParams | CorruptMode | Respond | Reset | Hold
                     | Truncate | Trickle | RefuseConnect | WsClose | WsDrop | WsDelay)
"""Per kind: latency, rate_limit and corrupt have their own; the others fire their effect."""


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One fault rule, validated: kind, parameters, route and targeting."""

    text: str
    """The rule as written; a table's rule rendered in the string grammar (for display
    and the default seed: a value with ``,`` or ``@`` makes it not parse back)."""
    kind: FaultKind
    params: Params
    route: Route | None = None
    """None: every request."""
    p: float | None = None
    nth: int | None = None
    first: int | None = None
    seed: int | None = None
    """Seeds the rule's generator; None seeds it with ``text``."""


_TARGETING = ("p", "seed", "nth", "first")
_MAIN = {
    FaultKind.STATUS: "code",
    FaultKind.TIMEOUT: "max",
    FaultKind.CORRUPT: "mode",
    FaultKind.SLOW_BODY: "rate",
    FaultKind.RATE_LIMIT: "limit",
    FaultKind.WS_CLOSE: "after",
    FaultKind.WS_DROP: "after",
    FaultKind.WS_DELAY: "delay",
}
"""The option a kind's ``=VALUE`` stands for (latency's value is its distribution)."""
_OPTIONS: dict[FaultKind, tuple[str, ...]] = {
    FaultKind.LATENCY: ("jitter", "at"),  # for a fixed delay; see _latency_options
    FaultKind.STATUS: ("code", "body", "retry_after", "header", "grpc"),
    FaultKind.RESET: (),
    FaultKind.TIMEOUT: ("max",),
    FaultKind.TRUNCATE: ("bytes", "fraction"),
    FaultKind.CORRUPT: ("mode",),
    FaultKind.SLOW_BODY: ("rate",),
    FaultKind.RATE_LIMIT: ("limit", "burst", "body", "header"),
    FaultKind.REFUSE_CONNECT: (),
    FaultKind.WS_CLOSE: ("after", "code", "reason"),
    FaultKind.WS_DROP: ("after",),
    FaultKind.WS_DELAY: ("delay",),
}
_UNSENDABLE_CLOSE_CODES = frozenset({1004, 1005, 1006, 1015})
"""Close codes reserved for "none sent" or never assigned: no close frame carries them."""
_DEFAULT_HOLD = 30.0
_DEFAULT_LOGNORMAL_CAP = 30.0
_DEFAULT_SIGMA = 0.5
_DEFAULT_FRACTION = 0.5
_PER = re.compile(r"(\d+)/(s|sec|second|m|min|minute|h|hour)")
_PER_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
              "h": 3600.0, "hour": 3600.0}


def _latency_options(value: str | None) -> tuple[str, ...]:
    distribution = (value or "").strip().lower()
    if distribution == Distribution.LOGNORMAL:
        return ("median", "sigma", "max", "at")
    if distribution == Distribution.RECORDED:
        return ("factor", "at")
    return _OPTIONS[FaultKind.LATENCY]


def _allowed(kind: FaultKind, value: str | None) -> tuple[str, ...]:
    own = _latency_options(value) if kind is FaultKind.LATENCY else _OPTIONS[kind]
    return own if kind is FaultKind.RATE_LIMIT else (*own, *_TARGETING)



# -- building a spec -------------------------------------------------------------------


def _kind(text: str) -> FaultKind:
    kinds = ", ".join(k.value for k in FaultKind)
    if not text:
        raise BadValue("kind", f"missing fault kind; use one of: {kinds}")
    try:
        return FaultKind(text.lower())
    except ValueError:
        close = difflib.get_close_matches(text.lower(), [k.value for k in FaultKind], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise BadValue("kind", f"unknown fault kind {text!r}{hint}; use one of: "
                               f"{kinds}") from None


def _latency(value: str | None, opts: dict[str, str]) -> LatencyParams:
    if value is None or not value:
        raise BadValue("latency", "latency needs a value: a duration (latency=300ms), "
                                  "latency=lognormal,median=200ms or latency=recorded,factor=2")
    at = DelayAt.HEADERS
    if "at" in opts:
        try:
            at = DelayAt(opts["at"].lower())
        except ValueError:
            raise BadValue("at", f"at must be headers or first_byte, got {opts['at']!r}") from None
    if value.lower() == Distribution.LOGNORMAL:
        if "median" not in opts:
            raise BadValue("median", "latency=lognormal needs median=DURATION, e.g. "
                                     "latency=lognormal,median=200ms,sigma=0.5")
        median = values.duration("median", opts["median"], positive=True)
        sigma = values.number("sigma", opts.get("sigma", str(_DEFAULT_SIGMA)))
        cap = values.duration("max", opts.get("max", f"{_DEFAULT_LOGNORMAL_CAP}s"),
                              positive=True)
        return LatencyParams(Distribution.LOGNORMAL, median=median, sigma=sigma, cap=cap, at=at)
    if value.lower() == Distribution.RECORDED:
        factor = values.number("factor", opts.get("factor", "1"))
        return LatencyParams(Distribution.RECORDED, factor=factor, at=at)
    seconds = values.duration("latency", value)
    jitter = values.duration("jitter", opts["jitter"]) if "jitter" in opts else 0.0
    if jitter > seconds:
        raise BadValue("jitter", f"jitter ({opts['jitter']}) must not exceed the latency "
                                 f"({value}): the delay would go below 0")
    dist = Distribution.UNIFORM if jitter else Distribution.FIXED
    return LatencyParams(dist, seconds=seconds, jitter=jitter, at=at)


def _grpc_status(opts: dict[str, str], headers: list[str]) -> Respond:
    """``status,grpc=UNAVAILABLE[,body=MESSAGE]``: a gRPC call that ends with that status
    (HTTP 200, no message, ``grpc-status`` and ``grpc-message`` in the trailers)."""
    if "code" in opts and opts["code"].strip() != "200":
        raise BadValue("code", "a gRPC status goes with HTTP status 200: drop code= "
                               f"(got code={opts['code']})")
    if "retry_after" in opts:
        raise BadValue("retry_after", "retry_after is for HTTP statuses; a gRPC status "
                                      "takes grpc= and body= (its message)")
    try:
        code = grpc_wire.status_code(opts["grpc"])
    except ValueError as e:
        raise BadValue("grpc", str(e)) from None
    pairs = [("Content-Type", "application/grpc"), *(values.header(h) for h in headers)]
    return Respond(200, tuple(pairs), b"", grpc_wire.status_trailers(code, opts.get("body", "")))


def _params(kind: FaultKind, value: str | None, opts: dict[str, str],
            headers: list[str]) -> Params:
    """The kind-specific part of a spec, from its options (already checked by name)."""
    if kind is FaultKind.LATENCY:
        return _latency(value, opts)
    if kind is FaultKind.STATUS:
        if "grpc" in opts:
            return _grpc_status(opts, headers)
        code = opts.get("code", "")
        if not re.fullmatch(r"\d{3}", code.strip()) or not 100 <= int(code) <= 599:
            given = f", got {code!r}" if code else ""
            raise BadValue("code", f"status needs an HTTP status code from 100 to 599, e.g. "
                                   f"status=503{given}")
        pairs = [values.header(h) for h in headers]
        if "retry_after" in opts:
            pairs.append(("Retry-After", str(_number_of_seconds(opts["retry_after"]))))
        body = opts.get("body", "").encode()
        return Respond(int(code), values.body_headers(body, pairs), body)
    if kind is FaultKind.RESET:
        return Reset()
    if kind is FaultKind.REFUSE_CONNECT:
        return RefuseConnect()
    if kind is FaultKind.TIMEOUT:
        return Hold(values.duration("max", opts.get("max", f"{_DEFAULT_HOLD}s"), positive=True))
    if kind is FaultKind.TRUNCATE:
        if "bytes" in opts and "fraction" in opts:
            raise BadValue("fraction", "give truncate either bytes=N or fraction=F, not both")
        if "bytes" in opts:
            return Truncate(keep_bytes=values.size("bytes", opts["bytes"]))
        fraction = opts.get("fraction", str(_DEFAULT_FRACTION))
        return Truncate(fraction=values.number("fraction", fraction, below_one=True))
    if kind is FaultKind.CORRUPT:
        mode = opts.get("mode", CorruptMode.JSON)
        try:
            return CorruptMode(mode.lower())
        except ValueError:
            raise BadValue("mode", f"corrupt mode must be json or random, got {mode!r}") from None
    if kind in WEBSOCKET_KINDS:
        return _websocket(kind, opts)
    if kind is FaultKind.SLOW_BODY:
        if "rate" not in opts:
            raise BadValue("rate", "slow_body needs a rate in bytes per second, e.g. "
                                   "slow_body=1kb/s")
        return Trickle(values.byte_rate("rate", opts["rate"]))
    # rate_limit
    limit = opts.get("limit", "")
    m = _PER.fullmatch(limit.strip().lower())
    if not m or int(m[1]) < 1:
        raise BadValue("limit", "rate_limit needs N requests per s, min or h, e.g. "
                                f"rate_limit=5/s or rate_limit=100/min, got {limit!r}")
    burst = values.positive_int("burst", opts["burst"]) if "burst" in opts else int(m[1])
    body = opts.get("body", "").encode()
    return RateLimitParams(int(m[1]), _PER_UNITS[m[2]], burst,
                           values.body_headers(body, [values.header(h) for h in headers]), body)


def _websocket(kind: FaultKind, opts: dict[str, str]) -> WsClose | WsDrop | WsDelay:
    if kind is FaultKind.WS_DELAY:
        if "delay" not in opts:
            raise BadValue("delay", "ws_delay needs a duration added before every server "
                                    "message, e.g. ws_delay=500ms")
        return WsDelay(values.duration("delay", opts["delay"]))
    after = opts.get("after", "0")
    if not re.fullmatch(r"\d+", after.strip()):
        raise BadValue("after", f"after must be a number of server messages (0 or more), "
                                f"e.g. {kind}=3, got {after!r}")
    if kind is FaultKind.WS_DROP:
        return WsDrop(int(after))
    code = opts.get("code", "1001")
    if not re.fullmatch(r"\d{4}", code.strip()) or not 1000 <= int(code) <= 4999 \
            or int(code) in _UNSENDABLE_CLOSE_CODES:
        raise BadValue("code", f"code must be a WebSocket close code from 1000 to 4999 "
                               f"(not 1004, 1005, 1006 or 1015), e.g. code=1011, got {code!r}")
    reason = opts.get("reason", "")
    if len(reason.encode("utf-8")) > 123:
        raise BadValue("reason", "reason must fit in a close frame: at most 123 bytes")
    return WsClose(int(after), int(code), reason)


def _number_of_seconds(text: str) -> int:
    if not re.fullmatch(r"\d+", text.strip()):
        raise BadValue("retry_after", f"retry_after must be whole seconds (0 or more), e.g. "
                                      f"retry_after=2, got {text!r}")
    return int(text)


def _host_only(route: Route) -> bool:
    """True if ``route`` names hosts only: no method other than CONNECT, no path."""
    if route.methods is not None and route.methods != {"CONNECT"}:
        return False
    text = route.text.strip()
    if not text.startswith("re:") and " " in text:
        text = text.split(None, 1)[1].strip()
    if text.startswith("re:"):
        return True
    after_scheme = text.partition("://")[2] if "://" in text else text
    return after_scheme.partition("/")[2] in ("", "*")


def _build(text: str, kind_text: str, value: str | None, options: Sequence[tuple[str, str]],
           route_text: str | None) -> FaultSpec:
    """Validate the pieces of a rule; raise BadValue naming the bad option."""
    kind = _kind(kind_text)
    main = _MAIN.get(kind)
    if value is not None and kind is not FaultKind.LATENCY and main is None:
        raise BadValue("value", f"{kind} takes no value, got {kind}={value}")
    allowed = _allowed(kind, value)
    opts: dict[str, str] = {}
    headers: list[str] = []
    for name, raw in options:
        if name not in allowed:
            label = f"{kind}={value}" if kind is FaultKind.LATENCY and value else str(kind)
            names = ", ".join(sorted(allowed)) or "none"
            raise BadValue(name, f"unknown option {name!r} for {label}; allowed: {names}")
        if name == "header":
            headers.append(raw)
        elif name in opts or (name == main and value is not None):
            raise BadValue(name, f"option {name!r} is given twice")
        else:
            opts[name] = raw
    if value is not None and main is not None:
        opts[main] = value
    chosen = [name for name in ("p", "nth", "first") if name in opts]
    if len(chosen) > 1:
        raise BadValue(chosen[1], f"choose one of p, nth and first, got {' and '.join(chosen)}")
    p = values.probability("p", opts["p"]) if "p" in opts else None
    nth = values.positive_int("nth", opts["nth"]) if "nth" in opts else None
    first = values.positive_int("first", opts["first"]) if "first" in opts else None
    seed = values.whole_number("seed", opts["seed"]) if "seed" in opts else None
    params = _params(kind, value, opts, headers)
    route = None
    if route_text is not None:
        try:
            route = parse_route(route_text)
        except ValueError as e:
            raise BadValue("route", str(e)) from None
        if kind is FaultKind.REFUSE_CONNECT and not _host_only(route):
            raise BadValue("route", f"refuse_connect applies to a CONNECT, which has no method "
                                    f"or path: give a host route such as 'api.example.com' or "
                                    f"'*.example.com', got {route_text.strip()!r}")
    return FaultSpec(text, kind, params, route, p, nth, first, seed)


def parse_fault(spec: str) -> FaultSpec:
    """Parse ``KIND[=VALUE][,OPTION=VALUE...][@ROUTE]``.

    The spec is split at its first ``@``: everything after it is the route.

    Raises:
        ValueError: one line naming the spec, what is wrong and what is allowed.
    """
    text = spec.strip()
    try:
        if not text:
            raise BadValue("kind", "empty; write KIND[=VALUE][,OPTION=VALUE...][@ROUTE], "
                                   "e.g. status=503@*")
        head, at, route_text = text.partition("@")
        kind_part, *option_parts = head.split(",")
        kind_text, eq, value = kind_part.partition("=")
        options = []
        for part in option_parts:
            name, sep, raw = part.partition("=")
            if not sep or not name.strip():
                raise BadValue(part.strip(), f"malformed option {part.strip()!r}; "
                                             "write OPTION=VALUE after a comma")
            options.append((name.strip().lower(), raw.strip()))
        return _build(text, kind_text.strip(), value.strip() if eq else None, options,
                      route_text if at else None)
    except BadValue as e:
        raise ValueError(f"invalid fault {text!r}: {e.message}") from None


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise BadValue(key, f"expected a string or a number, got {value!r}")


def _render(kind: str, value: str | None, options: Sequence[tuple[str, str]],
            route: str | None) -> str:
    text = kind + (f"={value}" if value is not None else "")
    text += "".join(f",{name}={raw}" for name, raw in options)
    return text + (f"@{route}" if route is not None else "")


def fault_from_table(table: Mapping[str, Any]) -> FaultSpec:
    """Build a rule from a configuration table.

    Either ``{spec = "status=503,first=2@GET https://..."}`` or
    ``{kind = "status", value = 503, first = 2, route = "GET https://..."}``, where every
    other key is an option (``header`` may be a list of ``"Name: value"`` strings).

    Raises:
        ValueError: naming the key, what is wrong and what is allowed.
    """
    if not isinstance(table, Mapping):
        raise ValueError(f"a fault must be a table with 'spec' or 'kind', got {table!r}")
    if "spec" in table:
        extra = sorted(k for k in table if k != "spec")
        if extra:
            raise ValueError(f"key {extra[0]!r}: not allowed next to 'spec'; put it in the "
                             "spec string, or use kind = ... with one key per option")
        if not isinstance(table["spec"], str):
            raise ValueError(f"key 'spec': expected a string such as 'status=503@*', "
                             f"got {table['spec']!r}")
        try:
            return parse_fault(table["spec"])
        except ValueError as e:
            raise ValueError(f"key 'spec': {e}") from None
    kind = table.get("kind")
    if not isinstance(kind, str):
        raise ValueError("key 'kind': missing or not a string; give kind = 'status' (one of "
                         f"{', '.join(k.value for k in FaultKind)}) or spec = '...'")
    route = table.get("route")
    if route is not None and not isinstance(route, str):
        raise ValueError(f"key 'route': expected a string such as 'GET */v1/*', got {route!r}")
    value: str | None = None
    options: list[tuple[str, str]] = []
    try:
        if "value" in table:
            value = _scalar("value", table["value"])
        for key, raw in table.items():
            if key in ("kind", "value", "route"):
                continue
            items = raw if key == "header" and isinstance(raw, list) else [raw]
            options += [(key, _scalar(key, item)) for item in items]
        text = _render(kind, value, options, route)
        return _build(text, kind.strip(), value, options, route)
    except BadValue as e:
        main = {str(k): v for k, v in _MAIN.items()}.get(kind.strip().lower(), "latency")
        key = "value" if "value" in table and e.key == main else e.key
        raise ValueError(f"key {key!r}: {e.message}") from None
