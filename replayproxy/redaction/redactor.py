"""Redaction: replace secrets with stable placeholders before anything is written.

A secret becomes ``<redacted:RULE:HASH>``: RULE names what found it (``authorization``,
``cookie``, ``api_key``, ``stripe-key``...), HASH is the first 6 hex digits of an
HMAC-SHA256 of the value under a key kept outside the cassette. The same token always
gives the same placeholder and two tokens give two placeholders, yet the cassette does
not reveal them.

How secrets are found, in a request and its response together:

1. headers named in the rules (``Authorization`` keeps its scheme: ``Bearer <…>``;
   ``Cookie`` and ``Set-Cookie`` keep cookie names and attributes);
2. query parameters, form fields and JSON keys named like secrets (``api_key``,
   ``token``, ``password``, ``client_secret``...), and JSON paths named in the rules;
3. credential shapes anywhere in text (provider keys, cloud keys, private keys, JWTs)
   and the user's regular expressions.

Then every secret value found is replaced *everywhere* in the interaction (headers,
URL, both bodies, in plain, URL-encoded and JSON-escaped forms), so an API that echoes
a token in its response cannot leak it. Bodies are decoded (gzip, deflate, br, zstd)
first and re-encoded afterwards; a body that cannot be decoded is handled as bytes.

Redaction is idempotent: placeholders are never taken for secrets.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import re
import secrets as _secrets
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus

from replayproxy.codec import content_encodings, decode_body
from replayproxy.errors import ConfigError
from replayproxy.grpc_wire import is_grpc, message_coding, message_text, rewrite_frames
from replayproxy.matching.rules import compile_json_path
from replayproxy.model import (
    Headers,
    Interaction,
    Request,
    Response,
    WebSocketLog,
    WebSocketMessage,
    header_value,
)
from replayproxy.redaction.secrets import (
    DEFAULT_SECRET_FIELDS,
    DEFAULT_SECRET_HEADERS,
    EVENT_STREAM,
    PLACEHOLDER,
    SECRET_HEADER_WORDS,
    URL_HEADERS,
    VALUE_PATTERNS,
    ValuePattern,
    body_text,
    event_stream_json,
    is_secret_field,
    is_secret_header,
    json_documents,
    json_in_string,
    multipart_boundary,
    multipart_fields,
    url_queries,
)
from replayproxy.routes import Route
from replayproxy.streams import refit

__all__ = ["RedactionConfig", "Redactor", "load_key"]

_MIN_GLOBAL = 6
"""Secrets shorter than this are replaced only where they were found, not everywhere
(replacing "42" everywhere would wreck the cassette)."""


@dataclass(frozen=True, slots=True)
class RedactionConfig:
    """What to redact. ``for_route`` merges per-route additions."""

    headers: frozenset[str] = DEFAULT_SECRET_HEADERS
    header_words: frozenset[str] = SECRET_HEADER_WORDS
    """A header whose name holds one of these words is redacted too."""
    keep_headers: frozenset[str] = frozenset()
    fields: frozenset[str] = DEFAULT_SECRET_FIELDS
    json_paths: tuple[str, ...] = ()
    patterns: tuple[ValuePattern, ...] = VALUE_PATTERNS
    same_value: frozenset[str] = frozenset()
    """Rule names whose placeholders must be equal to match on replay (by default a
    redacted field matches any value the same rule redacts)."""
    on_leak: str = "error"
    """``error``: an interaction in which the scanner still finds a secret is not
    written; ``warn``: it is written and a warning printed."""
    routes: tuple[tuple[Route, dict[str, Any]], ...] = field(default=(), compare=False)
    defaults: bool = True
    """False (``defaults = false``): the built-in rules do not redact; the scanner still
    checks them (see ``scanning``)."""
    scan: bool = True
    """False (``scan = false``): recording writes interactions without scanning them."""

    def scanning(self) -> RedactionConfig:
        """The rules the scanner checks: these, with the built-in ones always included
        (turning the built-in redaction off must not turn the scanner off with it)."""
        if self.defaults:
            return self
        return replace(self, headers=self.headers | DEFAULT_SECRET_HEADERS,
                       header_words=self.header_words | SECRET_HEADER_WORDS,
                       fields=self.fields | DEFAULT_SECRET_FIELDS,
                       patterns=(*VALUE_PATTERNS, *self.patterns), defaults=True)

    def warnings(self) -> list[str]:
        """One line per safety switch turned off, for every run that uses them."""
        out = []
        if not self.defaults:
            out.append("[redact] defaults = false: the built-in redaction rules are off, "
                       "only your rules redact; the scanner still checks the built-in ones "
                       "(an interaction they flag is not written)")
        if not self.scan:
            out.append("[redact] scan = false: the secret scanner is off, recorded and "
                       "imported interactions are written without being checked for "
                       "secrets")
        return out

    def secret_header(self, name: str) -> bool:
        """Whether header ``name`` is redacted under this configuration."""
        return is_secret_header(name, self.headers, self.header_words, self.keep_headers)

    def secret_field(self, name: str) -> bool:
        """Whether a query, form, multipart or JSON field ``name`` is redacted, in any case
        style (``accessToken``, ``access-token``, ``ACCESS_TOKEN``)."""
        return is_secret_field(name, self.fields)

    def for_request(self, request: Request) -> RedactionConfig:
        """This configuration with the additions of every route ``request`` falls under."""
        config = self
        for route, extra in self.routes:
            if route.matches(request):
                config = replace(
                    config,
                    headers=config.headers | extra.get("headers", frozenset()),
                    keep_headers=config.keep_headers | extra.get("keep_headers", frozenset()),
                    fields=config.fields | extra.get("fields", frozenset()),
                    json_paths=(*config.json_paths, *extra.get("json_paths", ())),
                    patterns=(*config.patterns, *extra.get("patterns", ())),
                    routes=(),
                )
        return config


def load_key(home: Path, environ: dict[str, str] | None = None) -> bytes:
    """The redaction key: ``$REPLAYPROXY_REDACTION_KEY``, else ``HOME/redaction.key``
    (created with 32 random bytes, owner-only, on first use)."""
    env = os.environ if environ is None else environ
    if env.get("REPLAYPROXY_REDACTION_KEY"):
        return env["REPLAYPROXY_REDACTION_KEY"].encode("utf-8")
    path = home / "redaction.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise ConfigError(f"cannot read the redaction key {path}: {e.strerror}; set "
                          "REPLAYPROXY_REDACTION_KEY instead") from None
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(_secrets.token_hex(32).encode())
    except FileExistsError:
        pass  # another process created it first
    except OSError as e:
        raise ConfigError(f"cannot create the redaction key {path}: {e.strerror}; set "
                          "REPLAYPROXY_REDACTION_KEY or REPLAYPROXY_HOME") from None
    return path.read_bytes()


# -- finding secrets ------------------------------------------------------------------


class _Found:
    """Secret values found in one interaction, each with the rule that found it."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.numbers: dict[str, str] = {}
        """Secret JSON numbers: replaced as numbers by ``_json_numbers`` (a bare
        placeholder would make the JSON invalid), elsewhere only as strings."""

    def add(self, value: str, rule: str) -> None:
        value = value.strip()
        if value and not PLACEHOLDER.search(value):
            self.values.setdefault(value, rule)

    def add_number(self, value: str, rule: str) -> None:
        self.numbers.setdefault(value, rule)


def _walk_json(doc: Any, config: RedactionConfig, found: _Found, depth: int = 0) -> None:
    if isinstance(doc, dict):
        for k, v in doc.items():
            if isinstance(k, str) and config.secret_field(k) and \
                    isinstance(v, (str, int, float)) and not isinstance(v, bool):
                if isinstance(v, str):
                    found.add(v, _rule_name(k))
                else:
                    found.add_number(json.dumps(v), _rule_name(k))
            else:
                _walk_json(v, config, found, depth)
    elif isinstance(doc, list):
        for v in doc:
            _walk_json(v, config, found, depth)
    elif isinstance(doc, str) and depth < 3:
        inner = json_in_string(doc)
        if inner is not None:
            _walk_json(inner, config, found, depth + 1)


def _rule_name(name: str) -> str:
    return re.sub(r"[^a-z0-9_.\-]+", "-", name.lower()).strip("-") or "secret"


def _json_paths(doc: Any, paths: Iterable[str], found: _Found) -> None:
    for path in paths:
        try:
            matches = compile_json_path(path).find(doc)
        except Exception:  # jsonpath-ng trips on some shapes
            continue
        for m in matches:
            if isinstance(m.value, (str, int, float)) and not isinstance(m.value, bool):
                found.add(str(m.value), _rule_name(str(m.path)))


def _find_in_body(body: bytes, headers: Headers, config: RedactionConfig,
                  found: _Found) -> None:
    if not body:
        return
    text = body_text(body)
    ctype = (header_value(headers, "content-type") or "").lower()
    if "json" in ctype or text.lstrip()[:1] in ("{", "["):
        for doc in json_documents(text):
            _walk_json(doc, config, found)
            _json_paths(doc, config.json_paths, found)
    if EVENT_STREAM in ctype:
        for doc in event_stream_json(text):
            _walk_json(doc, config, found)
            _json_paths(doc, config.json_paths, found)
    if "x-www-form-urlencoded" in ctype:
        for k, v in parse_qsl(text, keep_blank_values=True):
            if config.secret_field(k):
                found.add(v, _rule_name(k))
    boundary = multipart_boundary(header_value(headers, "content-type") or "")
    if boundary:
        for name, start, end in multipart_fields(text, boundary):
            if config.secret_field(name):
                found.add(text[start:end], _rule_name(name))
    for pattern in config.patterns:
        for m in pattern.finditer(text):
            found.add(m.group(), pattern.name)


_JSON_NUMBER_MEMBER = re.compile(
    r'("((?:[^"\\]|\\.)*)"\s*:\s*)(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?=\s*[,}\]])')


def _find_in_text(text: str, config: RedactionConfig, found: _Found) -> None:
    for pattern in config.patterns:
        for m in pattern.finditer(text):
            found.add(m.group(), pattern.name)


# -- replacing ------------------------------------------------------------------------


_AUTH_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_\-]*)\s+(\S.*)$")


class Redactor:
    """Applies a ``RedactionConfig`` with a key; see the module docstring."""

    def __init__(self, config: RedactionConfig | None = None, key: bytes = b"") -> None:
        self.config = config or RedactionConfig()
        self.key = key

    def placeholder(self, rule: str, value: str) -> str:
        """``<redacted:RULE:HASH>`` for ``value``."""
        digest = hmac.new(self.key, value.encode("utf-8", "surrogateescape"),
                          hashlib.sha256).hexdigest()[:6]
        return f"<redacted:{rule}:{digest}>"

    # headers get special care: keep the scheme of Authorization, cookie names, attributes
    def _header(self, name: str, value: str, found: _Found) -> str:
        lower = name.lower()
        if lower in ("authorization", "proxy-authorization"):
            m = _AUTH_SCHEME.match(value)
            if m:
                if PLACEHOLDER.fullmatch(m.group(2).strip()):
                    return f"{m.group(1)} {_relabel(m.group(2), lower)}"
                found.add(m.group(2), lower)
                return f"{m.group(1)} {self.placeholder(lower, m.group(2).strip())}"
        if lower == "cookie":
            return "; ".join(self._cookie(part, lower, found) for part in value.split(";"))
        if lower == "set-cookie":
            first, sep, attributes = value.partition(";")
            return self._cookie(first, lower, found) + sep + attributes
        if PLACEHOLDER.fullmatch(value.strip()):
            return _relabel(value, _rule_name(lower))
        found.add(value, lower)
        return self.placeholder(_rule_name(lower), value.strip())

    def _cookie(self, part: str, rule: str, found: _Found) -> str:
        name, eq, value = part.strip().partition("=")
        if not eq or not value:
            return part.strip()
        if PLACEHOLDER.fullmatch(value):
            return f"{name}={_relabel(value, rule)}"
        found.add(value, rule)
        return f"{name}={self.placeholder(rule, value)}"

    def _headers(self, headers: Headers, config: RedactionConfig, found: _Found) -> Headers:
        out = []
        for k, v in headers:
            if config.secret_header(k) and v.strip():
                v = self._header(k, v, found)
            elif k.lower() in URL_HEADERS:
                v = self._url_queries(v, config, found)
            out.append((k, v))
        return tuple(out)

    def _url_queries(self, value: str, config: RedactionConfig, found: _Found) -> str:
        """Redact the secret query parameters of the URLs in a header value."""
        for start, end in reversed(url_queries(value)):
            value = value[:start] + self._query(value[start:end], config, found) + value[end:]
        return value

    def _query(self, query: str, config: RedactionConfig, found: _Found) -> str:
        if not query:
            return query
        parts = []
        for segment in query.split("&"):
            name, eq, value = segment.partition("=")
            decoded = dict(parse_qsl(segment, keep_blank_values=True))
            plain_name = next(iter(decoded), name)
            if eq and value and config.secret_field(plain_name):
                plain = decoded[plain_name]
                if not PLACEHOLDER.search(plain):
                    found.add(plain, _rule_name(plain_name))
                    segment = f"{name}={self.placeholder(_rule_name(plain_name), plain)}"
                elif PLACEHOLDER.fullmatch(plain):
                    segment = f"{name}={_relabel(plain, _rule_name(plain_name))}"
            parts.append(segment)
        return "&".join(parts)

    def _form_fields(self, headers: Headers, config: RedactionConfig
                     ) -> Callable[[str], str] | None:
        """The in-place rewrite of a body's secret fields, by its content type: a form's
        (as in a query) or a multipart form's parts; None for other bodies. (A value too
        short to be replaced everywhere would otherwise stay.)"""
        ctype = (header_value(headers, "content-type") or "").lower()
        boundary = multipart_boundary(header_value(headers, "content-type") or "")
        if "x-www-form-urlencoded" in ctype:
            return lambda text: self._query(text, config, _Found())
        if boundary:
            return lambda text: self._multipart(text, boundary, config)
        return None

    def _multipart(self, text: str, boundary: str, config: RedactionConfig) -> str:
        for name, start, end in reversed(multipart_fields(text, boundary)):
            value = text[start:end]
            if config.secret_field(name) and value.strip() and \
                    not PLACEHOLDER.fullmatch(value.strip()):
                text = text[:start] + self.placeholder(_rule_name(name), value.strip()) + \
                    text[end:]
        return text

    def json_numbers(self, text: str, config: RedactionConfig) -> str:
        """``text`` with its secret JSON numbers (members named like secrets) replaced."""
        return self._json_numbers(text, config)

    def replacements(self, found: _Found) -> list[tuple[str, str]]:
        """(variant of a secret in ``found``, its placeholder), longest first."""
        return self._replacements(found)

    def _json_numbers(self, text: str, config: RedactionConfig) -> str:
        """``"password": 4711`` -> ``"password": "<redacted:password:…>"``."""
        def number(m: re.Match[str]) -> str:
            name = m.group(2)
            if not config.secret_field(name):
                return m.group(0)
            return m.group(1) + json.dumps(self.placeholder(_rule_name(name), m.group(3)))

        return _JSON_NUMBER_MEMBER.sub(number, text) if '"' in text else text

    def _replacements(self, found: _Found) -> list[tuple[str, str]]:
        """(variant of a secret, placeholder), longest first, for replacing everywhere."""
        pairs: dict[str, str] = {}
        for value, rule in found.numbers.items():  # elsewhere only as a JSON string
            pairs.setdefault(json.dumps(value), json.dumps(self.placeholder(rule, value)))
        for value, rule in found.values.items():
            placeholder = self.placeholder(rule, value)
            if len(value) < _MIN_GLOBAL:  # only as a whole JSON string: "pw": "abc"
                for variant in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
                    pairs.setdefault(variant, json.dumps(placeholder))
                    # and the same inside a JSON string that holds JSON
                    pairs.setdefault(json.dumps(variant)[1:-1],
                                     json.dumps(json.dumps(placeholder))[1:-1])
                continue
            for variant in (value, quote(value, safe=""), quote_plus(value),
                            json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]):
                pairs.setdefault(variant, placeholder)
        return sorted(pairs.items(), key=lambda p: -len(p[0]))

    def redact(self, it: Interaction, found: _Found | None = None) -> Interaction:
        """Return ``it`` with every secret replaced (request, response and WebSocket
        messages together); ``found``: secrets already found in a part not in ``it`` (a
        big body, see ``redaction.big``), to which those ``it`` holds are added."""
        config = self.config.for_request(it.request)
        found = found if found is not None else _Found()
        q, r = it.request, it.response
        q_headers = self._headers(q.headers, config, found)
        r_headers = self._headers(r.headers, config, found)
        r_trailers = self._headers(r.trailers, config, found)
        query = self._query(q.query, config, found)
        q_body = decode_body(q.body, q.headers)
        r_body = decode_body(r.body, r.headers)
        for body, headers in ((q_body if q_body is not None else q.body, q.headers),
                              (r_body if r_body is not None else r.body, r.headers)):
            _find_in_body(body, headers, config, found)
            if is_grpc(headers):  # the strings in the messages, compressed ones too
                strings = message_text(body, message_coding(headers))
                if strings:
                    _find_in_text(body_text(strings), config, found)
        messages = it.websocket.messages if it.websocket is not None else ()
        for message in messages:
            _find_in_body(message.content, (), config, found)
        for text in (q.path, query, *(v for _, v in (*q_headers, *r_headers, *r_trailers))):
            _find_in_text(text, config, found)
        q_form, r_form = self._form_fields(q.headers, config), self._form_fields(r.headers, config)
        if found.numbers:  # a secret JSON number becomes a placeholder string: valid JSON
            q_form, r_form = (_then(rewrite, lambda text: self._json_numbers(text, config))
                              for rewrite in (q_form, r_form))
        if not found.values and not found.numbers and q_form is None and r_form is None:
            return replace(it, request=replace(q, headers=q_headers, query=query),
                           response=replace(r, headers=r_headers, trailers=r_trailers))
        pairs = self._replacements(found)
        if it.websocket is not None and messages:
            numbers = (lambda text: self._json_numbers(text, config)) if found.numbers else None
            it = replace(it, websocket=replace(it.websocket, messages=tuple(
                self._message(m, pairs, numbers) for m in messages)))
        request = Request(
            q.method, q.scheme, q.host, q.port, _replace_all(q.path, pairs),
            _replace_in_values(query, pairs),
            (), b"", q.http_version,
        )
        q_new_body, q_headers = _rebuild_body(q.body, q_body, q_headers, pairs, q_form)
        r_new_body, r_headers = _rebuild_body(r.body, r_body, r_headers, pairs, r_form)
        request = replace(request, headers=_replace_headers(q_headers, pairs), body=q_new_body)
        response = replace(r, headers=_replace_headers(r_headers, pairs), body=r_new_body,
                           trailers=_replace_headers(r_trailers, pairs))
        return replace(it, request=request, response=response,
                       chunks=refit(it.chunks, r.body, r_new_body))

    @staticmethod
    def _message(message: WebSocketMessage, pairs: list[tuple[str, str]],
                 numbers: Callable[[str], str] | None) -> WebSocketMessage:
        """A WebSocket message with its secrets replaced (as a body with no headers)."""
        content, _ = _rebuild_body(message.content, None, (), pairs, numbers)
        return message if content == message.content else replace(message, content=content)

    def redact_message(self, request: Request, message: WebSocketMessage) -> WebSocketMessage:
        """Redact an incoming WebSocket message of the handshake ``request`` the way
        recorded messages were (for matching)."""
        log = WebSocketLog((message,))
        redacted = self.redact(Interaction(request, Response(0), websocket=log)).websocket
        return redacted.messages[0] if redacted is not None else message

    def redact_request(self, request: Request) -> Request:
        """Redact an incoming request the way recorded requests were (for matching)."""
        return self.redact(Interaction(request, Response(0))).request


def _then(first: Callable[[str], str] | None, second: Callable[[str], str]
          ) -> Callable[[str], str]:
    """``second`` after ``first`` (if any)."""
    return second if first is None else (lambda text: second(first(text)))


def _relabel(placeholder: str, rule: str) -> str:
    """A placeholder found where ``rule`` applies, under that rule with the same hash.

    On replay a client sends back what a replayed response gave it (a Set-Cookie value,
    an access token) as a placeholder of the response's rule; under the request field's
    rule it matches the recording, which redacted the real value with that rule."""
    m = PLACEHOLDER.fullmatch(placeholder.strip())
    return f"<redacted:{rule}:{m.group(2)}>" if m else placeholder


def _replace_all(text: str, pairs: list[tuple[str, str]]) -> str:
    """Replace every secret variant in one pass, longest first, so that a shorter secret
    can never rewrite part of a placeholder put in for a longer one."""
    present = [(secret, placeholder) for secret, placeholder in pairs if secret in text]
    if not present:
        return text
    table = dict(present)
    pattern = re.compile("|".join(re.escape(secret) for secret, _ in present))
    return pattern.sub(lambda m: table[m.group(0)], text)


def _replace_in_values(query: str, pairs: list[tuple[str, str]]) -> str:
    """``_replace_all`` on the values of a query or form body only: a secret that equals
    a field's name (``secret_key=secret_key``) must not rename the field."""
    if not query or not any(secret in query for secret, _ in pairs):
        return query
    parts = []
    for segment in query.split("&"):
        name, eq, value = segment.partition("=")
        parts.append(name + eq + _replace_all(value, pairs) if eq else segment)
    return "&".join(parts)


def _replace_headers(headers: Headers, pairs: list[tuple[str, str]]) -> Headers:
    return tuple((k, _replace_all(v, pairs)) for k, v in headers)


def _encode(data: bytes, encodings: list[str]) -> bytes | None:
    for encoding in encodings:
        if encoding in ("gzip", "x-gzip"):
            data = gzip.compress(data, mtime=0)
        elif encoding == "deflate":
            data = zlib.compress(data)
        elif encoding == "br":
            import brotli  # a mitmproxy dependency

            data = bytes(brotli.compress(data))
        elif encoding == "zstd":
            import zstandard  # a mitmproxy dependency

            data = bytes(zstandard.ZstdCompressor().compress(data))
        elif encoding != "identity":
            return None
    return data


def _replace_bytes(data: bytes, pairs: list[tuple[str, str]]) -> bytes:
    try:
        text, charset = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, charset = data.decode("latin-1"), "latin-1"
    new = _replace_all(text, pairs)
    return data if new == text else new.encode(charset, "replace")


def _rebuild_body(raw: bytes, decoded: bytes | None, headers: Headers,
                  pairs: list[tuple[str, str]], form: Callable[[str], str] | None = None
                  ) -> tuple[bytes, Headers]:
    """Replace secrets in a body (and its secret form fields, with ``form``); re-encode
    it and fix Content-Length if it changed."""
    plain = raw if decoded is None else decoded
    if is_grpc(headers) and decoded is not None:
        rebuilt = rewrite_frames(decoded, lambda leaf: _replace_bytes(leaf, pairs),
                                 message_coding(headers))
        if rebuilt is not None:  # message by message: every length prefix stays right
            return (raw, headers) if rebuilt == decoded else (rebuilt, headers)
    try:
        text, charset = plain.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, charset = plain.decode("latin-1"), "latin-1"
    is_form = "x-www-form-urlencoded" in (header_value(headers, "content-type") or "").lower()
    new_text = _replace_in_values(text, pairs) if is_form else _replace_all(text, pairs)
    if form is not None:
        new_text = form(new_text)
    if new_text == text:
        return raw, headers
    new_plain = new_text.encode(charset, "replace")
    encodings = content_encodings(headers) if decoded is not None else []
    body = _encode(new_plain, encodings) if encodings else new_plain
    if body is None:  # an encoding we cannot produce: send it decoded, say so
        body = new_plain
        headers = tuple((k, v) for k, v in headers if k.lower() != "content-encoding")
    fixed = tuple((k, str(len(body)) if k.lower() == "content-length" else v)
                  for k, v in headers)
    return body, fixed
