"""The secret scanner: proves that cassettes (and VCR.py / HAR files) hold no secrets.

It looks for what redaction should have replaced: values of secret headers, query
parameters, form fields and JSON keys that are not placeholders, and credential shapes
anywhere in text. Used before each interaction is written (fail closed) and by
``replayproxy scan``. VCR.py and HAR files are read into interactions by
``replayproxy.formats`` and scanned as such; any other file line by line.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from replayproxy.cassette.store import SUFFIX, load_cassette
from replayproxy.codec import decode_body
from replayproxy.errors import CassetteError
from replayproxy.formats import Entry
from replayproxy.formats.har import read_har
from replayproxy.formats.vcr import read_vcr
from replayproxy.model import Headers, Interaction, header_value
from replayproxy.redaction.redactor import RedactionConfig
from replayproxy.redaction.secrets import (
    EVENT_STREAM,
    PLACEHOLDER,
    URL_HEADERS,
    body_text,
    event_stream_json,
    json_in_string,
    multipart_boundary,
    multipart_fields,
    url_queries,
)

__all__ = ["Finding", "scan_interaction", "scan_path"]

_HARMLESS = {"", "null", "none", "redacted", "[redacted]", "***", "xxx", "dummy", "<redacted>",
             "filtered", "[filtered]"}


@dataclass(frozen=True, slots=True)
class Finding:
    """A secret the scanner found."""

    file: str
    interaction: int | None
    """1-based interaction number, when the file has interactions."""
    location: str
    """E.g. ``request header Authorization``, ``response body $.token``, ``line 12``."""
    rule: str
    excerpt: str
    """The finding, masked: the first 4 characters and its length."""

    def describe(self) -> str:
        """One line for people."""
        where = f"#{self.interaction} " if self.interaction is not None else ""
        return f"{self.file}: {where}{self.location}: {self.rule} ({self.excerpt})"


def _mask(value: str) -> str:
    value = value.strip()
    return f"{value[:4]}… {len(value)} chars" if len(value) > 4 else f"{len(value)} chars"


def _unredacted(value: str) -> bool:
    stripped = PLACEHOLDER.sub("", value).strip().strip('"').strip()
    return stripped.lower() not in _HARMLESS


class _Scan:
    def __init__(self, file: str, interaction: int | None, config: RedactionConfig) -> None:
        self.file, self.interaction, self.config = file, interaction, config
        self.findings: list[Finding] = []

    def add(self, location: str, rule: str, value: str) -> None:
        self.findings.append(Finding(self.file, self.interaction, location, rule, _mask(value)))

    def text(self, location: str, text: str) -> None:
        for pattern in self.config.patterns:
            for m in pattern.finditer(text):
                self.add(location, pattern.name, m.group())

    def header(self, side: str, name: str, value: str) -> None:
        lower = name.lower()
        location = f"{side} header {name}"
        if lower in URL_HEADERS:
            for start, end in url_queries(value):
                self.fields(f"{location} query", parse_qsl(value[start:end],
                                                           keep_blank_values=True))
        if self.config.secret_header(name):
            if lower in ("cookie", "set-cookie"):
                cookies = value.split(";") if lower == "cookie" else value.split(";")[:1]
                for part in cookies:
                    _, eq, v = part.partition("=")
                    if eq and _unredacted(v):
                        self.add(location, lower, v)
            else:
                credential = value.split(None, 1)[-1] if lower.endswith("authorization") \
                    else value
                if _unredacted(credential):
                    self.add(location, lower, credential)
                    return
        self.text(location, value)

    def fields(self, location: str, pairs: list[tuple[str, str]]) -> None:
        for k, v in pairs:
            if self.config.secret_field(k) and _unredacted(v):
                self.add(f"{location} {k}", k.lower(), v)

    def json(self, location: str, doc: Any, path: str = "$") -> None:
        if isinstance(doc, dict):
            for k, v in doc.items():
                sub = f"{path}.{k}"
                if isinstance(k, str) and self.config.secret_field(k) and \
                        isinstance(v, (str, int, float)) and not isinstance(v, bool) and \
                        _unredacted(str(v)):
                    self.add(f"{location} {sub}", k.lower(), str(v))
                else:
                    self.json(location, v, sub)
        elif isinstance(doc, list):
            for i, v in enumerate(doc):
                self.json(location, v, f"{path}[{i}]")
        elif isinstance(doc, str) and path.count("$") < 4:
            inner = json_in_string(doc)
            if inner is not None:
                self.json(location, inner, f"{path}$")

    def body(self, location: str, body: bytes, headers: Headers | None) -> None:
        if not body:
            return
        decoded = decode_body(body, headers) if headers is not None else body
        data = body if decoded is None else decoded
        text = body_text(data)
        ctype = (header_value(headers, "content-type") or "").lower() if headers else ""
        if "json" in ctype or text.lstrip()[:1] in ("{", "["):
            with contextlib.suppress(ValueError, RecursionError):
                self.json(location, json.loads(text))
        if EVENT_STREAM in ctype:
            for doc in event_stream_json(text):
                self.json(f"{location} event", doc)
        if "x-www-form-urlencoded" in ctype:
            self.fields(f"{location} field", parse_qsl(text, keep_blank_values=True))
        boundary = multipart_boundary(header_value(headers, "content-type") or "") \
            if headers else None
        if boundary:
            self.fields(f"{location} part", [(name, text[start:end]) for name, start, end
                                             in multipart_fields(text, boundary)])
        self.text(location, text)


def _query(scan: _Scan, it: Interaction) -> None:
    scan.fields("request query", parse_qsl(it.request.query, keep_blank_values=True))


def _headers(scan: _Scan, side: str, headers: Headers) -> None:
    for k, v in headers:
        scan.header(side, k, v)


def scan_interaction(it: Interaction, config: RedactionConfig | None = None,
                     file: str = "", number: int | None = None) -> list[Finding]:
    """Secrets left in ``it`` (an empty list when it is clean)."""
    cfg = (config or RedactionConfig()).for_request(it.request)
    scan = _Scan(file, number, cfg)
    q, r = it.request, it.response
    scan.text("request path", q.path)
    _query(scan, it)
    scan.text("request query", q.query)
    _headers(scan, "request", q.headers)
    _headers(scan, "response", r.headers)
    _headers(scan, "response trailer", r.trailers)
    scan.body("request body", q.body, q.headers)
    scan.body("response body", r.body, r.headers)
    if it.websocket is not None:
        for n, message in enumerate(it.websocket.messages, 1):
            side = "client" if message.from_client else "server"
            scan.body(f"websocket message {n} ({side})", message.content, None)
    return scan.findings


def _scan_cassette(path: Path, config: RedactionConfig) -> Iterator[Finding]:
    cassette = load_cassette(path)
    for i, it in enumerate(cassette.interactions()):
        yield from scan_interaction(it, config, str(path), i + 1)


def _scan_vcr(scan: _Scan, entry: Entry) -> None:
    """An interaction of a VCR.py cassette: its URI as written, then each side."""
    q, r = entry.interaction.request, entry.interaction.response
    scan.text("request uri", entry.url)
    _query(scan, entry.interaction)
    for side, part in (("request", q), ("response", r)):
        _headers(scan, side, part.headers)
        scan.body(f"{side} body", part.body, part.headers)


def _scan_har(scan: _Scan, entry: Entry) -> None:
    """An entry of a HAR: headers and cookie lists, its URL as written, the bodies."""
    q, r = entry.interaction.request, entry.interaction.response
    for side, part in (("request", q), ("response", r)):
        _headers(scan, side, part.headers)
        for cookie_side, name, value in entry.cookies:
            if cookie_side == side and _unredacted(value):
                scan.add(f"{side} cookie {name}", "cookie", value)
    scan.text("request url", entry.url)
    _query(scan, entry.interaction)
    scan.body("request body", q.body, q.headers)
    scan.body("response body", r.body, r.headers)


def _scan_entries(path: Path, entries: Iterable[Entry], config: RedactionConfig,
                  scan_entry: Callable[[_Scan, Entry], None]) -> Iterator[Finding]:
    for entry in entries:
        scan = _Scan(str(path), entry.number, config)
        scan_entry(scan, entry)
        yield from scan.findings


def _scan_text(path: Path, config: RedactionConfig) -> Iterator[Finding]:
    """Any other file (other YAML, logs): credential shapes and `name: value` lines."""
    text = path.read_bytes().decode("utf-8", "replace")
    names = config.headers | config.fields
    for n, line in enumerate(text.splitlines(), 1):
        scan = _Scan(str(path), None, config)
        scan.text(f"line {n}", line)
        key, sep, value = line.strip().lstrip("- ").partition(":")
        key = key.strip().strip("'\"")
        if sep and key.lower() in names:
            value = value.strip().lstrip("[").rstrip("]").strip().strip("'\"")
            if key.lower().endswith("authorization"):
                value = value.split(None, 1)[-1] if value else value
            if value and _unredacted(value):
                scan.add(f"line {n} {key}", key.lower(), value)
        yield from scan.findings


def scan_path(path: Path, config: RedactionConfig | None = None) -> Iterator[Finding]:
    """Findings in a cassette, HAR, VCR.py YAML or other file, or every such file under a
    directory. Raises CassetteError for an unreadable cassette."""
    cfg = config or RedactionConfig()
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and not child.name.startswith(".") and \
                    child.suffix in (SUFFIX, ".har", ".yaml", ".yml", ".json"):
                yield from scan_path(child, cfg)
        return
    if not path.exists():
        raise CassetteError(f"{path} does not exist: pass cassette files or directories")
    if path.suffix == SUFFIX:
        yield from _scan_cassette(path, cfg)
        return
    formats = {".har": (read_har, _scan_har), ".yaml": (read_vcr, _scan_vcr),
               ".yml": (read_vcr, _scan_vcr), ".json": (read_vcr, _scan_vcr)}
    if path.suffix in formats:
        read, scan_entry = formats[path.suffix]
        try:
            entries = read(path)
        except CassetteError:  # not of that format: scanned as text
            pass
        else:
            yield from _scan_entries(path, entries, cfg, scan_entry)
            return
    yield from _scan_text(path, cfg)
