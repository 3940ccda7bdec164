"""HAR files (browsers' and proxies' HTTP archives) read into replayproxy interactions.

A HAR is JSON, ``{"log": {"entries": [{"request": {...}, "response": {...}}]}}``, with
headers and cookies as lists of ``{"name", "value"}``. Its bodies are decoded text
(``postData.text``, ``content.text``, base64 when ``encoding`` says so), so
``Content-Encoding`` is dropped, a ``Content-Length`` is set to the decoded body's
length, and their ``mimeType`` becomes the ``Content-Type`` when the headers have none.
``startedDateTime``, ``time`` and ``timings.wait`` give when and how fast.

``write_har`` writes HAR 1.2: bodies decoded (their ``Content-Encoding`` undone), as
text when they are UTF-8, else base64 with ``"encoding": "base64"``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from replayproxy.codec import decode_body
from replayproxy.errors import CassetteError
from replayproxy.formats import Entry, as_stored, plain, request_from_url, status_code
from replayproxy.model import Headers, Interaction, Response, header_value

__all__ = ["read_har", "write_har"]


def _pairs(items: Any) -> list[tuple[str, str]]:
    return [(plain(h.get("name", "")), plain(h.get("value", ""))) for h in _list(items)
            if isinstance(h, dict)]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _headers(raw: Any, mime_type: Any, body: bytes) -> Headers:
    headers = [(k, v) for k, v in _pairs(raw) if k.lower() != "content-encoding"]
    if mime_type and header_value(headers, "content-type") is None:
        headers.append(("Content-Type", plain(mime_type)))
    return as_stored(tuple(headers), body)


def _text(value: Any) -> bytes:
    return plain(value).encode("utf-8")


def _content(content: dict[str, Any]) -> bytes:
    """The bytes of a HAR ``content`` or ``postData`` (base64 when ``encoding`` says)."""
    text = plain(content.get("text", ""))
    if content.get("encoding") == "base64":
        try:
            return base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError):
            pass
    return _text(text)


def read_har(path: Path) -> tuple[Entry, ...]:
    """The interactions of the HAR file at ``path``, in order; an entry that is not a
    whole exchange (no request, no response, no URL) says why in ``problem``.

    Raises:
        CassetteError: the file is not JSON (``syntax``), or not a HAR (no
            ``log.entries`` list).
    """
    try:
        document = json.loads(path.read_bytes())
    except OSError as e:
        raise CassetteError(f"cannot read {path}: {e.strerror}", syntax=True) from None
    except RecursionError:  # JSON nested thousands deep
        raise CassetteError(f"{path} is not valid JSON: nested too deeply to read",
                            syntax=True) from None
    except ValueError as e:  # bad JSON, bad UTF-8
        where = f"line {e.lineno}, column {e.colno}: {e.msg}" \
            if isinstance(e, json.JSONDecodeError) else "not UTF-8 text"
        raise CassetteError(f"{path} is not valid JSON ({where}): fix the file or export "
                            "it again", syntax=True) from None
    entries = _dict(_dict(document).get("log")).get("entries")
    if not isinstance(entries, list):
        raise CassetteError(f"{path} is not a HAR file: it has no 'log.entries' list",
                            syntax=False)
    return tuple(_entry(number, entry) for number, entry in enumerate(entries, 1))


def _entry(number: int, entry: Any) -> Entry:
    req, resp = (_dict(_dict(entry).get(k)) for k in ("request", "response"))
    missing = [k for k in ("request", "response") if not isinstance(_dict(entry).get(k), dict)]
    problem = f"entry #{number} has no {' and no '.join(missing)}" if missing else ""
    post, content = _dict(req.get("postData")), _dict(resp.get("content"))
    url = plain(req.get("url", ""))
    if not problem and not url:
        problem = f"entry #{number} has no request url"
    sent, got = _content(post), _content(content)
    request = request_from_url(
        plain(req.get("method") or "GET"), url,
        _headers(req.get("headers"), post.get("mimeType"), sent),
        sent, plain(req.get("httpVersion") or "HTTP/1.1"))
    response = Response(status_code(resp.get("status")),
                        plain(resp.get("statusText") or ""),
                        _headers(resp.get("headers"), content.get("mimeType"), got),
                        got, plain(resp.get("httpVersion") or "HTTP/1.1"))
    if not problem and not response.status:
        problem = f"entry #{number} has no response status (the request got no answer)"
    cookies = tuple((side, name, value) for side, part in (("request", req),
                                                            ("response", resp))
                    for name, value in _cookies(part.get("cookies")))
    started, duration, ttfb = _times(_dict(entry))
    return Entry(number, Interaction(request, response, started, ttfb, duration), url,
                 cookies, problem)


def _times(entry: dict[str, Any]) -> tuple[float, float, float]:
    """``(recorded_at, duration, ttfb)`` in seconds from an entry (0 when unknown)."""
    def seconds(value: Any) -> float:
        ms = value if isinstance(value, int | float) and not isinstance(value, bool) else 0
        return ms / 1000 if math.isfinite(ms) and 0 <= ms < 1e12 else 0.0

    try:
        started = datetime.fromisoformat(plain(entry.get("startedDateTime"))).timestamp()
    except (ValueError, OverflowError, OSError):
        started = 0.0
    timings = _dict(entry.get("timings"))
    ttfb = sum(seconds(timings.get(k)) for k in ("blocked", "dns", "connect", "send", "wait"))
    duration = seconds(entry.get("time"))
    return started, duration, min(ttfb, duration)


def _cookies(items: Any) -> list[tuple[str, str]]:
    return [(plain(c.get("name")), plain(c.get("value", ""))) for c in _list(items)
            if isinstance(c, dict)]


# -- writing ----------------------------------------------------------------------------


def _har_headers(headers: Headers) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in headers]


def _body(body: bytes, headers: Headers) -> dict[str, Any]:
    """A body as HAR holds it: decoded, as text when it is UTF-8, else base64."""
    decoded = decode_body(body, headers)
    data = body if decoded is None else decoded
    mime = header_value(headers, "content-type") or ""
    try:
        return {"mimeType": mime, "size": len(data), "text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"mimeType": mime, "size": len(data), "encoding": "base64",
                "text": base64.b64encode(data).decode("ascii")}


def _iso(timestamp: float) -> str:
    try:
        return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds") \
            .replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return "1970-01-01T00:00:00.000Z"


def _entry_of(it: Interaction) -> dict[str, Any]:
    q, r = it.request, it.response
    request: dict[str, Any] = {
        "method": q.method, "url": q.url, "httpVersion": q.http_version, "cookies": [],
        "headers": _har_headers(q.headers),
        "queryString": [{"name": k, "value": v}
                        for k, v in parse_qsl(q.query, keep_blank_values=True)],
        "headersSize": -1, "bodySize": len(q.body)}
    if q.body:
        post = _body(q.body, q.headers)
        del post["size"]
        request["postData"] = post
    wait = max(it.ttfb, 0.0) * 1000
    total = max(it.duration * 1000, wait)
    return {
        "startedDateTime": _iso(it.recorded_at), "time": round(total, 3),
        "request": request,
        "response": {
            "status": r.status, "statusText": r.reason, "httpVersion": r.http_version,
            "cookies": [], "headers": _har_headers(r.headers), "content": _body(r.body, r.headers),
            "redirectURL": header_value(r.headers, "location") or "",
            "headersSize": -1, "bodySize": len(r.body)},
        "cache": {},
        "timings": {"send": 0, "wait": round(wait, 3), "receive": round(total - wait, 3)},
    }


def write_har(interactions: Iterable[Interaction], creator_version: str = "") -> str:
    """HAR 1.2 text for ``interactions``, in order (see the module docstring)."""
    return json.dumps({"log": {
        "version": "1.2",
        "creator": {"name": "replayproxy", "version": creator_version},
        "pages": [],
        "entries": [_entry_of(it) for it in interactions],
    }}, indent=2, ensure_ascii=False) + "\n"
