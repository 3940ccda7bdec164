"""VCR.py cassettes (YAML, or its JSON serializer) read into replayproxy interactions.

VCR.py writes ``{"version": 1, "interactions": [{"request": {...}, "response": {...}}]}``:
headers as ``{name: [values]}``, a request body as a string (or ``!!binary`` bytes), a
response body as ``{"string": ...}``, the status as ``{"code": 200, "message": "OK"}``.
Bodies are kept as recorded (still gzip when ``Content-Encoding`` says so). VCR.py
recording through urllib3 (requests) stores a body already decoded, its
``Content-Encoding`` kept: such a header is dropped, and ``Content-Length`` follows the
body stored (``as_stored``).

Files are parsed with VCR.py's own serializers (its safe YAML loader, which also reads
the few Python tags older VCR.py versions wrote, such as request bodies kept as
``BytesIO``), and each request goes through VCR.py's ``Request``. ``write_vcr`` builds
VCR.py's ``Request`` objects and response dictionaries and hands them to VCR.py's
``serialize``, so VCR.py reads the file as one of its own (its YAML sorts header names).
VCR.py keeps one value per
request header name: repeated request headers are joined with ``, `` (``; `` for
``Cookie``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from replayproxy.errors import CassetteError
from replayproxy.formats import Entry, as_stored, plain, request_from_url, status_code, utf8
from replayproxy.model import Headers, Interaction, Response

__all__ = ["VCR_VERSION", "load_vcr", "read_vcr", "write_vcr"]

VCR_VERSION = 1
"""The cassette format version VCR.py has written since 1.0 (and still writes)."""


def _headers(raw: Any) -> Headers:
    if not isinstance(raw, dict):
        return ()
    return tuple((plain(k), plain(v)) for k, values in raw.items()
                 for v in (values if isinstance(values, list) else [values]))


def _bytes(value: Any) -> bytes:
    if isinstance(value, dict):  # a response body: {"string": ...}
        value = value.get("string")
    if hasattr(value, "read"):  # a BytesIO body of an older VCR.py
        value = value.read()
    elif hasattr(value, "__next__"):  # an iterator body, kept as its parts
        value = b"".join(utf8(part) for part in value)
    return b"" if value is None else utf8(value)


def _status(raw: Any) -> tuple[int, str]:
    if not isinstance(raw, dict):
        return 0, ""
    return status_code(raw.get("code")), plain(raw.get("message") or "")


_DEEP = re.compile(r"(?:[\[{][ \t\r\n]*){100}")
"""A hundred brackets opened in a row: no VCR.py file nests so deep, and a YAML parser
takes seconds to find out it cannot read a file nested thousands deep."""


def _where(error: Exception) -> str:
    """``line 3, column 7: found ...`` from a YAML or JSON error, else its text."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or getattr(error, "msg", None) or str(error)
    line = getattr(error, "lineno", None)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    if line is not None:
        return f"line {line}, column {getattr(error, 'colno', 0)}: {problem}"
    return str(problem).splitlines()[0] if str(problem) else type(error).__name__


def load_vcr(path: Path) -> Any:
    """The document of the YAML (or, for ``.json``, JSON) file at ``path``, parsed by
    VCR.py's serializer.

    Raises:
        CassetteError: the file cannot be read or does not parse (``syntax`` is True).
    """
    from vcr.serializers import jsonserializer, yamlserializer

    serializer = jsonserializer if path.suffix == ".json" else yamlserializer
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        text = path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError as e:
        raise CassetteError(f"cannot read {path}: {e.strerror}", syntax=True) from None
    if _DEEP.search(text):
        raise CassetteError(f"{path} is not valid {kind}: nested too deeply to read",
                            syntax=True)
    try:
        return serializer.deserialize(text)
    except RecursionError:
        raise CassetteError(f"{path} is not valid {kind}: nested too deeply to read",
                            syntax=True) from None
    except Exception as e:  # the YAML parser raises many types
        raise CassetteError(f"{path} is not valid {kind} ({_where(e)}): fix the file or "
                            "export it again", syntax=True) from None


def read_vcr(path: Path, *, check_version: bool = False) -> tuple[Entry, ...]:
    """The interactions of the VCR.py cassette at ``path``, in order; an entry that is
    not an interaction keeps its number and says why in ``problem``.

    Raises:
        CassetteError: the file does not parse (``syntax``), is not a VCR.py cassette
            (no ``interactions`` list), is cut short (no ``version``, which VCR.py writes
            after the interactions), or (``check_version``) is of a version other than 1.
    """
    document = load_vcr(path)
    if isinstance(document, list) and document and isinstance(document[0], dict) \
            and "request" in document[0]:
        raise CassetteError(f"{path} is a VCR.py cassette of the format before VCR.py 1.0 "
                            "(no version): convert it with `python -m vcr.migration "
                            f"{path}` first", syntax=False)
    entries = document.get("interactions") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise CassetteError(f"{path} is not a VCR.py cassette: it has no 'interactions' list",
                            syntax=False)
    if "version" not in document:
        raise CassetteError(f"{path} is truncated or not a VCR.py cassette: it has no "
                            "'version' after its 'interactions' list (VCR.py writes one)",
                            syntax=False)
    version = document["version"]
    if check_version and version != VCR_VERSION:
        raise CassetteError(f"{path} is a VCR.py cassette of version {plain(version)[:20]}, "
                            f"which replayproxy cannot read: it reads version {VCR_VERSION}, "
                            "what VCR.py 1.0 and later write", syntax=False)
    return tuple(_entry(number, entry) for number, entry in enumerate(entries, 1))


def _entry(number: int, entry: Any) -> Entry:
    """Entry ``number`` of a VCR.py cassette, its request read through VCR.py's
    ``Request``."""
    from vcr.request import Request as VcrRequest

    entry = entry if isinstance(entry, dict) else {}
    req, resp = (part if isinstance(part := entry.get(k), dict) else {}
                 for k in ("request", "response"))
    missing = [k for k in ("request", "response") if not isinstance(entry.get(k), dict)]
    problem = f"interaction #{number} has no {' and no '.join(missing)}" if missing else ""
    uri = plain(req.get("uri", ""))
    if not problem and not uri:
        problem = f"interaction #{number} has no request uri"
    try:
        vcr_request = VcrRequest(plain(req.get("method") or "GET"), uri,
                                 req.get("body"), {})
        body = _bytes(vcr_request.body)
    except Exception:  # a body of a shape VCR.py does not know
        body, problem = _bytes(req.get("body")), problem or \
            f"interaction #{number} has a request body VCR.py cannot read"
    request = request_from_url(plain(req.get("method") or "GET"), uri,
                               as_stored(_headers(req.get("headers")), body), body)
    status, reason = _status(resp.get("status"))
    if not problem and not status:
        problem = f"interaction #{number} has no response status code"
    got = _bytes(resp.get("body"))
    response = Response(status, reason, as_stored(_headers(resp.get("headers")), got), got)
    return Entry(number, Interaction(request, response), uri, problem=problem)


def _grouped(headers: Headers) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers:
        out.setdefault(name, []).append(value)
    return out


def write_vcr(interactions: Iterable[Interaction], *, json: bool = False) -> str:
    """A VCR.py cassette (YAML, or VCR.py's JSON) holding ``interactions``, in order."""
    from vcr.request import Request as VcrRequest
    from vcr.serialize import serialize
    from vcr.serializers import jsonserializer, yamlserializer

    requests, responses = [], []
    for it in interactions:
        q, r = it.request, it.response
        headers = {name: ("; " if name.lower() == "cookie" else ", ").join(values)
                   for name, values in _grouped(q.headers).items()}
        requests.append(VcrRequest(q.method, q.url, q.body or None, headers))
        responses.append({"status": {"code": r.status, "message": r.reason},
                          "headers": _grouped(r.headers), "body": {"string": r.body}})
    text: str = serialize({"requests": requests, "responses": responses},
                          jsonserializer if json else yamlserializer)
    return text
