"""HAR files (browsers' and proxies' HTTP archives) read into replayproxy interactions.

A HAR is JSON, ``{"log": {"entries": [{"request": {...}, "response": {...}}]}}``, with
headers and cookies as lists of ``{"name", "value"}``. Its bodies are decoded text
(``postData.text``, ``content.text``, base64 when ``content.encoding`` says so), so
``Content-Encoding`` is dropped, and their ``mimeType`` becomes the ``Content-Type``
when the headers have none.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

from replayproxy.errors import CassetteError
from replayproxy.formats import Entry, plain, request_from_url, status_code
from replayproxy.model import Headers, Interaction, Response, header_value

__all__ = ["read_har"]


def _pairs(items: Any) -> list[tuple[str, str]]:
    return [(plain(h.get("name", "")), plain(h.get("value", ""))) for h in _list(items)
            if isinstance(h, dict)]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _headers(raw: Any, mime_type: Any) -> Headers:
    headers = [(k, v) for k, v in _pairs(raw) if k.lower() != "content-encoding"]
    if mime_type and header_value(headers, "content-type") is None:
        headers.append(("Content-Type", plain(mime_type)))
    return tuple(headers)


def _text(value: Any) -> bytes:
    return plain(value).encode("utf-8")


def _content(content: dict[str, Any]) -> bytes:
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
    request = request_from_url(
        plain(req.get("method") or "GET"), url, _headers(req.get("headers"),
                                                       post.get("mimeType")),
        _text(post.get("text", "")), plain(req.get("httpVersion") or "HTTP/1.1"))
    response = Response(status_code(resp.get("status")),
                        plain(resp.get("statusText") or ""),
                        _headers(resp.get("headers"), content.get("mimeType")),
                        _content(content), plain(resp.get("httpVersion") or "HTTP/1.1"))
    if not problem and not response.status:
        problem = f"entry #{number} has no response status (the request got no answer)"
    cookies = tuple((side, name, value) for side, part in (("request", req),
                                                            ("response", resp))
                    for name, value in _cookies(part.get("cookies")))
    return Entry(number, Interaction(request, response), url, cookies, problem)


def _cookies(items: Any) -> list[tuple[str, str]]:
    return [(plain(c.get("name")), plain(c.get("value", ""))) for c in _list(items)
            if isinstance(c, dict)]
