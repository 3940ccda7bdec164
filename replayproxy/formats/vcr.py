"""VCR.py cassettes (YAML, or its JSON serializer) read into replayproxy interactions.

VCR.py writes ``{"version": 1, "interactions": [{"request": {...}, "response": {...}}]}``:
headers as ``{name: [values]}``, a request body as a string (or ``!!binary`` bytes), a
response body as ``{"string": ...}``, the status as ``{"code": 200, "message": "OK"}``.
Bodies are kept as recorded (still gzip when ``Content-Encoding`` says so).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from replayproxy.errors import CassetteError
from replayproxy.formats import Entry, plain, request_from_url, status_code, utf8
from replayproxy.model import Headers, Interaction, Response

__all__ = ["read_vcr"]


def _headers(raw: Any) -> Headers:
    if not isinstance(raw, dict):
        return ()
    return tuple((plain(k), plain(v)) for k, values in raw.items()
                 for v in (values if isinstance(values, list) else [values]))


def _bytes(value: Any) -> bytes:
    if isinstance(value, dict):  # a response body: {"string": ...}
        value = value.get("string")
    return b"" if value is None else utf8(value)


def _status(raw: Any) -> tuple[int, str]:
    if not isinstance(raw, dict):
        return 0, ""
    return status_code(raw.get("code")), plain(raw.get("message") or "")


_DEEP = re.compile(r"(?:[\[{][ \t\r\n]*){100}")
"""A hundred brackets opened in a row: no VCR.py file nests so deep, and a YAML parser
takes seconds to find out it cannot read a file nested thousands deep."""


def read_vcr(path: Path) -> tuple[Entry, ...]:
    """The interactions of the VCR.py cassette at ``path``, in order.

    Raises:
        CassetteError: the file is not a VCR.py cassette (no ``interactions`` list), or
            is cut short (no ``version``, which VCR.py writes after the interactions).
    """
    try:
        data = path.read_bytes()
        if _DEEP.search(data.decode("utf-8", "replace")):
            raise ValueError("nested too deeply")
        from ruamel.yaml import YAML  # a mitmproxy dependency

        document = YAML(typ="safe", pure=True).load(data)
        entries = document["interactions"]
    except Exception:  # the YAML parser raises many types (and RecursionError)
        entries = None
    if not isinstance(entries, list):
        raise CassetteError(f"{path} is not a VCR.py cassette: it has no 'interactions' list")
    if "version" not in document:
        raise CassetteError(f"{path} is truncated or not a VCR.py cassette: it has no "
                            "'version' after its 'interactions' list (VCR.py writes one)")
    out = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            continue
        req, resp = (part if isinstance(part := entry.get(k), dict) else {}
                     for k in ("request", "response"))
        uri = plain(req.get("uri", ""))
        request = request_from_url(plain(req.get("method") or "GET"), uri,
                                   _headers(req.get("headers")), _bytes(req.get("body")))
        status, reason = _status(resp.get("status"))
        response = Response(status, reason, _headers(resp.get("headers")),
                            _bytes(resp.get("body")))
        out.append(Entry(number, Interaction(request, response), uri))
    return tuple(out)
