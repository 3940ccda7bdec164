"""The drift check without the network: what to re-send, how, and what came of it.

``plan_request`` turns a recorded request into the one to send live (or says why it
is skipped or cannot be sent): safe methods only unless allowed, credentials put back
in place of redaction placeholders, the origin rewritten. ``judge`` turns the
recorded and live responses into a ``Checked`` result; ``DriftReport`` holds a whole
run and its exit code. The network part lives in ``replayproxy.drift.live``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import quote, quote_plus, urlsplit

from replayproxy.codec import content_encodings
from replayproxy.drift.compare import compare_responses, looks_volatile
from replayproxy.drift.findings import Finding, Severity, worst
from replayproxy.grpc_wire import is_grpc
from replayproxy.model import (
    Interaction,
    Request,
    Response,
    format_url,
    header_value,
    is_websocket_upgrade,
)
from replayproxy.redaction.secrets import PLACEHOLDER
from replayproxy.routes import Route
from replayproxy.streams import client_cut

__all__ = [
    "SAFE_METHODS",
    "Checked",
    "DriftConfig",
    "DriftReport",
    "Outcome",
    "Pacer",
    "Planned",
    "Skip",
    "endpoint_of",
    "interaction_key",
    "iso_time",
    "judge",
    "parse_origin",
    "parse_rate",
    "plan_request",
    "stream_skip",
]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods re-sent without asking: they do not change anything on the server."""

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization",
                         "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade",
                         "content-length"})


@dataclass(frozen=True, slots=True)
class DriftRoute:
    """Per-route drift settings from ``[[drift.routes]]``."""

    route: Route
    ignore: tuple[str, ...] = ()
    allow_unsafe: bool | None = None
    skip: bool = False


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """Everything ``[tool.replayproxy.drift]`` and the drift flags can set."""

    at_recorded_origin: Request | None = None
    """``request`` before the origin was rewritten: what redaction rules of routes match."""
    credentials: tuple[tuple[str, str], ...] = ()
    """(placeholder, header name or rule name) → environment variable, in file order."""
    ignore: tuple[str, ...] = ()
    """JSON paths (``$...``) and header names never compared, for every request."""
    allow_unsafe: bool = False
    """Re-send POST, PUT, PATCH, DELETE... everywhere (else only where a route allows)."""
    origins: tuple[tuple[str, str], ...] = ()
    """(recorded origin, live origin): send requests recorded for one to the other."""
    routes: tuple[DriftRoute, ...] = ()
    concurrency: int = 4
    rate: float | None = None
    """Requests per second per host; None: no limit."""
    timeout: float = 10.0
    repeat: bool = True
    """Send safe requests a second time to learn which values are volatile."""
    database: str | None = None

    def route_settings(self, request: Request) -> tuple[tuple[str, ...], bool, bool]:
        """(ignore list, unsafe allowed, skipped) for ``request``; later routes win."""
        ignore, allow, skip = list(self.ignore), self.allow_unsafe, False
        for r in self.routes:
            if r.route.matches(request):
                ignore += r.ignore
                if r.allow_unsafe is not None:
                    allow = r.allow_unsafe
                skip = skip or r.skip
        return tuple(ignore), allow, skip


_RATE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?")
_RATE_UNITS = {None: 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0,
               "minute": 60.0, "h": 3600.0, "hour": 3600.0}


def parse_rate(name: str, text: str) -> float:
    """Requests per second from ``5/s``, ``120/min``, ``1000/h`` or a bare number.

    Raises:
        ValueError: naming ``name``.
    """
    m = _RATE.fullmatch(text.strip().lower())
    rate = float(m[1]) / _RATE_UNITS[m[2]] if m else 0.0
    if rate <= 0:
        raise ValueError(f"{name}={text!r} is not a rate; write requests per host such as "
                         f"5/s, 120/min or 1000/h (more than 0)")
    return rate


def parse_origin(name: str, text: str) -> str:
    """``https://host[:port][/prefix]`` checked and without a trailing slash.

    Raises:
        ValueError: naming ``name``.
    """
    parts = urlsplit(text.strip())
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ValueError(f"{name} {text!r} is not an origin; write e.g. "
                         f"https://api.example.com or http://127.0.0.1:8080")
    return text.strip().rstrip("/")


class Outcome(StrEnum):
    """What came of one recorded interaction; declared worst first."""

    ERROR = "error"
    """It could not be checked: the live call failed, or a credential is missing."""
    BREAKING = "breaking"
    """The live response breaks the recorded contract."""
    CHANGED = "changed"
    """Additive differences only: worth re-recording, passes."""
    PASSED = "passed"
    """No difference, or only noise."""
    SKIPPED = "skipped"
    """Not re-sent (an unsafe method, a WebSocket, or a route says skip)."""


@dataclass(frozen=True, slots=True)
class Skip:
    """A request that is not sent, and why; ``error`` when that makes the check fail."""

    reason: str
    error: bool = False


@dataclass(frozen=True, slots=True)
class Planned:
    """The request to send live, with what it takes from the configuration."""

    request: Request
    ignore: tuple[str, ...]
    repeat: bool
    secrets: tuple[str, ...] = ()
    """The credential values put in (for re-redacting what comes back)."""
    at_recorded_origin: Request | None = None
    """``request`` before the origin was rewritten: what redaction rules of routes match."""
    credentials: tuple[tuple[str, str], ...] = ()
    """(rule, value) of each credential put in: the rule is the middle part of the
    placeholder it replaced, so an echoed value is redacted back to that placeholder."""


def _netloc(scheme: str, host: str, port: int) -> str:
    """``host[:port]``, the port only when not the scheme's default (a Host header)."""
    return format_url(scheme, host, port, "").split("://", 1)[1]


def _split_origin(text: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path prefix) of an origin such as ``https://host:8443/mock``."""
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    return (scheme, parts.hostname or "", parts.port or (443 if scheme == "https" else 80),
            parts.path.rstrip("/"))


def _rebase(request: Request, origins: Sequence[tuple[str, str]]) -> Request:
    here = (request.scheme, request.host, request.port)
    for recorded, live in origins:
        if _split_origin(recorded)[:3] == here:
            scheme, host, port, prefix = _split_origin(live)
            host = host or request.host
            headers = tuple((k, _netloc(scheme, host, port)) if k.lower() == "host"
                            else (k, v) for k, v in request.headers)
            return replace(request, scheme=scheme, host=host, port=port,
                           path=prefix + request.path, headers=headers)
    return request


@dataclass(slots=True)
class _Credentials:
    mapping: Sequence[tuple[str, str]]
    environ: Mapping[str, str]
    used: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def value(self, placeholder: str, rule: str, header: str | None) -> str | None:
        names = [placeholder, rule] + ([header.lower()] if header else [])
        for key, var in self.mapping:
            if key == placeholder or key.lower() in names[1:]:
                if var not in self.environ:
                    self.problems.append(
                        f"credential variable {var} is not set (mapped from {key!r}); "
                        f"export it before running the drift check")
                    return None
                self.used[placeholder] = self.environ[var]
                return self.environ[var]
        self.problems.append(
            f"the request carries {placeholder} and no credential is mapped to it; add "
            f'{rule} = "ENV_VAR" under [tool.replayproxy.drift.credentials] or pass '
            f"--credential {rule}=ENV_VAR")
        return None


_ENCODED_PLACEHOLDER = re.compile(r"%3Credacted%3A([a-z0-9_.\-]+)%3A([0-9a-f]{6})%3E", re.I)


def _fill(text: str, creds: _Credentials, header: str | None, escape: str) -> str:
    def raw(m: re.Match[str]) -> str:
        value = creds.value(m.group(0), m.group(1), header)
        if value is None:
            return m.group(0)
        if escape == "json":
            return json.dumps(value)[1:-1]
        if escape == "form":
            return quote_plus(value)
        if escape == "url":
            return quote(value, safe="")
        return value

    def encoded(m: re.Match[str]) -> str:
        placeholder = f"<redacted:{m.group(1).lower()}:{m.group(2).lower()}>"
        value = creds.value(placeholder, m.group(1).lower(), header)
        return m.group(0) if value is None else quote(value, safe="")

    text = PLACEHOLDER.sub(raw, text)
    return _ENCODED_PLACEHOLDER.sub(encoded, text)


def _body_escape(headers: Sequence[tuple[str, str]]) -> str:
    ctype = (header_value(headers, "content-type") or "").lower()
    if "json" in ctype:
        return "json"
    if "x-www-form-urlencoded" in ctype:
        return "form"
    return "raw"


def stream_skip(interaction: Interaction) -> Skip | None:
    """Why a recorded stream is not re-sent, or None: one the client left (an endless
    stream: reading it live would not end) or one the upstream broke off (no whole
    response to compare with). A stream that ended is re-sent and compared as a body."""
    if client_cut(interaction.cut):
        return Skip("an endless stream (the client left it while recording): not re-sent, "
                    "reading it live would not end")
    if interaction.cut:
        return Skip("a stream the upstream broke off while recording: not re-sent, there "
                    "is no whole response to compare with; re-record it")
    return None


def plan_request(request: Request, config: DriftConfig,
                 environ: Mapping[str, str]) -> Planned | Skip:
    """The request to send live for a recorded one, or why it is not sent.

    Placeholders (``<redacted:RULE:HASH>``, also percent-encoded) are replaced by the
    environment variable mapped to the placeholder itself, to the header holding it or
    to its rule; an unmapped placeholder or an unset variable is a ``Skip`` with
    ``error=True``. Hop-by-hop headers and Content-Length are dropped (the sender
    frames the body itself).
    """
    ignore, allow_unsafe, skipped = config.route_settings(request)
    if skipped:
        return Skip("skipped by a drift route in the configuration")
    if is_websocket_upgrade(request.headers):
        return Skip("a WebSocket: drift does not re-send WebSockets, its handshake and "
                    "messages are not checked")
    safe = request.method.upper() in SAFE_METHODS
    if not safe and not allow_unsafe:
        return Skip(f"{request.method} not re-sent: it may change data on the server; "
                    f"pass --allow-unsafe or allow it for this route")
    if is_grpc(request.headers):
        return Skip("gRPC call not re-sent: the live check speaks HTTP/1.1 and reads no "
                    "trailers, and a gRPC call needs HTTP/2 and ends in its grpc-status "
                    "trailer; its drift is not checked")
    text = request.body.decode("latin-1")  # lossless: any bytes, searched once
    if content_encodings(request.headers) and PLACEHOLDER.search(text):
        return Skip("the request body is content-encoded and holds placeholders; "
                    "re-record it", error=True)
    creds = _Credentials(config.credentials, environ)
    headers = tuple((k, _fill(v, creds, k, "raw")) for k, v in request.headers
                    if k.lower() not in _HOP_BY_HOP)
    query = _fill(request.query, creds, None, "url")
    path = _fill(request.path, creds, None, "url")
    body = request.body
    if PLACEHOLDER.search(text) or _ENCODED_PLACEHOLDER.search(text):
        body = _fill(body.decode("utf-8", "surrogateescape"), creds, None,
                     _body_escape(request.headers)).encode("utf-8", "surrogateescape")
    if creds.problems:
        return Skip(creds.problems[0], error=True)
    filled = replace(request, headers=headers, query=query, path=path, body=body)
    live = _rebase(filled, config.origins)
    rules = {value: m.group(1) for placeholder, value in creds.used.items()
             if (m := PLACEHOLDER.fullmatch(placeholder))}
    return Planned(live, ignore, repeat=config.repeat and safe,
                   secrets=tuple(dict.fromkeys(creds.used.values())), at_recorded_origin=filled,
                   credentials=tuple((rule, value) for value, rule in rules.items()))


_ID_SEGMENT = re.compile(r"\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
                         r"|[a-z]{1,8}_[a-z0-9]*\d[a-z0-9]*", re.I)
"""A path segment that names one resource: a number, a UUID, a prefixed id (ch_0001)."""


def endpoint_of(request: Request) -> str:
    """``GET api.example.com/v1/charges/{id}``: ids in the path folded, for grouping."""
    segments = [("{id}" if s and (_ID_SEGMENT.fullmatch(s) or looks_volatile(None, s)) else s)
                for s in request.path.split("/")]
    netloc = _netloc(request.scheme, request.host, request.port)
    return f"{request.method} {netloc}{'/'.join(segments)}"


def interaction_key(request: Request, occurrence: int) -> str:
    """A stable name for a recorded interaction: ``GET https://host/path?q #2``.

    ``occurrence`` numbers the interactions with the same method and URL in the
    cassette from 1 (``#2``: the second such request), so a key survives re-recording
    other interactions.
    """
    return f"{request.method} {request.url} #{occurrence}"


@dataclass(frozen=True, slots=True)
class Checked:
    """One recorded interaction, checked."""

    cassette: str
    index: int
    """Position in the cassette, from 0 (reports show ``number``)."""
    key: str
    """``interaction_key``: stable across runs (history)."""
    endpoint: str
    method: str
    url: str
    """The recorded URL (placeholders as in the cassette)."""
    outcome: Outcome
    findings: tuple[Finding, ...] = ()
    message: str = ""
    """Why it was skipped, or the error."""
    recorded: Response | None = None
    live: Response | None = None
    live_url: str = ""
    repeated: bool = False
    """Whether a second live call taught volatility."""
    elapsed: float = 0.0

    @property
    def number(self) -> int:
        """The interaction's number in its cassette, from 1, as every report shows it
        (and ``replayproxy cassette show -i`` takes it)."""
        return self.index + 1

    def as_json(self) -> dict[str, object]:
        return {"cassette": self.cassette, "number": self.number, "key": self.key,
                "endpoint": self.endpoint, "method": self.method, "url": self.url,
                "live_url": self.live_url, "outcome": self.outcome.value,
                "message": self.message, "repeated": self.repeated,
                "elapsed": round(self.elapsed, 4),
                "status": {"recorded": self.recorded.status if self.recorded else None,
                           "live": self.live.status if self.live else None},
                "findings": [f.as_json() for f in self.findings]}


def judge(base: Checked, recorded: Response, live: Response, live_again: Response | None,
          ignore: Sequence[str]) -> Checked:
    """Compare and classify: ``base`` carries the identity, the result its outcome."""
    findings = tuple(compare_responses(recorded, live, live_again=live_again, ignore=ignore))
    severity = worst(findings)
    outcome = {Severity.BREAKING: Outcome.BREAKING,
               Severity.ADDITIVE: Outcome.CHANGED}.get(severity or Severity.NOISE,
                                                       Outcome.PASSED)
    return replace(base, outcome=outcome, findings=findings, recorded=recorded, live=live,
                   repeated=live_again is not None)


@dataclass(slots=True)
class DriftReport:
    """A whole drift run."""

    cassettes: tuple[str, ...]
    started_at: float = field(default_factory=time.time)
    finished_at: float = 0.0
    results: list[Checked] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """What stopped part of the run: a missing cassette, an unreadable one."""
    updated: list[str] = field(default_factory=list)
    """Interaction keys re-recorded by ``--update``."""

    def counts(self) -> dict[Outcome, int]:
        out = dict.fromkeys(Outcome, 0)
        for r in self.results:
            out[r.outcome] += 1
        return out

    def exit_code(self) -> int:
        """2 when the check could not run fully, else 1 on breaking drift, else 0."""
        counts = self.counts()
        if self.problems or counts[Outcome.ERROR]:
            return 2
        return 1 if counts[Outcome.BREAKING] else 0

    def as_json(self) -> dict[str, object]:
        """Version 2: times in ISO 8601 (UTC), interactions numbered from 1."""
        finished = self.finished_at > 0
        return {"format": "replayproxy-drift", "version": 2,
                "started_at": iso_time(self.started_at),
                "finished_at": iso_time(self.finished_at) if finished else None,
                "duration": round(max(0.0, self.finished_at - self.started_at), 3)
                if finished else None,
                "cassettes": list(self.cassettes),
                "counts": {k.value: v for k, v in self.counts().items()},
                "exit_code": self.exit_code(), "problems": list(self.problems),
                "updated": list(self.updated),
                "results": [r.as_json() for r in self.results]}


def iso_time(timestamp: float) -> str:
    """``2026-12-06T11:19:53Z``: a time in JSON output, ISO 8601 in UTC to the second."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Pacer:
    """At most ``rate`` sends per second per host: ``reserve(host, now)`` says how long
    to wait before sending; successive callers queue behind each other."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next: dict[str, float] = {}

    def reserve(self, host: str, now: float) -> float:
        if not self.interval:
            return 0.0
        at = max(now, self._next.get(host, now))
        self._next[host] = at + self.interval
        return at - now
