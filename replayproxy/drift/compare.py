"""Drift: how a live response differs from the recorded one, classified by severity.

``compare_responses(recorded, live)`` returns a list of ``Finding`` values
(``replayproxy.drift.findings``), each with a
``Severity`` (breaking, additive, noise), a ``FindingKind`` and a location (``status``,
``header Location``, ``body $.items[*].amount``). It compares the *contract*, not the
data:

- **Status**: another class (2xx → 4xx, 4xx → 2xx) is breaking ``status_class_changed``
  and nothing else is compared (an error body is not comparable to a success body);
  another code in the same class (200 → 201) is additive ``status_changed``.
- **Content type**, parameters such as ``charset`` ignored: another media type, or none
  where one was recorded, is breaking ``content_type_changed`` and the bodies are not
  compared further; one where none was recorded is additive.
- **Headers** are compared by name only. Volatile and transport headers (``Date``,
  ``ETag``, ``Set-Cookie``, ``Content-Length``, request ids, traces, caches...) never
  count. A new header is additive ``header_added``; a missing one is ``header_missing``,
  breaking for the few headers clients act on (``Location``, ``Link``, ``Retry-After``,
  ...), noise for the rest.
- **JSON bodies** are reduced to shapes: the set of JSON types seen at each path, the
  keys of objects, and for arrays the merged shape of *all* elements (``$.items[*]``),
  so 3 items against 5 items of the same shape is no drift. A recorded key missing is
  breaking ``field_missing``, a new key additive ``field_added``, a new type at a path
  breaking ``type_changed`` (``number`` → ``string``, ``array`` → ``object``, ``object``
  → ``null``), except where only ``null`` was recorded (a nullable field now carrying a
  value), which is additive. An empty array on either side has no element shape and
  matches any. A recorded JSON body that no longer parses is breaking ``body_not_json``.
- **Values** that differ at the same path and type (found with deepdiff, arrays position
  by position) are reported only when volatile, as
  noise ``value_changed``: the path differed between two live calls (``live_again``), or
  its key (``id``, ``*_id``, ``*_at``, ``created``, ``signature``, ``etag``...) or both
  values (uuid, ISO or HTTP timestamp, epoch seconds or milliseconds, long hex, prefixed
  or token-like ids) look volatile. Other value changes are data, not contract, and are
  not reported.
- **Other bodies** (and JSON that does not parse on either side) are compared by size
  class of the decoded body: ``empty``, ``<1KiB``, ``1KiB-64KiB``, ``64KiB-1MiB``,
  ``>=1MiB``. A body that became empty is breaking, one that appeared is additive, any
  other class change is noise.

``live_again`` (the same request sent a second time) teaches volatility: every finding
at a location where the two live responses already differ (a value, a key, a type, a
header present in one only, the status) is downgraded to noise. ``ignore`` takes JSON
paths (``$.meta.*``, ``$..nonce``; the syntax of ``ignore_json`` in matching), removed
from every body before comparing, and header names, never compared.

Bodies are decoded (gzip, deflate, br, zstd) first; nothing here raises on bad input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from replayproxy.codec import decode_body
from replayproxy.drift.findings import Finding, FindingKind, Scalar, Severity
from replayproxy.matching.rules import compile_json_path
from replayproxy.model import Headers, Response, header_value

__all__ = [
    "Path",
    "compare_responses",
    "json_path",
    "looks_volatile",
    "media_type",
    "size_class",
    "volatile_header",
]


_SHOW_LIMIT = 80
"""Characters of a value kept in a finding."""


def _short(value: Any) -> Scalar:
    if isinstance(value, str) and len(value) > _SHOW_LIMIT:
        return value[: _SHOW_LIMIT - 1] + "…"
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return _short(json.dumps(value, ensure_ascii=False, default=str))


# -- headers ----------------------------------------------------------------------------

_VOLATILE_HEADERS = frozenset({
    "date", "age", "expires", "last-modified", "etag", "set-cookie", "content-length",
    "transfer-encoding", "connection", "keep-alive", "content-encoding", "server-timing",
    "request-id", "x-request-id", "x-correlation-id", "correlation-id", "x-trace-id",
    "traceparent", "tracestate", "x-cloud-trace-context", "x-runtime", "x-response-time",
    "cf-ray", "cf-cache-status", "via", "x-served-by", "x-timer", "nel", "report-to",
    "alt-svc", "x-github-request-id", "x-envoy-upstream-service-time", "retry-after-ms",
    "content-type",  # compared on its own, as a media type
})
_VOLATILE_HEADER_PREFIXES = ("x-amz-", "x-amzn-", "cf-", "x-b3-", "x-envoy-", "x-cache",
                             "x-ratelimit-", "ratelimit-", "x-datadog-")
_CONTRACT_HEADERS = frozenset({"location", "link", "retry-after", "www-authenticate",
                               "content-disposition", "content-range"})
"""Headers clients act on: one that disappears is breaking."""


def volatile_header(name: str) -> bool:
    """Whether header ``name`` (lower case) changes on every call or is transport."""
    return name in _VOLATILE_HEADERS or name.startswith(_VOLATILE_HEADER_PREFIXES)


def _header_names(headers: Headers) -> dict[str, str]:
    """Lower-case name → the name as first seen on the wire."""
    out: dict[str, str] = {}
    for name, _ in headers:
        out.setdefault(name.lower(), name)
    return out


def media_type(headers: Headers) -> str | None:
    """The Content-Type without parameters, lower-case; None if absent or blank."""
    value = header_value(headers, "content-type")
    media = (value or "").split(";", 1)[0].strip().lower()
    return media or None


def _is_json_media(media: str | None) -> bool:
    return media is None or media in ("application/json", "text/json") or media.endswith("+json")


# -- bodies -----------------------------------------------------------------------------

_KIB = 1024


def size_class(size: int) -> str:
    """A coarse size bucket: ``empty``, ``<1KiB``, ``1KiB-64KiB``, ``64KiB-1MiB``, ``>=1MiB``."""
    if size <= 0:
        return "empty"
    if size < _KIB:
        return "<1KiB"
    if size < 64 * _KIB:
        return "1KiB-64KiB"
    if size < _KIB * _KIB:
        return "64KiB-1MiB"
    return ">=1MiB"


_NOT_JSON = object()


@dataclass(slots=True)
class _Body:
    raw: bytes
    """Decoded when the Content-Encoding could be undone, else as on the wire."""
    doc: Any = _NOT_JSON


def _body_of(response: Response, ignore_paths: Sequence[str]) -> _Body:
    decoded = decode_body(response.body, response.headers)
    body = _Body(decoded if decoded is not None else response.body)
    if decoded is None or not body.raw.strip() or not _is_json_media(media_type(response.headers)):
        return body
    try:
        doc = json.loads(body.raw)
    except (ValueError, RecursionError):  # invalid JSON, bad UTF-8, nested too deeply
        return body
    for text in ignore_paths:
        if text.strip() == "$":
            return _Body(body.raw, None)
        try:
            compile_json_path(text).filter(lambda _value: True, doc)
        except Exception:  # jsonpath-ng trips on some shapes; leave the document as it is
            continue
    body.doc = doc
    return body


# -- JSON shapes ------------------------------------------------------------------------

Path = tuple[str | None, ...]
"""Object keys; None stands for every element of an array (``[*]``)."""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


@dataclass(slots=True)
class _Shape:
    """The JSON types seen at one path, with the merged keys and element shape below it."""

    types: set[str] = field(default_factory=set)
    fields: dict[str, _Shape] = field(default_factory=dict)
    items: _Shape | None = None


def _add(shape: _Shape, value: Any) -> _Shape:
    shape.types.add(_json_type(value))
    if isinstance(value, dict):
        for key, child in value.items():
            _add(shape.fields.setdefault(key, _Shape()), child)
    elif isinstance(value, list):
        for element in value:
            shape.items = _add(shape.items or _Shape(), element)
    return shape


def _types(types: set[str]) -> str:
    return "|".join(sorted(types))


@dataclass(frozen=True, slots=True)
class _Raw:
    """A difference before classification: where, what, and the two sides."""

    kind: FindingKind
    severity: Severity
    where: str
    """``status``, ``content-type``, ``header <Name as on the wire>`` or ``body``."""
    path: Path = ()
    recorded: Scalar = None
    live: Scalar = None


def _compare_shapes(rec: _Shape, live: _Shape, path: Path, out: list[_Raw]) -> None:
    gained = live.types - rec.types
    if gained:
        severity = Severity.ADDITIVE if rec.types == {"null"} else Severity.BREAKING
        out.append(_Raw(FindingKind.TYPE_CHANGED, severity, "body", path,
                        _types(rec.types), _types(live.types)))
    if "object" in rec.types and "object" in live.types:
        for key, child in rec.fields.items():
            if key in live.fields:
                _compare_shapes(child, live.fields[key], (*path, key), out)
            else:
                out.append(_Raw(FindingKind.FIELD_MISSING, Severity.BREAKING, "body",
                                (*path, key), _types(child.types), None))
        for key, child in live.fields.items():
            if key not in rec.fields:
                out.append(_Raw(FindingKind.FIELD_ADDED, Severity.ADDITIVE, "body",
                                (*path, key), None, _types(child.types)))
    if rec.items is not None and live.items is not None:
        _compare_shapes(rec.items, live.items, (*path, None), out)


def _changed_values(rec: Any, live: Any) -> dict[Path, tuple[Any, Any]]:
    """Leaves of the same JSON type whose values differ, first example per path, found
    with deepdiff (arrays compared position by position, as ``[*]``)."""
    if rec == live:  # the common case, and deepdiff's cost is in walking both documents
        return {}
    from deepdiff import DeepDiff  # ~100 ms to import (pydantic): only when diffing

    diff = DeepDiff(rec, live, view="tree", ignore_private_variables=False,
                    ignore_string_type_changes=False, cache_size=0)
    out: dict[Path, tuple[Any, Any]] = {}
    for report in ("values_changed", "type_changes"):
        for level in diff.get(report, ()):
            a, b = level.t1, level.t2
            if isinstance(a, dict | list) or isinstance(b, dict | list) \
                    or _json_type(a) != _json_type(b):
                continue  # structure, not a value: the shape comparison reports it
            path = tuple(None if isinstance(k, int) else str(k)
                         for k in level.path(output_format="list"))
            out.setdefault(path, (a, b))
    return out


def json_path(path: Path) -> str:
    """``$.items[*].amount``; keys that are not identifiers as ``["a key"]``."""
    out = "$"
    for key in path:
        if key is None:
            out += "[*]"
        elif key.isidentifier():
            out += f".{key}"
        else:
            out += f"[{json.dumps(key, ensure_ascii=False)}]"
    return out


# -- volatility -------------------------------------------------------------------------

_VOLATILE_KEY = re.compile(
    r"^(id|ids|uuid|guid|nonce|etag|e_tag|signature|sig|hash|checksum|cursor|token|"
    r"created|updated|modified|timestamp|time|date|expires|request_id|trace_id|span_id)$"
    r"|_(id|ids|uuid|guid|at|time|timestamp|date|signature|token|nonce|hash|cursor)$")
_VOLATILE_TEXT = (
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I),
    re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?",
               re.I),
    re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT"),
    re.compile(r"[0-9a-f]{16,}", re.I),
    re.compile(r"[A-Za-z]{1,12}_[A-Za-z0-9]{8,}"),  # prefixed ids: ch_3MtwBw..., req_8f2...
    re.compile(r"(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9+/_=-]{20,}"),  # tokens, base64 ids
)


def _snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).replace("-", "_").lower()


def looks_volatile(key: str | None, value: Any) -> bool:
    """Whether a value differs on every call by its key or its form (ids, timestamps)."""
    if key is not None and _VOLATILE_KEY.search(_snake(key)):
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):  # epoch seconds or milliseconds, 2001-2096
        return 1e9 <= value < 4e9 or 1e12 <= value < 4e12
    return isinstance(value, str) and any(p.fullmatch(value) for p in _VOLATILE_TEXT)


def _value_findings(rec: Any, live: Any, volatile: set[Path],
                    changed: dict[Path, tuple[Any, Any]] | None = None) -> list[_Raw]:
    if changed is None:
        changed = _changed_values(rec, live)
    out = []
    for path, (a, b) in changed.items():
        key = next((k for k in reversed(path) if k is not None), None)
        if (path in volatile or (key is not None and looks_volatile(key, None))
                or (looks_volatile(None, a) and looks_volatile(None, b))):
            out.append(_Raw(FindingKind.VALUE_CHANGED, Severity.NOISE, "body", path,
                            _short(a), _short(b)))
    return out


# -- comparison -------------------------------------------------------------------------


def _status_findings(rec: int, live: int) -> list[_Raw]:
    if rec // 100 != live // 100:
        return [_Raw(FindingKind.STATUS_CLASS_CHANGED, Severity.BREAKING, "status",
                     recorded=rec, live=live)]
    if rec != live:
        return [_Raw(FindingKind.STATUS_CHANGED, Severity.ADDITIVE, "status",
                     recorded=rec, live=live)]
    return []


def _header_findings(rec: Headers, live: Headers, ignore: frozenset[str]) -> list[_Raw]:
    a, b = _header_names(rec), _header_names(live)
    out = []
    for name in a.keys() - b.keys():
        if not volatile_header(name) and name not in ignore:
            severity = Severity.BREAKING if name in _CONTRACT_HEADERS else Severity.NOISE
            out.append(_Raw(FindingKind.HEADER_MISSING, severity, f"header {a[name]}",
                            recorded=_short(header_value(rec, name)), live=None))
    for name in b.keys() - a.keys():
        if not volatile_header(name) and name not in ignore:
            out.append(_Raw(FindingKind.HEADER_ADDED, Severity.ADDITIVE, f"header {b[name]}",
                            recorded=None, live=_short(header_value(live, name))))
    return sorted(out, key=lambda r: r.where.lower())


def _body_findings(rec: _Body, live: _Body, volatile: set[Path],
                   changed: dict[Path, tuple[Any, Any]] | None = None) -> list[_Raw]:
    both_json = rec.doc is not _NOT_JSON and live.doc is not _NOT_JSON
    if both_json:
        out: list[_Raw] = []
        try:
            _compare_shapes(_add(_Shape(), rec.doc), _add(_Shape(), live.doc), (), out)
            out += _value_findings(rec.doc, live.doc, volatile, changed)
        except RecursionError:  # nested deeper than we can walk: compare sizes below
            pass
        else:
            return out
    elif rec.doc is not _NOT_JSON and live.raw.strip():
        return [_Raw(FindingKind.BODY_NOT_JSON, Severity.BREAKING, "body",
                     recorded=_json_type(rec.doc), live=f"not JSON, {size_class(len(live.raw))}")]
    a, b = size_class(len(rec.raw)), size_class(len(live.raw))
    if a == b:
        return []
    severity = (Severity.BREAKING if b == "empty" else
                Severity.ADDITIVE if a == "empty" else Severity.NOISE)
    return [_Raw(FindingKind.SIZE_CLASS_CHANGED, severity, "body", recorded=a, live=b)]


def _differences(rec: Response, live: Response, rec_body: _Body, live_body: _Body,
                 ignore_headers: frozenset[str], volatile: set[Path],
                 changed: dict[Path, tuple[Any, Any]] | None = None) -> list[_Raw]:
    """``changed``: the changed values of the two bodies, when already known."""
    out = _status_findings(rec.status, live.status)
    if out and out[0].kind is FindingKind.STATUS_CLASS_CHANGED:
        return out
    out += _header_findings(rec.headers, live.headers, ignore_headers)
    a, b = media_type(rec.headers), media_type(live.headers)
    if a != b and "content-type" not in ignore_headers:
        severity = Severity.ADDITIVE if a is None else Severity.BREAKING
        out.append(_Raw(FindingKind.CONTENT_TYPE_CHANGED, severity, "content-type",
                        recorded=a, live=b))
        if severity is Severity.BREAKING:
            return out
    return out + _body_findings(rec_body, live_body, volatile, changed)


def _unstable(raw: _Raw, unstable: list[_Raw]) -> bool:
    """Whether the two live responses already differ at or above this difference."""
    for u in unstable:
        if u.where == raw.where == "body":
            if raw.path[: len(u.path)] == u.path:
                return True
        elif u.where == raw.where or (u.where == "status" and raw.where != "status"
                                      and u.kind is FindingKind.STATUS_CLASS_CHANGED):
            return True
    return False


def _location(raw: _Raw) -> str:
    if raw.where == "content-type":
        return "header Content-Type"
    if raw.where == "body" and raw.path:
        return f"body {json_path(raw.path)}"
    if raw.where == "body" and raw.kind in (FindingKind.FIELD_MISSING, FindingKind.FIELD_ADDED,
                                            FindingKind.TYPE_CHANGED,
                                            FindingKind.VALUE_CHANGED):
        return "body $"
    return raw.where


def compare_responses(recorded: Response, live: Response, *, live_again: Response | None = None,
                      ignore: Sequence[str] = ()) -> list[Finding]:
    """Classified differences between a recorded response and a live one, worst first.

    ``live_again`` is a second live response to the same request: wherever it differs
    from ``live``, differences from the recording are noise. ``ignore`` holds JSON
    paths (starting with ``$``) removed from every body, and header names never
    compared. Never raises on bad bodies (invalid JSON, undecodable encodings).

    Raises:
        ValueError: an ``ignore`` JSON path does not parse.
    """
    paths = tuple(i for i in ignore if i.strip().startswith("$"))
    for text in paths:
        compile_json_path(text)  # fail early, naming the path
    headers = frozenset(i.strip().lower() for i in ignore if not i.strip().startswith("$"))
    rec_body, live_body = _body_of(recorded, paths), _body_of(live, paths)

    unstable: list[_Raw] = []
    volatile: set[Path] = set()
    if live_again is not None:
        again_body = _body_of(live_again, paths)
        between: dict[Path, tuple[Any, Any]] | None = None
        if live_body.doc is not _NOT_JSON and again_body.doc is not _NOT_JSON:
            try:
                between = _changed_values(live_body.doc, again_body.doc)
            except RecursionError:
                between = None
            volatile = set(between or ())
        unstable = _differences(live, live_again, live_body, again_body, headers, set(),
                                between)
        # a header present in only one live response is unstable whatever its kind
        unstable += [_Raw(FindingKind.HEADER_ADDED, Severity.NOISE, f"header {name}")
                     for name in _header_names(live.headers).keys()
                     ^ _header_names(live_again.headers).keys()]

    findings = []
    for raw in _differences(recorded, live, rec_body, live_body, headers, volatile):
        severity = raw.severity
        if raw.where.startswith("header "):
            name = raw.where[len("header "):].lower()
            if any(u.where.lower() == f"header {name}" for u in unstable):
                severity = Severity.NOISE
        elif _unstable(raw, unstable):
            severity = Severity.NOISE
        findings.append(Finding(severity, raw.kind, _location(raw), raw.recorded, raw.live))
    return sorted(findings, key=lambda f: f.severity.rank)
