"""Builders of model values for the tests: short calls, realistic defaults.

Every test that needs a :class:`Request`, :class:`Response` or :class:`Interaction`
builds it here, naming only what it is about::

    request()                                   # GET https://api.example.com/v1/items
    request("POST", "/v1/charges", json={"amount": 1200})
    request("GET", "http://localhost:8080/v1/x?a=2", headers=[("Accept", "*/*")])
    response(201, json={"id": "ch_1"})          # reason "Created", Content-Type set
    interaction("/a", b"A1")                    # GET /a answered 200 with b"A1"
    interaction(request("POST", "/v1/x"), response(503), recorded_at=0.0)

A test that asserts on a value the defaults chose (the reason phrase, the time of
recording) passes that value explicitly, so the test reads what it checks.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from replayproxy.model import Headers, Interaction, Request, Response

__all__ = [
    "BASE_URL",
    "HOST",
    "JSON",
    "RECORDED_AT",
    "interaction",
    "request",
    "response",
]

HOST = "api.example.com"
BASE_URL = f"https://{HOST}"
"""Where a bare path (``"/v1/items"``) is sent."""
RECORDED_AT = 1_767_225_600.0
"""The default time of recording: 2026-01-01T00:00:00Z."""
JSON = (("Content-Type", "application/json"),)
"""The headers of a JSON body."""

_PORTS = {"http": 80, "https": 443}
_MISSING: Any = object()


def _body(body: bytes | str, json: Any) -> bytes:
    if json is not _MISSING:
        return jsonlib.dumps(json).encode()
    return body.encode() if isinstance(body, str) else body


def _headers(headers: Iterable[tuple[str, str]], json: Any) -> Headers:
    pairs = tuple(headers)
    if json is not _MISSING and not any(k.lower() == "content-type" for k, _ in pairs):
        pairs = (*pairs, *JSON)
    return pairs


def _split_url(url: str) -> tuple[str, str, int, str, str]:
    """``(scheme, host, port, path, query)`` of an absolute URL or of a bare path.

    The host keeps its case and an IPv6 host loses its brackets, as on a Request; a
    missing port is the scheme's default; a missing path is ``/``.
    """
    if url.startswith("/"):
        url = BASE_URL + url
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _PORTS:
        raise ValueError(f"not an http(s) URL or a path: {url!r}")
    netloc, slash, target = rest.partition("/")
    path, _, query = (slash + target or "/").partition("?")
    if netloc.startswith("["):
        host, _, after = netloc[1:].partition("]")
        port_text = after.removeprefix(":")
    else:
        host, _, port_text = netloc.partition(":")
    if not host:
        raise ValueError(f"URL has no host: {url!r}")
    return scheme, host, int(port_text) if port_text else _PORTS[scheme], path, query


def request(method: str = "GET", url: str = "/v1/items", *,
            headers: Iterable[tuple[str, str]] = (), body: bytes | str = b"",
            json: Any = _MISSING, http_version: str = "HTTP/1.1") -> Request:
    """A request for ``method url``.

    ``url`` is absolute (``http://localhost:8080/x?a=1``) or a path with an optional
    query (``/v1/items?page=2``) on :data:`BASE_URL`. ``body`` may be ``str`` (UTF-8).
    ``json=doc`` makes the body ``json.dumps(doc)`` and adds ``Content-Type:
    application/json`` unless ``headers`` already name a Content-Type.
    """
    scheme, host, port, path, query = _split_url(url)
    return Request(method, scheme, host, port, path, query, _headers(headers, json),
                   _body(body, json), http_version)


def response(status: int = 200, body: bytes | str = b"", *,
             headers: Iterable[tuple[str, str]] = (), json: Any = _MISSING,
             reason: str | None = None, http_version: str = "HTTP/1.1") -> Response:
    """A response with ``status`` and ``body``.

    ``reason`` defaults to the status's standard phrase (``"OK"``, ``"Created"``; ``""``
    for a status without one). ``body`` and ``json`` work as in :func:`request`.
    """
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    return Response(status, reason, _headers(headers, json), _body(body, json), http_version)


def interaction(req: Request | str | None = None, resp: Response | bytes | str | None = None,
                /, *, recorded_at: float = RECORDED_AT, ttfb: float = 0.01,
                duration: float = 0.02) -> Interaction:
    """One recorded exchange.

    ``req`` is a Request, or a URL or path for a GET (``None``: :func:`request`'s
    default); ``resp`` is a Response, or the body of a 200 (``None``: an empty
    200). Recorded at :data:`RECORDED_AT`, first byte after 10 ms, last after 20 ms.
    """
    if not isinstance(req, Request):
        req = request() if req is None else request("GET", req)
    if not isinstance(resp, Response):
        resp = response() if resp is None else response(200, resp)
    return Interaction(req, resp, recorded_at, ttfb, duration)
