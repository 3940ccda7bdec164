"""Failures that must never be silent: an upstream that failed while recording, a client
that refused the proxy's certificate.

Plain Python: the engine reports what it saw (the request, the engine's error message,
the host a client refused); these types name the cause and the fix for the end-of-run
report.

An upstream failure while recording is kept in the cassette as what the client got (the
engine's 502 answer), marked with ``X-Replayproxy: upstream-error`` and the cause in
``X-Replayproxy-Cause``, so replay answers the same 502. A timeout (the client gave up
before any answer) is kept as a marked placeholder, ``X-Replayproxy: upstream-timeout``
with the seconds the client waited in ``X-Replayproxy-Waited``, which replay carries
out as no answer at all: the request is held, then the connection dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from replayproxy.model import Request, Response

__all__ = ["CAUSE_HEADER", "MARKER", "TIMEOUT_MARKER", "WAITED_HEADER", "ClientRefusal",
           "UpstreamFailure", "classify_upstream_error", "is_upstream_failure",
           "recorded_cause", "recorded_timeout"]

MARKER = "upstream-error"
"""The value of ``X-Replayproxy`` on a recorded upstream failure."""
CAUSE_HEADER = "X-Replayproxy-Cause"
TIMEOUT_MARKER = "upstream-timeout"
"""The value of ``X-Replayproxy`` on a recorded timeout (never sent to a client)."""
WAITED_HEADER = "X-Replayproxy-Waited"

_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("TLS verify failed", ("certificate verify failed", "certificate_verify_failed")),
    ("connection refused", ("connection refused", "connect call failed", "errno 111")),
    ("DNS lookup failed", ("name or service not known", "nodename nor servname",
                           "temporary failure in name resolution", "no address associated",
                           "getaddrinfo", "name resolution")),
    ("connection reset", ("reset", "peer closed", "server disconnected", "broken pipe",
                          "connection closed", "closed connection")),
    ("timeout", ("timed out", "timeout", "client disconnected")),
    ("TLS handshake failed", ("tls", "ssl", "handshake")),
)


def _fix(kind: str, host: str, port: int) -> str:
    return {
        "TLS verify failed": "pass --upstream-ca or check the system trust store",
        "TLS handshake failed": f"check that {host}:{port} speaks TLS (https) on that port",
        "connection refused": f"check that the service is running on {host}:{port} and the "
                              "URL's port is right",
        "DNS lookup failed": f"check the host name {host!r} and that this machine can "
                             "resolve it (DNS, /etc/hosts)",
        "connection reset": f"the server at {host}:{port} closed the connection: check that "
                            "it speaks HTTP(S) on that port",
        "timeout": f"{host}:{port} did not answer before the client gave up: check that the "
                   "service is up, or raise the client's timeout",
    }.get(kind, f"check that {host}:{port} is reachable from this machine")


def classify_upstream_error(message: str) -> str:
    """The kind of an engine's upstream error message: ``TLS verify failed``,
    ``connection refused``, ``DNS lookup failed``, ``connection reset``, ``timeout``,
    ``TLS handshake failed`` or ``upstream error``."""
    low = message.lower()
    for kind, needles in _KINDS:
        if any(n in low for n in needles):
            return kind
    return "upstream error"


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    """A request whose upstream failed while recording (or whose recorded failure was
    replayed)."""

    request: Request
    message: str
    """The engine's words for it (``[Errno 111] Connect call failed …``)."""

    @property
    def kind(self) -> str:
        return classify_upstream_error(self.message)

    @property
    def fix(self) -> str:
        return _fix(self.kind, self.request.host, self.request.port)

    @property
    def line(self) -> str:
        """``TLS verify failed for api.example.com: … — pass --upstream-ca or …``."""
        return (f"{self.kind} for {self.request.host}:{self.request.port} "
                f"({self.request.method} {self.request.url}): {self.message} — {self.fix}")


@dataclass(frozen=True, slots=True)
class ClientRefusal:
    """A client that refused the proxy's certificate for ``host`` (its TLS SNI)."""

    host: str
    message: str

    @property
    def line(self) -> str:
        return (f"a client refused the proxy's certificate for {self.host or '(no SNI)'}: it "
                f"does not trust the replayproxy CA ({self.message}) — give it the CA: "
                "`replayproxy ca` prints how for each client (see docs/clients.md)")


def _header(response: Response, name: str) -> str | None:
    name = name.lower()
    return next((v for k, v in response.headers if k.lower() == name), None)


def is_upstream_failure(response: Response) -> bool:
    """True if ``response`` is a recorded upstream failure or timeout (see ``MARKER``)."""
    return response.status >= 500 and _header(response, "x-replayproxy") in (
        MARKER, TIMEOUT_MARKER)


def recorded_timeout(response: Response) -> float | None:
    """The seconds a client waited in vain, if ``response`` is a recorded timeout."""
    if response.status < 500 or _header(response, "x-replayproxy") != TIMEOUT_MARKER:
        return None
    try:
        return max(0.0, float(_header(response, WAITED_HEADER) or 0))
    except ValueError:
        return 0.0


def recorded_cause(response: Response) -> str:
    """The cause kept with a recorded upstream failure."""
    return _header(response, CAUSE_HEADER) or ""
