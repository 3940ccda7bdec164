"""What a secret looks like: names of fields that hold secrets and shapes of credentials.

Shared by redaction (which replaces them before anything is written) and the scanner
(which proves that nothing was left).
"""

from __future__ import annotations

import codecs
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from replayproxy.userregex import UserPattern

__all__ = [
    "DEFAULT_SECRET_FIELDS",
    "DEFAULT_SECRET_HEADERS",
    "EVENT_STREAM",
    "NOT_SECRET_HEADERS",
    "PLACEHOLDER",
    "SECRET_HEADER_WORDS",
    "URL_HEADERS",
    "VALUE_PATTERNS",
    "ValuePattern",
    "field_key",
    "is_secret_field",
    "is_secret_header",
    "body_text",
    "event_stream_json",
    "json_documents",
    "json_in_string",
    "multipart_boundary",
    "multipart_fields",
    "url_queries",
]

DEFAULT_SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
    "api-key", "apikey", "x-auth-token", "x-access-token", "x-csrf-token", "x-xsrf-token",
    "x-amz-security-token", "x-goog-api-key", "x-vault-token", "private-token",
    "x-shopify-access-token", "x-figma-token", "x-postmark-server-token",
    "x-postmark-account-token", "x-mailgun-api-key", "x-github-token", "x-hub-signature",
    "x-hub-signature-256", "stripe-signature",
})
"""Header names (lower case) whose values are always redacted."""

DEFAULT_SECRET_FIELDS = frozenset({
    "api_key", "apikey", "api-key", "token", "access_token", "refresh_token", "id_token",
    "client_secret", "password", "passwd", "secret", "private_key", "secret_key",
    "auth_token", "session_token", "client_assertion", "assertion", "code_verifier",
})
"""Query parameter, form field and JSON key names (lower case) whose values are
redacted wherever they appear."""

SECRET_HEADER_WORDS = frozenset({
    "token", "secret", "key", "apikey", "session", "signature", "sig", "password",
    "passwd", "credential", "credentials",
})
"""A header whose name holds one of these words (``X-Session-Token``, ``Token``,
``X-My-Secret``, ``X-Signature``) is redacted like the named ones."""

NOT_SECRET_HEADERS = frozenset({
    "sec-websocket-key", "sec-websocket-accept", "idempotency-key", "x-idempotency-key",
    "keep-alive",
})
"""Names with such a word that hold no secret (a WebSocket handshake nonce, an
idempotency key the client made up)."""

URL_HEADERS = frozenset({"location", "content-location", "link", "refresh"})
"""Response headers whose values hold URLs, whose query parameters are redacted like the
request's."""

PLACEHOLDER = re.compile(r"<redacted:([a-z0-9_.\-]+):([0-9a-f]{6})>")
"""``<redacted:RULE:HASH>``: what a secret becomes. HASH is a keyed hash of the value."""


@dataclass(frozen=True, slots=True)
class ValuePattern:
    """A credential shape recognised anywhere in text."""

    name: str
    regex: re.Pattern[str] | UserPattern
    hints: tuple[str, ...] = ()
    """Substrings every match contains; when none is in a text, the regex is not run
    (a substring search is ~100x faster than a regex that starts with ``\\b``)."""

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        """The matches in ``text``, skipping the regex when no hint occurs."""
        if self.hints and not any(h in text for h in self.hints):
            return iter(())
        return self.regex.finditer(text)


def _p(name: str, pattern: str, *hints: str) -> ValuePattern:
    return ValuePattern(name, re.compile(pattern), hints)


VALUE_PATTERNS: tuple[ValuePattern, ...] = (
    _p("private-key", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?"
                      r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", "PRIVATE KEY-----"),
    _p("stripe-key", r"\b(?:sk|rk|pk)_(?:test|live)_[0-9A-Za-z]{10,}", "_test_", "_live_"),
    _p("stripe-webhook-secret", r"\bwhsec_[0-9A-Za-z]{16,}", "whsec_"),
    _p("aws-access-key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b",
       "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"),
    _p("github-token", r"\b(?:gh[pousr]_[0-9A-Za-z]{36,}|github_pat_[0-9A-Za-z_]{40,})",
       "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    _p("gitlab-token", r"\bglpat-[0-9A-Za-z\-_]{20,}", "glpat-"),
    _p("slack-token", r"\bxox[abposr]-[0-9A-Za-z\-]{10,}", "xox"),
    _p("google-api-key", r"\bAIza[0-9A-Za-z\-_]{35}", "AIza"),
    _p("sendgrid-key", r"\bSG\.[0-9A-Za-z\-_]{16,}\.[0-9A-Za-z\-_]{16,}", "SG."),
    _p("twilio-key", r"\bSK[0-9a-fA-F]{32}\b", "SK"),
    _p("openai-key", r"\bsk-(?:proj-)?[0-9A-Za-z\-_]{32,}", "sk-"),
    _p("jwt", r"\beyJ[0-9A-Za-z\-_]{8,}\.eyJ[0-9A-Za-z\-_]{8,}\.[0-9A-Za-z\-_]{8,}", "eyJ"),
)
"""Well-known credential shapes (provider keys, cloud keys, private keys, JWTs)."""


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORDS = re.compile(r"[^a-z0-9]+")


def _words(name: str) -> list[str]:
    """``accessToken``, ``access-token``, ``ACCESS_TOKEN`` -> ``["access", "token"]``."""
    return [w for w in _WORDS.split(_CAMEL.sub("_", name).lower()) if w]


@functools.lru_cache(maxsize=4096)
def field_key(name: str) -> str:
    """A field name in one case style: ``accessToken``, ``access-token``,
    ``ACCESS_TOKEN`` and ``access_token`` all give ``accesstoken``."""
    return "".join(_words(name))


@functools.lru_cache(maxsize=64)
def _field_keys(fields: frozenset[str]) -> frozenset[str]:
    return frozenset(field_key(f) for f in fields)


def is_secret_field(name: str, fields: frozenset[str]) -> bool:
    """Whether a query parameter, form or multipart field or JSON key ``name`` is one of
    ``fields``, whatever its case style."""
    return name.lower() in fields or field_key(name) in _field_keys(fields)


@functools.lru_cache(maxsize=4096)  # asked for every header of every request
def is_secret_header(name: str, headers: frozenset[str], words: frozenset[str],
                     keep: frozenset[str] = frozenset()) -> bool:
    """Whether header ``name`` is redacted: named in ``headers``, or its name holds one
    of ``words`` (``X-Session-Token``), unless kept or known to hold no secret."""
    lower = name.lower()
    if lower in keep:
        return False
    if lower in headers:
        return True
    return bool(words) and lower not in NOT_SECRET_HEADERS and not lower.startswith(":") \
        and any(w in words for w in _words(name))


_QUERY_IN_URL = re.compile(r"\?([^\s<>\"'#;,]*)")


def url_queries(value: str) -> list[tuple[int, int]]:
    """The spans of the query strings of the URLs in a header value (``Location``,
    ``Link: <…?page=2&access_token=…>; rel="next"``, ``Refresh: 0; url=…?token=…``)."""
    return [m.span(1) for m in _QUERY_IN_URL.finditer(value) if m.group(1)]


_BOUNDARY = re.compile(r'(?i)boundary="?([^";]+)"?')


def multipart_boundary(content_type: str) -> str | None:
    """The boundary of a ``multipart/…`` body from its Content-Type, else None."""
    if "multipart/" not in content_type.lower():
        return None
    m = _BOUNDARY.search(content_type)
    return m.group(1) if m else None


_PART_NAME = re.compile(r'(?i)content-disposition:[^\r\n]*?\bname="([^"]*)"')


def multipart_fields(text: str, boundary: str) -> list[tuple[str, int, int]]:
    """The fields of a ``multipart/form-data`` body: (name, start, end) of each part's
    value in ``text`` (files included; what the caller does with a name decides)."""
    fields = []
    delimiter = "--" + boundary
    for part_start in (m.end() for m in re.finditer(re.escape(delimiter), text)):
        head_end = text.find("\r\n\r\n", part_start)
        sep = 4
        if head_end < 0:
            head_end, sep = text.find("\n\n", part_start), 2
        if head_end < 0:
            continue
        name = _PART_NAME.search(text, part_start, head_end)
        end = text.find(delimiter, head_end)
        if name is None or end < 0:
            continue
        value_end = end - 2 if text[end - 2:end] == "\r\n" else end - 1 \
            if text[end - 1:end] == "\n" else end
        fields.append((name.group(1), head_end + sep, value_end))
    return fields


def json_documents(text: str) -> list[Any]:
    """The JSON of a body: one document, or one per line (JSON Lines, NDJSON, a log of
    events); empty when it is neither."""
    try:
        return [json.loads(text)]
    except (ValueError, RecursionError):
        pass
    docs = []
    for line in text.splitlines():
        line = line.strip()
        if line[:1] in ("{", "["):
            try:
                docs.append(json.loads(line))
            except (ValueError, RecursionError):
                return []  # not JSON Lines either
        elif line:
            return []
    return docs


def json_in_string(text: str) -> Any:
    """A JSON object or array held in a string value (``"payload": "{\\"token\\": …}"``),
    else None."""
    stripped = text.strip()
    if stripped[:1] not in ("{", "[") or len(stripped) < 2:
        return None
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
        return None


EVENT_STREAM = "text/event-stream"
"""The content type of Server-Sent Events, whose ``data:`` fields often hold JSON."""


def event_stream_json(text: str) -> Iterator[Any]:
    """The JSON documents in the ``data:`` fields of a Server-Sent Events body, one per
    event (an event's ``data:`` lines joined with newlines, as a browser does); data that
    is not JSON is skipped."""
    for block in re.split(r"\r\n\r\n|\n\n|\r\r", text):
        data = [line[5:].removeprefix(" ") for line in re.split(r"\r\n|\n|\r", block)
                if line.startswith("data:")]
        joined = "\n".join(data).strip()
        if joined[:1] in ("{", "["):
            try:
                yield json.loads(joined)
            except (ValueError, RecursionError):
                continue


_CHECK_ABOVE = 1 << 20
"""Bodies longer than this are checked for UTF-8 piece by piece before being decoded."""


def body_text(data: bytes) -> str:
    """A body as text: UTF-8, else Latin-1 (lossless). A failed UTF-8 decode of a big body
    would first build up to twice its size in characters; so a big body is checked a
    megabyte at a time, and decoded once, as what it is."""
    if len(data) > _CHECK_ABOVE:
        check = codecs.getincrementaldecoder("utf-8")()
        view = memoryview(data)
        try:
            for start in range(0, len(data), _CHECK_ABOVE):
                check.decode(view[start:start + _CHECK_ABOVE], False)
            check.decode(b"", True)
        except UnicodeDecodeError:
            return data.decode("latin-1")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")
