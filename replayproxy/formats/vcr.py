"""VCR.py cassettes (YAML, or its JSON serializer) read into replayproxy interactions.

VCR.py writes ``{"version": 1, "interactions": [{"request": {...}, "response": {...}}]}``:
headers as ``{name: [values]}``, a request body as a string (or ``!!binary`` bytes), a
response body as ``{"string": ...}``, the status as ``{"code": 200, "message": "OK"}``.
Bodies are kept as recorded (still gzip when ``Content-Encoding`` says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from replayproxy.errors import CassetteError
from replayproxy.formats import Entry, request_from_url
from replayproxy.model import Headers, Interaction, Response

__all__ = ["read_vcr"]


def _headers(raw: Any) -> Headers:
    if not isinstance(raw, dict):
        return ()
    return tuple((str(k), str(v)) for k, values in raw.items()
                 for v in (values if isinstance(values, list) else [values]))


def _bytes(value: Any) -> bytes:
    if isinstance(value, dict):  # a response body: {"string": ...}
        value = value.get("string")
    if value is None:
        return b""
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogateescape")


def _status(raw: Any) -> tuple[int, str]:
    if not isinstance(raw, dict):
        return 0, ""
    try:
        code = int(raw.get("code") or 0)
    except (TypeError, ValueError):
        code = 0
    return code, str(raw.get("message") or "")


def read_vcr(path: Path) -> tuple[Entry, ...]:
    """The interactions of the VCR.py cassette at ``path``, in order.

    Raises:
        CassetteError: the file is not a VCR.py cassette (no ``interactions`` list).
    """
    try:
        from ruamel.yaml import YAML  # a mitmproxy dependency

        entries = YAML(typ="safe", pure=True).load(path.read_bytes())["interactions"]
    except Exception:
        entries = None
    if not isinstance(entries, list):
        raise CassetteError(f"{path} is not a VCR.py cassette: it has no 'interactions' list")
    out = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            continue
        req, resp = (part if isinstance(part := entry.get(k), dict) else {}
                     for k in ("request", "response"))
        uri = str(req.get("uri", ""))
        request = request_from_url(str(req.get("method") or "GET"), uri,
                                   _headers(req.get("headers")), _bytes(req.get("body")))
        status, reason = _status(resp.get("status"))
        response = Response(status, reason, _headers(resp.get("headers")),
                            _bytes(resp.get("body")))
        out.append(Entry(number, Interaction(request, response), uri))
    return tuple(out)
