"""Several cassettes on one proxy: sessions chosen by the proxy URL's user name.

A client selects its session with the user name of its proxy URL::

    HTTPS_PROXY=http://stripe-checkout@127.0.0.1:8080

which it sends as ``Proxy-Authorization: Basic base64("stripe-checkout:")`` on every
plain-HTTP request and on the CONNECT of an HTTPS tunnel (the engine remembers the
tunnel's session for the requests inside it). The session is opened the first time its
name is seen, with the run's settings (record mode, matchers, redaction, faults), or
beforehand through the control API with settings of its own; either way its settings
are fixed when it starts, so one test changing faults in its session cannot affect
another's. A request with no user name goes to the run's own cassette, if it has one.

A name is a cassette name (one path component: see ``validate_cassette_name``); any
other is refused (the engine answers 407 with the reason) and nothing is written.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from replayproxy.cassette.store import validate_cassette_name
from replayproxy.decision.pipeline import Pipeline
from replayproxy.decision.session import SessionSummary
from replayproxy.errors import ConfigError, ReplayproxyError

__all__ = ["SessionRefused", "SessionSettings", "Sessions", "session_name", "session_url"]


class SessionRefused(Exception):
    """A request names a session that cannot be used; the message says why and what to
    do (the engine answers 407 with it)."""


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What a session opened through the control API may set for itself (None: the
    run's)."""

    mode: str | None = None
    faults: tuple[str, ...] = ()
    strict: bool | None = None


def session_name(proxy_authorization: str | None) -> str | None:
    """The session a client names in its ``Proxy-Authorization`` header (the user name
    of a Basic credential, percent-decoded), or None when it names none.

    Raises:
        SessionRefused: the header is not a readable Basic credential.
    """
    if not proxy_authorization:
        return None
    scheme, _, encoded = proxy_authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise SessionRefused(
            f"replayproxy reads the session from a Basic proxy credential, not {scheme!r}: "
            "put the cassette name in the proxy URL, http://CASSETTE@HOST:PORT")
    try:
        user = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise SessionRefused(
            "the Proxy-Authorization credential is not valid base64 of user:password: put "
            "the cassette name in the proxy URL, http://CASSETTE@HOST:PORT") from None
    name = urllib.parse.unquote(user.partition(":")[0])
    return name or None


def session_url(proxy_url: str, name: str) -> str:
    """``proxy_url`` (``http://HOST:PORT``) with ``name`` as its user name."""
    scheme, _, rest = proxy_url.partition("://")
    return f"{scheme}://{urllib.parse.quote(name, safe='')}@{rest}"


def _checked(name: str) -> str:
    try:
        return validate_cassette_name(name)
    except ConfigError as e:
        raise SessionRefused(f"session {name[:80]!r} refused: {e}") from None


@dataclass
class _Open:
    pipeline: Pipeline
    settings: SessionSettings = field(default_factory=SessionSettings)


class Sessions:
    """The sessions of one proxy run, by name.

    Args:
        open_pipeline: opens the cassette of a session and builds its pipeline (the
            run's settings with the session's own on top); raises ReplayproxyError
            (a missing cassette in replay-only mode, a bad fault) or ValueError.
        default: the run's own cassette, for requests that name no session.
        default_name: its name.
    """

    def __init__(self, open_pipeline: Callable[[str, SessionSettings], Pipeline],
                 default: Pipeline | None = None, default_name: str | None = None) -> None:
        self._open_pipeline = open_pipeline
        self.default = default
        self.default_name = default_name
        self._open: dict[str, _Open] = {}
        self._closed: dict[str, SessionSummary] = {}
        self._ports: dict[int, str] = {}
        self._lock = threading.Lock()

    def bind_port(self, name: str, port: int) -> None:
        """Serve session ``name`` to every client of the proxy port ``port`` (a listener
        of its own, for clients that cannot put a user name in their proxy URL)."""
        with self._lock:
            self._ports[port] = name

    def on_port(self, port: int) -> str | None:
        """The session a port of its own serves, if any.

        Raises:
            SessionRefused: that session was closed.
        """
        with self._lock:
            name = self._ports.get(port)
            if name is not None and name not in self._open:
                raise SessionRefused(f"session {name!r} was closed; open it again (POST "
                                     "/sessions) for a new proxy URL")
        return name

    def pipeline(self, name: str | None) -> Pipeline:
        """The pipeline of session ``name`` (None or the run's cassette name: the run's
        own), opened with the run's settings if it is not open yet.

        Raises:
            SessionRefused: the name is unsafe, or its cassette cannot be opened.
        """
        if name is None or name == self.default_name:
            if self.default is None:
                raise SessionRefused(
                    "this proxy serves named sessions only: put the cassette name in the "
                    "proxy URL, HTTPS_PROXY=http://CASSETTE@HOST:PORT")
            return self.default
        with self._lock:
            found = self._open.get(name)
        return found.pipeline if found is not None else self.open(name)

    def open(self, name: str, settings: SessionSettings | None = None) -> Pipeline:
        """Open session ``name`` with ``settings`` (the run's where None).

        Raises:
            SessionRefused: the name is unsafe, already open (for a session opened with
                its own settings), or its cassette cannot be opened.
        """
        _checked(name)
        wanted = settings or SessionSettings()
        with self._lock:
            found = self._open.get(name)
            if found is not None or name == self.default_name:
                if settings is None and found is not None:
                    return found.pipeline
                raise SessionRefused(f"session {name!r} is open already, with the settings "
                                     "it started with: close it first (DELETE "
                                     f"/sessions/{name})")
            try:
                pipeline = self._open_pipeline(name, wanted)
            except ReplayproxyError as e:
                raise SessionRefused(f"session {name!r}: {e}") from None
            except ValueError as e:
                raise SessionRefused(f"session {name!r}: {e}") from None
            self._open[name] = _Open(pipeline, wanted)
            self._closed.pop(name, None)
            return pipeline

    def close(self, name: str) -> SessionSummary:
        """Close session ``name``: write what it recorded; return its summary.

        Raises:
            SessionRefused: no such open session.
        """
        with self._lock:
            found = self._open.pop(name, None)
        if found is None:
            raise SessionRefused(f"no open session {name[:80]!r}")
        summary = found.pipeline.session.close()
        with self._lock:
            self._closed[name] = summary
        return summary

    def close_all(self) -> dict[str, SessionSummary]:
        """Close every named session; return the summary of each session this run had
        (closed earlier or now), by name."""
        for name in self.names():
            with contextlib.suppress(SessionRefused):  # closed meanwhile (control API)
                self.close(name)
        with self._lock:
            return dict(self._closed)

    def names(self) -> list[str]:
        """The named sessions open now, in the order they were opened."""
        with self._lock:
            return list(self._open)

    def __iter__(self) -> Iterator[tuple[str, Pipeline]]:
        with self._lock:
            return iter([(n, o.pipeline) for n, o in self._open.items()])

    @property
    def records(self) -> bool:
        """True if any open session may send requests upstream."""
        pipelines = [p for _, p in self]
        if self.default is not None:
            pipelines.append(self.default)
        return any(p.records for p in pipelines)
