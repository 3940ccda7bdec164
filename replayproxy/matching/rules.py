"""Matchers: which parts of a request must equal the recording, and how they compare.

A ``MatchRule`` says, for the requests of one route, which matchers apply and what
each ignores. Matching then compares *normalised views* of the two requests:

- ``query``: parameters as a multimap, in any order, minus ``ignore_query``;
- ``headers``: only the names in ``headers`` (``*`` for all but a few hop-by-hop
  ones), minus ``ignore_headers``, names case-insensitive, a multipart boundary
  dropped from ``Content-Type``;
- ``body``: by content type (``body = "auto"``): JSON semantically (key order and
  whitespace do not matter) minus the ``ignore_json`` paths; GraphQL by operation name,
  whitespace-normalised query text and variables; form-urlencoded as a multimap minus
  ``ignore_form``; multipart by parts, boundary ignored; gRPC (``application/grpc``)
  message by message (the same bytes, told apart by message); anything else as bytes, with
  ``ignore_regex`` matches blanked out of text. A body that claims JSON but does not
  parse is compared as bytes.

``match_key`` folds the views into one hashable key (the replay index looks requests
up by it); ``replayproxy.matching.diagnostics`` compares the same views to explain a
near miss.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl

from replayproxy.codec import decode_body
from replayproxy.grpc_wire import frames_view, is_grpc
from replayproxy.model import Headers, Request, header_value
from replayproxy.redaction.secrets import PLACEHOLDER

__all__ = [
    "EXACT_MATCHERS",
    "MATCHER_NAMES",
    "RULE_MATCHERS",
    "BodyKind",
    "Exhausted",
    "MatchRule",
    "body_kind",
    "body_view",
    "compile_json_path",
    "match_key",
    "request_view",
]

EXACT_MATCHERS = ("method", "scheme", "host", "port", "path")
"""Matchers compared exactly; they also decide which route's rule applies."""
RULE_MATCHERS = ("query", "headers", "body")
"""Matchers whose comparison a rule can tune."""
MATCHER_NAMES = (*EXACT_MATCHERS, *RULE_MATCHERS)
"""Every matcher by the name used in configuration (``matchers = [...]``)."""

_HOP_BY_HOP = frozenset({
    "host", "content-length", "connection", "keep-alive", "transfer-encoding", "te",
    "trailer", "upgrade", "proxy-connection", "proxy-authorization",
})


class BodyKind(StrEnum):
    """How to compare request bodies."""

    AUTO = "auto"
    JSON = "json"
    GRAPHQL = "graphql"
    FORM = "form"
    MULTIPART = "multipart"
    BYTES = "bytes"
    IGNORE = "ignore"


class Exhausted(StrEnum):
    """What to do when a recorded sequence of identical requests is used up."""

    REPEAT = "repeat"
    ERROR = "error"


@functools.lru_cache(maxsize=256)
def compile_json_path(text: str) -> Any:
    """Parse a JSON path such as ``$.request_id`` or ``$..nonce``; ValueError if invalid."""
    from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
    from jsonpath_ng.ext.parser import parse

    try:
        return parse(text)
    except (JsonPathParserError, JsonPathLexerError, Exception) as e:  # ply raises broadly
        raise ValueError(f"invalid JSON path {text!r}: {e}") from None


@dataclass(frozen=True, slots=True)
class MatchRule:
    """How requests of one route are compared (hashable, so results can be cached)."""

    matchers: frozenset[str] = frozenset(RULE_MATCHERS)
    ignore_query: frozenset[str] = frozenset()
    headers: tuple[str, ...] = ()
    """Lower-case header names to compare; ``("*",)`` for all."""
    ignore_headers: frozenset[str] = frozenset()
    """Lower-case header names never compared."""
    ignore_json: tuple[str, ...] = ()
    ignore_form: frozenset[str] = frozenset()
    ignore_regex: tuple[re.Pattern[str], ...] = ()
    body: BodyKind = BodyKind.AUTO
    on_exhausted: Exhausted = Exhausted.REPEAT
    redacted_same: frozenset[str] = frozenset()
    """Redaction rules whose placeholders must be equal; any other placeholder matches
    any value its rule redacted (``<redacted:token:1a2b3c>`` ~ ``<redacted:token:9f8e7d>``)."""
    sources: tuple[str, ...] = field(default=(), compare=False)
    """Where the rule's settings came from (for messages), e.g. route patterns."""


# -- normalised views -----------------------------------------------------------------

_MISSING = object()
_PLACEHOLDER_BYTES = re.compile(PLACEHOLDER.pattern.encode("ascii"))


def _unhash(text: str, rule: MatchRule) -> str:
    """Drop placeholder hashes, except for rules that require the same value."""
    if "<redacted:" not in text:
        return text
    return PLACEHOLDER.sub(
        lambda m: m.group(0) if m.group(1) in rule.redacted_same else f"<redacted:{m.group(1)}>",
        text)


def _unhash_bytes(data: bytes, rule: MatchRule) -> bytes:
    if b"<redacted:" not in data:
        return data
    return _PLACEHOLDER_BYTES.sub(
        lambda m: m.group(0) if m.group(1).decode() in rule.redacted_same
        else b"<redacted:" + m.group(1) + b">", data)


def _multimap(pairs: list[tuple[str, str]], ignore: frozenset[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in pairs:
        if k not in ignore:
            out.setdefault(k, []).append(v)
    return out


def query_view(query: str, rule: MatchRule) -> dict[str, list[str]]:
    """The query as {name: [values]}; values keep their order per name."""
    pairs = parse_qsl(query, keep_blank_values=True, errors="surrogateescape") if query else []
    return _multimap([(k, _unhash(v, rule)) for k, v in pairs], rule.ignore_query)


_BOUNDARY = re.compile(r';\s*boundary=(?:"[^"]*"|[^;]*)', re.IGNORECASE)


def headers_view(headers: Headers, rule: MatchRule) -> dict[str, list[str]]:
    """The compared headers as {lower-case name: [values]}."""
    if not rule.headers:
        return {}
    every = rule.headers == ("*",)
    wanted = frozenset(rule.headers)
    out: dict[str, list[str]] = {}
    for k, v in headers:
        name = k.lower()
        if name in rule.ignore_headers or (every and name in _HOP_BY_HOP):
            continue
        if every or name in wanted:
            if name == "content-type":  # a multipart boundary is new in every request
                v = _BOUNDARY.sub("", v)
            out.setdefault(name, []).append(_unhash(v, rule))
    return out


def _content_type(headers: Headers) -> str:
    return (header_value(headers, "content-type") or "").split(";")[0].strip().lower()


def body_kind(headers: Headers, rule: MatchRule) -> BodyKind:
    """The body kind ``auto`` resolves to for these headers."""
    if rule.body is not BodyKind.AUTO:
        return rule.body
    ct = _content_type(headers)
    if ct == "application/graphql":
        return BodyKind.GRAPHQL
    if ct == "application/json" or ct.endswith("+json"):
        return BodyKind.JSON  # may turn out to be GraphQL, see body_view
    if ct == "application/x-www-form-urlencoded":
        return BodyKind.FORM
    if ct.startswith("multipart/"):
        return BodyKind.MULTIPART
    return BodyKind.BYTES


_GRAPHQL_TOKEN = re.compile(
    r'"""(?:\\"""|[^"]|"(?!""))*"""'  # block string
    r'|"(?:\\.|[^"\\])*"'  # string
    r"|#[^\n\r]*"  # comment
    r"|[A-Za-z_][A-Za-z0-9_]*|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"
    r"|\.\.\.|[!$&()\[\]{}:=@|]"
    r"|[\s,]+"  # ignored: white space and commas
    r"|.",
)


def normalise_graphql(query: str) -> str:
    """GraphQL query text with comments, commas and insignificant white space removed."""
    tokens = []
    for m in _GRAPHQL_TOKEN.finditer(query):
        tok = m.group()
        if tok[0] in " \t\r\n," or tok.startswith("#"):
            continue
        tokens.append(tok)
    out: list[str] = []
    for tok in tokens:
        if out and _word(out[-1]) and _word(tok):
            out.append(" ")
        out.append(tok)
    return "".join(out)


def _word(tok: str) -> bool:
    return tok[0].isalnum() or tok[0] in '_-"'


def _strip_json_paths(doc: Any, paths: tuple[str, ...]) -> Any:
    for text in paths:
        expr = compile_json_path(text)
        if text.strip() in ("$", ""):
            return None
        try:
            expr.filter(lambda _value: True, doc)
        except Exception:  # jsonpath-ng trips on some shapes; leave the document as it is
            continue
    return doc


def _blank_regex(text: str, rule: MatchRule) -> str:
    for pattern in rule.ignore_regex:
        text = pattern.sub("", text)
    return text


def _multipart(body: bytes, content_type: str, rule: MatchRule) -> list[list[Any]] | None:
    import email.parser  # ~10 ms to import (email, socket): only for multipart bodies
    import email.policy

    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        return None
    parts: list[list[Any]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and name in rule.ignore_form:
            continue
        payload = part.get_payload(decode=True)
        parts.append([
            name, part.get_filename(), part.get_content_type(),
            payload if isinstance(payload, bytes) else b"",
        ])
    return parts


def body_view(request: Request, rule: MatchRule) -> Any:
    """The request body as compared under ``rule`` (a JSON-like value or bytes).

    Never raises: a body that cannot be read as its content type is compared as bytes.
    """
    kind = body_kind(request.headers, rule)
    if kind is BodyKind.IGNORE:
        return None
    raw = decode_body(request.body, request.headers)
    body = _unhash_bytes(request.body if raw is None else raw, rule)
    if kind in (BodyKind.JSON, BodyKind.GRAPHQL):
        view = _json_or_graphql_view(body, request.headers, kind, rule)
        if view is not _MISSING:
            return view
    elif kind is BodyKind.FORM:
        try:
            text = body.decode("utf-8")
            return _multimap(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)),
                             rule.ignore_form)
        except (UnicodeDecodeError, ValueError):
            pass
    elif kind is BodyKind.MULTIPART:
        try:
            parts = _multipart(body, header_value(request.headers, "content-type") or "", rule)
        except Exception:
            parts = None
        if parts is not None:
            return {"multipart": parts}
    elif kind is BodyKind.BYTES and is_grpc(request.headers):
        frames = frames_view(bytes(body))
        if frames is not None:  # compared message by message, so a diff names the message
            return {"grpc": frames}
    if rule.ignore_regex:
        try:
            return _blank_regex(body.decode("utf-8"), rule).encode("utf-8")
        except UnicodeDecodeError:
            pass
    return bytes(body)


def _json_or_graphql_view(body: bytes, headers: Headers, kind: BodyKind, rule: MatchRule) -> Any:
    if _content_type(headers) == "application/graphql":
        try:
            return {"graphql": {"operationName": None,
                                "query": normalise_graphql(body.decode("utf-8")),
                                "variables": None}}
        except UnicodeDecodeError:
            return _MISSING
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # nested too deeply: bytes
        return _MISSING
    if isinstance(doc, dict) and isinstance(doc.get("query"), str) and (
        kind is BodyKind.GRAPHQL or "variables" in doc or "operationName" in doc
        or doc["query"].lstrip().startswith(("query", "mutation", "subscription", "{"))
    ):
        doc = _strip_json_paths(doc, rule.ignore_json)
        if not isinstance(doc, dict):
            return doc
        return {"graphql": {"operationName": doc.get("operationName"),
                            "query": normalise_graphql(str(doc.get("query", ""))),
                            "variables": doc.get("variables") or None}}
    return _strip_json_paths(doc, rule.ignore_json)


def request_view(request: Request, rule: MatchRule, exact: tuple[str, ...] = EXACT_MATCHERS
                 ) -> dict[str, Any]:
    """Everything that is compared, as one JSON-like dict (used for diagnostics)."""
    view: dict[str, Any] = {}
    fields = {"method": request.method.upper(), "scheme": request.scheme.lower(),
              "host": request.host.lower(), "port": request.port, "path": request.path}
    for name in exact:
        view[name] = fields[name]
    if "query" in rule.matchers:
        view["query"] = query_view(request.query, rule)
    if "headers" in rule.matchers:
        view["headers"] = headers_view(request.headers, rule)
    if "body" in rule.matchers:
        view["body"] = body_view(request, rule)
    return view


def _freeze(value: Any) -> Hashable:
    if isinstance(value, (bytes, str, int, float, bool)) or value is None:
        return (type(value).__name__, value)
    return ("json", json.dumps(value, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False, default=_bytes_for_json))


def _bytes_for_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    raise TypeError(type(value).__name__)


def match_key(request: Request, rule: MatchRule) -> Hashable:
    """A hashable key: two requests under ``rule`` match iff their keys are equal
    (given equal exact fields)."""
    parts: list[Hashable] = []
    if "query" in rule.matchers:
        parts.append(_freeze(query_view(request.query, rule)))
    if "headers" in rule.matchers:
        parts.append(_freeze(headers_view(request.headers, rule)))
    if "body" in rule.matchers:
        parts.append(_freeze(body_view(request, rule)))
    return tuple(parts)


# -- rules per route ------------------------------------------------------------------


_LIST_SETTINGS = ("ignore_query", "headers", "ignore_headers", "ignore_json", "ignore_form",
                  "ignore_regex")


def extend_rule(rule: MatchRule, source: str, **settings: Any) -> MatchRule:
    """Return ``rule`` with ``settings`` applied: lists are added to, the rest replaced.

    Settings are already validated values: ``ignore_query=["ts"]``, ``body=BodyKind.JSON``,
    ``matchers=["query", "body"]``, ``ignore_regex=[re.compile(...)]``.
    """
    changes: dict[str, Any] = {"sources": (*rule.sources, source)}
    for key, value in settings.items():
        if key in _LIST_SETTINGS:
            current = getattr(rule, key)
            if key in ("headers", "ignore_headers"):
                value = [v.lower() for v in value]
            if isinstance(current, frozenset):
                changes[key] = current | frozenset(value)
            else:
                changes[key] = tuple(dict.fromkeys((*current, *value)))
        elif key == "matchers":
            changes[key] = frozenset(value)
        else:
            changes[key] = value
    return replace(rule, **changes)


@dataclass(frozen=True, slots=True)
class MatchConfig:
    """Matching for one cassette: exact matchers, a base rule, and rules per route.

    ``rule_for`` merges the base rule with every route that applies, in order.
    """

    exact: tuple[str, ...] = EXACT_MATCHERS
    base: MatchRule = MatchRule()
    routes: tuple[tuple[Any, dict[str, Any]], ...] = ()
    """(Route, settings) pairs; see ``routes.Route`` and ``extend_rule``."""

    def rule_for(self, method: str, scheme: str, host: str, port: int, path: str) -> MatchRule:
        """The rule for a request with these fields."""
        rule = self.base
        for route, settings in self.routes:
            if route.matches_fields(method, scheme, host, port, path):
                rule = extend_rule(rule, route.text, **settings)
        return rule
