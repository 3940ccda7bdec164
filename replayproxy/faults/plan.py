"""Fault injection, decided in the core: which fault applies to a request, and how.

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
allowed. A ``FaultPlan`` holds the rules and their mutable state (counters, seeded
generators, token buckets, hit counts) and answers ``decide(request, now)`` with a
frozen ``FaultAction`` or None. The plan only decides; the addon sleeps, kills and
rewrites. Time is passed in and every random draw comes from a rule's seeded
generator, so two plans built from the same rules make the same decisions for the
same requests.

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
"""

from __future__ import annotations

import difflib
import json
import math
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

from replayproxy.model import Headers, Request
from replayproxy.routes import Route, parse_route

__all__ = [
    "Corrupt",
    "CorruptMode",
    "Delay",
    "DelayAt",
    "Distribution",
    "Effect",
    "FaultAction",
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
    "faults_from_table",
    "parse_fault",
    "truncate_body",
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


class DelayAt(StrEnum):
    """Where a latency is spent."""

    HEADERS = "headers"
    """Wait the full delay before the response is sent (or the request forwarded)."""
    FIRST_BYTE = "first_byte"
    """The response's first byte leaves no earlier than the delay after the request came."""


class Distribution(StrEnum):
    """How a latency rule picks its delay."""

    FIXED = "fixed"
    UNIFORM = "uniform"
    LOGNORMAL = "lognormal"
    RECORDED = "recorded"


class CorruptMode(StrEnum):
    """How ``corrupt`` mangles a body."""

    JSON = "json"
    """Cut the body short so it is no longer valid JSON."""
    RANDOM = "random"
    """Replace the body with random bytes of the same length."""


# -- effects: what the addon does, concretely ------------------------------------------


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


@dataclass(frozen=True, slots=True)
class Reset:
    """Drop the connection with no response."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Accept the request and never answer; give up after ``max_seconds``."""

    max_seconds: float


@dataclass(frozen=True, slots=True)
class Truncate:
    """Send the headers and part of the body, then close (see ``truncate_body``)."""

    keep_bytes: int | None = None
    fraction: float | None = None


@dataclass(frozen=True, slots=True)
class Corrupt:
    """Mangle the body (see ``corrupt_body``); ``seed`` makes the mangling repeatable."""

    mode: CorruptMode
    seed: int


@dataclass(frozen=True, slots=True)
class RefuseConnect:
    """The connection to the host fails (a CONNECT is refused)."""


Terminal: TypeAlias = Respond | Reset | Hold | Truncate | Corrupt | RefuseConnect
Effect: TypeAlias = Delay | Trickle | Terminal
_TERMINAL = (Respond, Reset, Hold, Truncate, Corrupt, RefuseConnect)


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
        return next((f.effect for f in self.fired if isinstance(f.effect, _TERMINAL)), None)


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
                     | Truncate | Trickle | RefuseConnect)
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


class _Problem(Exception):
    """A bad part of a spec: the option (or table key) and what is wrong."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


_TARGETING = ("p", "seed", "nth", "first")
_MAIN = {
    FaultKind.STATUS: "code",
    FaultKind.TIMEOUT: "max",
    FaultKind.CORRUPT: "mode",
    FaultKind.SLOW_BODY: "rate",
    FaultKind.RATE_LIMIT: "limit",
}
"""The option a kind's ``=VALUE`` stands for (latency's value is its distribution)."""
_OPTIONS: dict[FaultKind, tuple[str, ...]] = {
    FaultKind.LATENCY: ("jitter", "at"),  # for a fixed delay; see _latency_options
    FaultKind.STATUS: ("code", "body", "retry_after", "header"),
    FaultKind.RESET: (),
    FaultKind.TIMEOUT: ("max",),
    FaultKind.TRUNCATE: ("bytes", "fraction"),
    FaultKind.CORRUPT: ("mode",),
    FaultKind.SLOW_BODY: ("rate",),
    FaultKind.RATE_LIMIT: ("limit", "burst", "body", "header"),
    FaultKind.REFUSE_CONNECT: (),
}
_DEFAULT_HOLD = 30.0
_DEFAULT_LOGNORMAL_CAP = 30.0
_DEFAULT_SIGMA = 0.5
_DEFAULT_FRACTION = 0.5


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


# -- values ----------------------------------------------------------------------------

_DURATION = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))(ms|s|m|min|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_SIZE = re.compile(r"(\d+)(b|kb|kib|mb|mib)?")
_SIZE_UNITS = {None: 1, "b": 1, "kb": 1024, "kib": 1024, "mb": 1024**2, "mib": 1024**2}
_PER = re.compile(r"(\d+)/(s|sec|second|m|min|minute|h|hour)")
_PER_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
              "h": 3600.0, "hour": 3600.0}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _duration(key: str, text: str, *, positive: bool = False) -> float:
    """``300ms``, ``1.5s``, ``2m``/``2min``, ``1h`` in seconds; never negative."""
    m = _DURATION.fullmatch(text.strip().lower())
    if not m:
        hint = " (a duration needs a unit)" if re.fullmatch(r"[+-]?[\d.]+", text.strip()) else ""
        raise _Problem(key, f"{key}={text!r} is not a duration{hint}; write e.g. 300ms, "
                            "1.5s or 2m")
    seconds = float(m[1]) * _DURATION_UNITS[m[2]]
    if seconds < 0:
        raise _Problem(key, f"{key} must not be negative, got {text!r}")
    if positive and seconds == 0:
        raise _Problem(key, f"{key} must be more than 0, got {text!r}")
    return seconds


def duration_seconds(name: str, text: str) -> float:
    """``300ms``, ``1.5s``, ``2m``, ``1h`` in seconds, more than 0, for settings elsewhere.

    Raises:
        ValueError: naming ``name`` and showing valid examples.
    """
    try:
        return _duration(name, text, positive=True)
    except _Problem as e:
        raise ValueError(e.message) from None


def _size(key: str, text: str) -> int:
    """A byte count: ``100``, ``100b``, ``4kb`` (1024 bytes a kb), ``1mb``."""
    m = _SIZE.fullmatch(text.strip().lower())
    if not m:
        raise _Problem(key, f"{key}={text!r} is not a size; write a whole number of bytes "
                            "such as 100, 4kb or 1mb")
    return int(m[1]) * _SIZE_UNITS[m[2]]


def _rate(key: str, text: str) -> int:
    """Bytes per second: ``100``, ``512b/s``, ``1kb/s``."""
    raw = text.strip().lower()
    raw = raw.removesuffix("/s")
    m = _SIZE.fullmatch(raw)
    rate = int(m[1]) * _SIZE_UNITS[m[2]] if m else 0
    if rate <= 0:
        raise _Problem(key, f"{key}={text!r} is not a rate; write bytes per second such as "
                            "100, 512b/s or 1kb/s (more than 0)")
    return rate


def _probability(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise _Problem(key, f"{key} must be a probability from 0 to 1, got {text!r}")
    return value


def _number(key: str, text: str, *, below_one: bool = False) -> float:
    """A non-negative finite number (below 1 when ``below_one``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    upper = 1.0 if below_one else math.inf
    if not 0.0 <= value < upper:
        allowed = "from 0 up to (not including) 1" if below_one else "0 or more"
        raise _Problem(key, f"{key} must be a number {allowed}, got {text!r}")
    return value


def _positive_int(key: str, text: str) -> int:
    if not re.fullmatch(r"\+?\d+", text.strip()) or int(text) < 1:
        raise _Problem(key, f"{key} must be a whole number of 1 or more, got {text!r}")
    return int(text)


def _int(key: str, text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text.strip()):
        raise _Problem(key, f"{key} must be a whole number, got {text!r}")
    return int(text)


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not _TOKEN.fullmatch(name.strip()) or any(c in value for c in "\r\n\0"):
        raise _Problem("header", f"header={text!r} is not a header; write header=Name:Value")
    return name.strip(), value.strip()


def _body_headers(body: bytes, headers: list[tuple[str, str]]) -> Headers:
    """Add a Content-Type for a given body when none was given."""
    if body and not any(n.lower() == "content-type" for n, _ in headers):
        try:
            json.loads(body)
            is_json = body.lstrip()[:1] in (b"{", b"[")
        except ValueError:
            is_json = False
        headers.append(("Content-Type",
                        "application/json" if is_json else "text/plain; charset=utf-8"))
    return tuple(headers)


# -- building a spec -------------------------------------------------------------------


def _kind(text: str) -> FaultKind:
    kinds = ", ".join(k.value for k in FaultKind)
    if not text:
        raise _Problem("kind", f"missing fault kind; use one of: {kinds}")
    try:
        return FaultKind(text.lower())
    except ValueError:
        close = difflib.get_close_matches(text.lower(), [k.value for k in FaultKind], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _Problem("kind", f"unknown fault kind {text!r}{hint}; use one of: "
                               f"{kinds}") from None


def _latency(value: str | None, opts: dict[str, str]) -> LatencyParams:
    if value is None or not value:
        raise _Problem("latency", "latency needs a value: a duration (latency=300ms), "
                                  "latency=lognormal,median=200ms or latency=recorded,factor=2")
    at = DelayAt.HEADERS
    if "at" in opts:
        try:
            at = DelayAt(opts["at"].lower())
        except ValueError:
            raise _Problem("at", f"at must be headers or first_byte, got {opts['at']!r}") from None
    if value.lower() == Distribution.LOGNORMAL:
        if "median" not in opts:
            raise _Problem("median", "latency=lognormal needs median=DURATION, e.g. "
                                     "latency=lognormal,median=200ms,sigma=0.5")
        median = _duration("median", opts["median"], positive=True)
        sigma = _number("sigma", opts.get("sigma", str(_DEFAULT_SIGMA)))
        cap = _duration("max", opts.get("max", f"{_DEFAULT_LOGNORMAL_CAP}s"), positive=True)
        return LatencyParams(Distribution.LOGNORMAL, median=median, sigma=sigma, cap=cap, at=at)
    if value.lower() == Distribution.RECORDED:
        factor = _number("factor", opts.get("factor", "1"))
        return LatencyParams(Distribution.RECORDED, factor=factor, at=at)
    seconds = _duration("latency", value)
    jitter = _duration("jitter", opts["jitter"]) if "jitter" in opts else 0.0
    if jitter > seconds:
        raise _Problem("jitter", f"jitter ({opts['jitter']}) must not exceed the latency "
                                 f"({value}): the delay would go below 0")
    dist = Distribution.UNIFORM if jitter else Distribution.FIXED
    return LatencyParams(dist, seconds=seconds, jitter=jitter, at=at)


def _params(kind: FaultKind, value: str | None, opts: dict[str, str],
            headers: list[str]) -> Params:
    """The kind-specific part of a spec, from its options (already checked by name)."""
    if kind is FaultKind.LATENCY:
        return _latency(value, opts)
    if kind is FaultKind.STATUS:
        code = opts.get("code", "")
        if not re.fullmatch(r"\d{3}", code.strip()) or not 100 <= int(code) <= 599:
            given = f", got {code!r}" if code else ""
            raise _Problem("code", f"status needs an HTTP status code from 100 to 599, e.g. "
                                   f"status=503{given}")
        pairs = [_header(h) for h in headers]
        if "retry_after" in opts:
            pairs.append(("Retry-After", str(_number_of_seconds(opts["retry_after"]))))
        body = opts.get("body", "").encode()
        return Respond(int(code), _body_headers(body, pairs), body)
    if kind is FaultKind.RESET:
        return Reset()
    if kind is FaultKind.REFUSE_CONNECT:
        return RefuseConnect()
    if kind is FaultKind.TIMEOUT:
        return Hold(_duration("max", opts.get("max", f"{_DEFAULT_HOLD}s"), positive=True))
    if kind is FaultKind.TRUNCATE:
        if "bytes" in opts and "fraction" in opts:
            raise _Problem("fraction", "give truncate either bytes=N or fraction=F, not both")
        if "bytes" in opts:
            return Truncate(keep_bytes=_size("bytes", opts["bytes"]))
        return Truncate(fraction=_number("fraction", opts.get("fraction", str(_DEFAULT_FRACTION)),
                                         below_one=True))
    if kind is FaultKind.CORRUPT:
        mode = opts.get("mode", CorruptMode.JSON)
        try:
            return CorruptMode(mode.lower())
        except ValueError:
            raise _Problem("mode", f"corrupt mode must be json or random, got {mode!r}") from None
    if kind is FaultKind.SLOW_BODY:
        if "rate" not in opts:
            raise _Problem("rate", "slow_body needs a rate in bytes per second, e.g. "
                                   "slow_body=1kb/s")
        return Trickle(_rate("rate", opts["rate"]))
    # rate_limit
    limit = opts.get("limit", "")
    m = _PER.fullmatch(limit.strip().lower())
    if not m or int(m[1]) < 1:
        raise _Problem("limit", "rate_limit needs N requests per s, min or h, e.g. "
                                f"rate_limit=5/s or rate_limit=100/min, got {limit!r}")
    burst = _positive_int("burst", opts["burst"]) if "burst" in opts else int(m[1])
    body = opts.get("body", "").encode()
    return RateLimitParams(int(m[1]), _PER_UNITS[m[2]], burst,
                           _body_headers(body, [_header(h) for h in headers]), body)


def _number_of_seconds(text: str) -> int:
    if not re.fullmatch(r"\d+", text.strip()):
        raise _Problem("retry_after", f"retry_after must be whole seconds (0 or more), e.g. "
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
    """Validate the pieces of a rule; raise _Problem naming the bad option."""
    kind = _kind(kind_text)
    main = _MAIN.get(kind)
    if value is not None and kind is not FaultKind.LATENCY and main is None:
        raise _Problem("value", f"{kind} takes no value, got {kind}={value}")
    allowed = _allowed(kind, value)
    opts: dict[str, str] = {}
    headers: list[str] = []
    for name, raw in options:
        if name not in allowed:
            label = f"{kind}={value}" if kind is FaultKind.LATENCY and value else str(kind)
            names = ", ".join(sorted(allowed)) or "none"
            raise _Problem(name, f"unknown option {name!r} for {label}; allowed: {names}")
        if name == "header":
            headers.append(raw)
        elif name in opts or (name == main and value is not None):
            raise _Problem(name, f"option {name!r} is given twice")
        else:
            opts[name] = raw
    if value is not None and main is not None:
        opts[main] = value
    chosen = [name for name in ("p", "nth", "first") if name in opts]
    if len(chosen) > 1:
        raise _Problem(chosen[1], f"choose one of p, nth and first, got {' and '.join(chosen)}")
    p = _probability("p", opts["p"]) if "p" in opts else None
    nth = _positive_int("nth", opts["nth"]) if "nth" in opts else None
    first = _positive_int("first", opts["first"]) if "first" in opts else None
    seed = _int("seed", opts["seed"]) if "seed" in opts else None
    params = _params(kind, value, opts, headers)
    route = None
    if route_text is not None:
        try:
            route = parse_route(route_text)
        except ValueError as e:
            raise _Problem("route", str(e)) from None
        if kind is FaultKind.REFUSE_CONNECT and not _host_only(route):
            raise _Problem("route", f"refuse_connect applies to a CONNECT, which has no method "
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
            raise _Problem("kind", "empty; write KIND[=VALUE][,OPTION=VALUE...][@ROUTE], "
                                   "e.g. status=503@*")
        head, at, route_text = text.partition("@")
        kind_part, *option_parts = head.split(",")
        kind_text, eq, value = kind_part.partition("=")
        options = []
        for part in option_parts:
            name, sep, raw = part.partition("=")
            if not sep or not name.strip():
                raise _Problem(part.strip(), f"malformed option {part.strip()!r}; "
                                             "write OPTION=VALUE after a comma")
            options.append((name.strip().lower(), raw.strip()))
        return _build(text, kind_text.strip(), value.strip() if eq else None, options,
                      route_text if at else None)
    except _Problem as e:
        raise ValueError(f"invalid fault {text!r}: {e.message}") from None


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _Problem(key, f"expected a string or a number, got {value!r}")


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
    except _Problem as e:
        main = {str(k): v for k, v in _MAIN.items()}.get(kind.strip().lower(), "latency")
        key = "value" if "value" in table and e.key == main else e.key
        raise ValueError(f"key {key!r}: {e.message}") from None


def faults_from_table(tables: Sequence[Mapping[str, Any]] | Mapping[str, Any]
                      ) -> tuple[FaultSpec, ...]:
    """Build the rules of a configuration array of tables (or of one table).

    Raises:
        ValueError: starting with the rule's position: ``fault #2: key 'p': ...``.
    """
    if isinstance(tables, Mapping):
        return (fault_from_table(tables),)
    if not isinstance(tables, Sequence) or isinstance(tables, str | bytes):
        raise ValueError(f"expected an array of fault tables [[faults]], got {tables!r}")
    specs = []
    for i, table in enumerate(tables):
        try:
            specs.append(fault_from_table(table))
        except ValueError as e:
            raise ValueError(f"fault #{i + 1}: {e}") from None
    return tuple(specs)


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
        return self._decide(now, lambda route: route.matches(request), connect=False)

    def decide_connect(self, host: str, port: int, scheme: str = "https",
                       now: float = 0.0) -> FaultAction | None:
        """Whether the connection to ``host:port`` is refused (only refuse_connect rules).

        For a CONNECT (``scheme`` https), or a plain-HTTP request's upstream connection
        (``scheme`` http). The route's method part, if any, is CONNECT; the path is empty.
        """
        return self._decide(now, lambda route: _connect_matches(route, scheme, host, port),
                            connect=True)

    def _decide(self, now: float, matches: Callable[[Route], bool], *,
                connect: bool) -> FaultAction | None:
        fired: list[Fired] = []
        slow = terminal = False
        for index, rule in enumerate(self._rules):
            spec = rule.spec
            if (spec.kind is FaultKind.REFUSE_CONNECT) is not connect:
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
            elif isinstance(effect, _TERMINAL):
                if terminal:
                    continue
                terminal = True
            rule.hits += 1
            fired.append(Fired(index, spec.text, effect))
        return FaultAction(tuple(fired)) if fired else None

    def list(self) -> tuple[FaultSpec, ...]:
        """The rules, in order (their index is their position)."""
        return tuple(rule.spec for rule in self._rules)


# -- body transforms the addon applies -------------------------------------------------


def truncate_body(body: bytes, action: Truncate) -> bytes:
    """The part of ``body`` to send before closing: ``keep_bytes`` or ``fraction`` of it.

    At least one byte is always missing, so the cut is observable. The addon announces
    ``Content-Length: max(len(body), 1)`` (the whole body), sends this part with
    ``Connection: close`` and closes.
    """
    if action.keep_bytes is not None:
        keep = action.keep_bytes
    else:
        keep = int(len(body) * (action.fraction if action.fraction is not None else 0.5))
    return body[: min(keep, max(len(body) - 1, 0))]


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False
    return True


def corrupt_body(body: bytes, action: Corrupt) -> bytes:
    """The mangled body; the same action always gives the same bytes.

    ``json``: cut at a random point (a valid prefix such as ``12`` of ``123`` gets a
    stray ``}``), so it never parses; a body shorter than 2 bytes gets a ``{``. ``random``: random
    bytes of the same length (16 for an empty body). The addon should pass the decoded
    body and drop ``Content-Encoding``, so the client sees a bad body, not a bad gzip.
    """
    rng = random.Random(action.seed)
    if action.mode is CorruptMode.RANDOM:
        return rng.randbytes(len(body) or 16)
    if len(body) < 2:
        return body + b"{"
    cut = body[: rng.randrange(1, len(body))]
    return cut + b"}" if _is_json(cut) else cut
