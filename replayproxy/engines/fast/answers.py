"""replayproxy's own answers and what faults do to a response, for the fast engine.

The same responses as the mitm engine's ``convert`` and ``addon`` make (headers in the
same order and case), built on replayproxy's model instead of mitmproxy's.
"""

from __future__ import annotations

from replayproxy.codec import decode_body
from replayproxy.decision.session import Unmatched
from replayproxy.engines.fast.http1 import reason_for, set_header
from replayproxy.faults.effects import Corrupt, Respond, Truncate
from replayproxy.faults.mangle import corrupt_body, truncate_body
from replayproxy.model import Headers, Response, header_value

__all__ = ["break_body", "fault_response", "plain", "refused", "trickle_head",
           "unmatched_response"]


def _make(status: int, body: bytes, headers: list[tuple[str, str]]) -> Response:
    """As mitmproxy's ``Response.make``: the given headers, then content-length (unless
    a Transfer-Encoding is given)."""
    if not any(k.lower() == "transfer-encoding" for k, _ in headers):
        set_header(headers, "content-length", str(len(body)))
    return Response(status, reason_for(status), tuple(headers), body)


def plain(status: int, text: str, marker: str) -> Response:
    """A text answer of replayproxy's own, marked ``X-Replayproxy: marker``."""
    return _make(status, text.encode("utf-8"), [
        ("Content-Type", "text/plain; charset=utf-8"), ("X-Replayproxy", marker)])


def refused() -> Response:
    """The answer of a ``refuse_connect`` fault."""
    return _make(502, b"replayproxy fault: connection refused\n", [("X-Replayproxy", "fault")])


def fault_response(effect: Respond) -> Response:
    """The answer of a ``status`` or ``rate_limit`` fault."""
    headers = {"X-Replayproxy": "fault", **dict(effect.headers)}
    return _make(effect.status, effect.body, list(headers.items()))


def unmatched_response(unmatched: Unmatched, accept: str) -> Response:
    """The 502 for a request nothing recorded matches: JSON if the client accepts it."""
    if "json" in accept.lower():
        return _make(502, unmatched.as_json_bytes(), [
            ("Content-Type", "application/json"), ("X-Replayproxy", "unmatched")])
    return plain(502, unmatched.message, "unmatched")


def break_body(response: Response, terminal: object) -> Response:
    """``response`` as a ``truncate`` (headers announcing the whole body, part of it
    sent, ``Connection: close``) or ``corrupt`` fault leaves it; others leave it alone."""
    headers = list(response.headers)
    if isinstance(terminal, Truncate):
        body = response.body
        set_header(headers, "content-length", str(max(len(body), 1)))
        set_header(headers, "transfer-encoding", None)
        set_header(headers, "connection", "close")
        return Response(response.status, response.reason, tuple(headers),
                        truncate_body(body, terminal), response.http_version)
    if isinstance(terminal, Corrupt):
        decoded = decode_body(response.body, response.headers)
        set_header(headers, "content-encoding", None)
        body = corrupt_body(response.body if decoded is None else decoded, terminal)
        if header_value(headers, "transfer-encoding") is None:
            set_header(headers, "content-length", str(len(body)))
        return Response(response.status, response.reason, tuple(headers), body,
                        response.http_version)
    return response


def trickle_head(response: Response, length: int | None = None) -> bytes:
    """The head a slow body is sent under (as the mitm engine's trickle server sends it):
    the recorded headers but for framing, ``Content-Length`` (``length``, default the
    body's), ``Connection: close``."""
    reason = response.reason or reason_for(response.status)
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    lines += [f"{k}: {v}" for k, v in response.headers
              if k.lower() not in ("content-length", "transfer-encoding", "connection")]
    lines += [f"Content-Length: {len(response.body) if length is None else length}",
              "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def has_body(method: str, response: Response) -> bool:
    """Whether there is a body to trickle (a HEAD, 1xx, 204 or 304 never has one)."""
    return bool(response.body) and method.upper() != "HEAD" \
        and not (100 <= response.status < 200 or response.status in (204, 304))


def accept_of(headers: Headers) -> str:
    """The request's Accept headers, joined ("" if none)."""
    return ", ".join(v for k, v in headers if k.lower() == "accept")
