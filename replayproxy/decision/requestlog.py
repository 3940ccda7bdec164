"""What clients sent during a run: the request log, its filter and request verification.

The pipeline adds every request it decides to a run's ``RequestLog`` (as the client sent
it, before redaction: a test asserts what its code sent), numbered from 1 in the order
they came. A test takes ``log.next_seq`` when it starts and later asks
``log.select(since=..., method="POST", url="*/v1/payment_intents")``; ``verify`` checks
such a list against what was expected and says, when it does not hold, how each request
differs (a readable diff of the JSON body), as WireMock's ``verify`` or a mock's
``toHaveBeenCalledWith`` would::

    sent = log.select(since=start, method="POST", url="*/v1/payment_intents")
    problem = verify(log.select(since=start), method="POST",
                     url="*/v1/payment_intents", json={"amount": 9999}, times=1)

The log is bounded (the last ``RequestLog.limit`` requests, and at most
``RequestLog.body_budget`` bytes of bodies, each cut at ``BODY_LIMIT``): a proxy served
for days does not grow without end. Thread-safe: the engine
adds from its thread while a test reads from its own.
"""

from __future__ import annotations

import base64
import json as jsonlib
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from replayproxy.codec import decode_body
from replayproxy.model import Headers, Request, header_value
from replayproxy.routes import Route, parse_route

__all__ = ["BODY_LIMIT", "Numbering", "RequestLog", "SentRequest", "json_differences",
           "request_route", "verify"]

BODY_LIMIT = 1024 * 1024
"""Bytes of each request body the log keeps (the rest is dropped, ``truncated`` says so)."""

_MISSING = object()


@dataclass(frozen=True, slots=True)
class SentRequest:
    """One request a client sent through the proxy, and what the proxy did with it.

    ``outcome``: ``replayed``, ``forwarded`` (sent upstream, recorded), ``unmatched``, ``fault`` (a
    fault answered it) or ``error``.
    """

    seq: int
    request: Request
    outcome: str
    truncated: bool = False
    """True when the body was longer than ``BODY_LIMIT`` and is cut."""

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def url(self) -> str:
        """The absolute URL, query included."""
        return self.request.url

    @property
    def headers(self) -> Headers:
        """``(name, value)`` pairs as sent, duplicates included."""
        return self.request.headers

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        return header_value(self.request.headers, name)

    @property
    def body(self) -> bytes:
        """The body with its Content-Encoding undone (as sent when it cannot be)."""
        decoded = decode_body(self.request.body, self.request.headers)
        return self.request.body if decoded is None else decoded

    @property
    def json(self) -> Any:
        """The body decoded as JSON, or None when it is empty or not JSON."""
        try:
            return jsonlib.loads(self.body) if self.body else None
        except (ValueError, UnicodeDecodeError):
            return None

    def as_json(self) -> dict[str, Any]:
        """The request for the control API (``GET /requests``): the body as UTF-8 text,
        else base64 (``body_encoding``), and ``json`` when it is JSON."""
        body = self.body
        try:
            text, encoding = body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(body).decode("ascii"), "base64"
        out: dict[str, Any] = {
            "seq": self.seq, "method": self.method, "url": self.url,
            "headers": [list(h) for h in self.headers], "body": text,
            "body_encoding": encoding, "truncated": self.truncated, "outcome": self.outcome,
        }
        decoded = self.json
        if decoded is not None:
            out["json"] = decoded
        return out

    def describe(self) -> str:
        """``POST https://api.example.com/v1/charges (replayed)``."""
        return f"{self.method} {self.url} ({self.outcome})"


def request_route(method: str | None = None, url: str | None = None) -> Route:
    """The filter ``method`` and ``url`` stand for, as a route (see ``replayproxy.routes``:
    ``*/v1/payment_intents`` is any host; a glob with ``://`` is the full URL without
    the query). Raise ValueError on a malformed one."""
    return parse_route(f"{(method or '*').upper()} {url or '*'}")


class Numbering(Protocol):
    """Where a log's request numbers come from: its own counter, or one shared by the
    logs of several engine processes serving one port (``serve --workers``), so their
    requests are numbered in one sequence, in the order they came."""

    def take(self) -> int:
        """The next number (used up)."""
        ...

    def peek(self) -> int:
        """The number ``take`` would give now."""
        ...


class _Counter:
    """A log's own numbering: 1, 2, 3..."""

    def __init__(self) -> None:
        self._next = 1

    def take(self) -> int:
        self._next += 1
        return self._next - 1

    def peek(self) -> int:
        return self._next


class RequestLog:
    """The requests of one run, oldest first: the last ``limit`` of them, holding at
    most ``body_budget`` bytes of bodies; numbered by ``numbers`` [default: 1, 2, 3...
    of its own]."""

    limit = 10_000
    body_budget = 64 * 1024 * 1024

    def __init__(self, numbers: Numbering | None = None) -> None:
        self._entries: deque[SentRequest] = deque()
        self._lock = threading.Lock()
        self._numbers = numbers if numbers is not None else _Counter()
        self._bytes = 0
        self._lost_before = 1  # requests before this number fell off the end

    @property
    def next_seq(self) -> int:
        """The number the next request will get: ``select(since=...)`` from here on."""
        return self._numbers.peek()

    def add(self, request: Request, outcome: str) -> SentRequest:
        """Log ``request`` with what the proxy did with it."""
        truncated = len(request.body) > BODY_LIMIT
        if truncated:
            request = Request(request.method, request.scheme, request.host, request.port,
                              request.path, request.query, request.headers,
                              request.body[:BODY_LIMIT], request.http_version)
        with self._lock:
            entry = SentRequest(self._numbers.take(), request, outcome, truncated)
            self._entries.append(entry)
            self._bytes += len(request.body)
            while len(self._entries) > self.limit or (
                    self._bytes > self.body_budget and len(self._entries) > 1):
                oldest = self._entries.popleft()
                self._bytes -= len(oldest.request.body)
                self._lost_before = oldest.seq + 1
        return entry

    def select(self, since: int = 1, method: str | None = None, url: str | None = None
               ) -> list[SentRequest]:
        """The requests numbered ``since`` or later, filtered by method and URL glob.

        Raises:
            ValueError: the filter is malformed, or requests since ``since`` were
                dropped already (more than ``limit``, or ``body_budget`` bytes, came
                after it).
        """
        route = request_route(method, url) if method or url else None
        with self._lock:
            entries = list(self._entries)
            lost = since < self._lost_before
        if lost:
            raise ValueError(f"the request log keeps the last {self.limit} requests and "
                             f"{self.body_budget // 2**20} MiB of bodies; those from "
                             f"#{since} on are no longer all there")
        return [e for e in entries if e.seq >= since and (route is None
                                                          or route.matches(e.request))]

    def clear(self) -> int:
        """Forget every request; return how many there were."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            self._bytes = 0
        return count


# -- verification -------------------------------------------------------------------


def _show(value: Any) -> str:
    text = jsonlib.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 120 else text[:117] + "..."


def json_differences(expected: Any, actual: Any, path: str = "$") -> list[str]:
    """How ``actual`` fails to contain ``expected``, one line per difference.

    An object holds the keys given (others are ignored); a list has as many items, each
    holding the expected one; anything else is equal (``unittest.mock.ANY`` matches
    anything; ``True`` is not ``1``).
    """
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return [f"{path}: expected an object, got {_show(actual)}"]
        out = []
        for key, value in expected.items():
            sub = f"{path}.{key}"
            if key not in actual:
                out.append(f"{sub}: missing (expected {_show(value)})")
            else:
                out += json_differences(value, actual[key], sub)
        return out
    if isinstance(expected, list | tuple):
        if not isinstance(actual, list | tuple):
            return [f"{path}: expected a list, got {_show(actual)}"]
        if len(expected) != len(actual):
            return [f"{path}: expected {len(expected)} items, got {len(actual)}: "
                    f"{_show(actual)}"]
        return [d for i, (e, a) in enumerate(zip(expected, actual, strict=True))
                for d in json_differences(e, a, f"{path}[{i}]")]
    numbers = (bool, int, float)
    same = expected == actual and not (  # JSON's true is not 1
        isinstance(expected, numbers) and isinstance(actual, numbers)
        and isinstance(expected, bool) != isinstance(actual, bool))
    return [] if same else [f"{path}: expected {_show(expected)}, got {_show(actual)}"]


def _differences(sent: SentRequest, json: Any, headers: Mapping[str, str] | None,
                 body: bytes | str | None) -> list[str]:
    """How one request differs from what was expected (empty: it matches)."""
    out = []
    for name, value in (headers or {}).items():
        got = sent.header(name)
        if got != value:
            out.append(f"header {name}: expected {value!r}, got "
                       f"{'nothing' if got is None else repr(got)}")
    if json is not _MISSING:
        got_json = sent.json
        if got_json is None and sent.body:
            out.append(f"body: expected JSON {_show(json)}, got "
                       f"{sent.body[:120].decode('utf-8', 'replace')!r}")
        else:
            out += json_differences(json, got_json)
    if body is not None:
        wanted = body.encode() if isinstance(body, str) else body
        if sent.body != wanted:
            out.append(f"body: expected {wanted[:120]!r}, got {sent.body[:120]!r}")
    return out


def verify(sent: Iterable[SentRequest], method: str | None = None, url: str | None = None,
           *, json: Any = _MISSING, headers: Mapping[str, str] | None = None,
           body: bytes | str | None = None, times: int | None = None) -> str | None:
    """Check that requests matching ``method`` and ``url`` were sent with ``json`` (the
    keys given), ``headers`` and ``body``, ``times`` times (None: at least once).

    Returns None when it holds, else a message listing every request sent with how each
    one of those to ``method url`` differs.
    """
    if times is not None and times < 0:
        raise ValueError(f"times must be 0 or more, got {times}")
    route = request_route(method, url)
    sent = list(sent)
    candidates = [s for s in sent if route.matches(s.request)]
    diffs = {s.seq: _differences(s, json, headers, body) for s in candidates}
    matching = [s for s in candidates if not diffs[s.seq]]
    if (len(matching) >= 1) if times is None else (len(matching) == times):
        return None
    what = f"{(method or '*').upper()} {url or '*'}"
    conditions = []
    if json is not _MISSING:
        conditions.append(f"JSON {_show(json)}")
    if headers:
        conditions.append(f"headers {dict(headers)!r}")
    if body is not None:
        conditions.append(f"body {body!r}")
    expected = "at least 1" if times is None else str(times)
    lines = [f"expected {expected} request{'' if times in (None, 1) else 's'} {what}"
             f"{' with ' + ' and '.join(conditions) if conditions else ''}, "
             f"got {len(matching)}."]
    if not sent:
        lines.append("No request was sent through the proxy during this test.")
    else:
        lines.append(f"Requests sent during this test ({len(sent)}):")
        for s in sent:
            mark = ("matches" if s.seq in diffs and not diffs[s.seq]
                    else "differs" if s.seq in diffs else f"not {what}")
            lines.append(f"  #{s.seq} {s.describe()}: {mark}")
            lines += [f"      {d}" for d in diffs.get(s.seq, ())]
    return "\n".join(lines)
