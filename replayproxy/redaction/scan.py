"""The secret scanner: proves that cassettes (and VCR.py / HAR files) hold no secrets.

It looks for what redaction should have replaced: values of secret headers, query
parameters, form fields and JSON keys that are not placeholders, and credential shapes
anywhere in text. Used before each interaction is written (fail closed) and by
``replayproxy scan``. VCR.py and HAR files are read into interactions by
``replayproxy.formats`` and scanned as such; any other file (YAML or JSON that is not a
VCR.py cassette, a log) line by line. A file that cannot be read as what its name says
(a corrupt cassette, YAML or JSON that does not parse, a HAR without entries) is reported
as not scanned, never as clean.

The scanner always checks the built-in rules, even when ``[redact] defaults = false``
turned them off for redaction (``RedactionConfig.scanning``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from replayproxy.cassette.store import SUFFIX, load_cassette
from replayproxy.codec import decode_body
from replayproxy.errors import CassetteError
from replayproxy.formats import Entry
from replayproxy.formats.har import read_har
from replayproxy.formats.vcr import read_vcr
from replayproxy.grpc_wire import is_grpc, message_coding, message_text
from replayproxy.model import Headers, Interaction, header_value
from replayproxy.redaction.redactor import RedactionConfig
from replayproxy.redaction.secrets import (
    EVENT_STREAM,
    PLACEHOLDER,
    URL_HEADERS,
    body_text,
    event_stream_json,
    json_documents,
    json_in_string,
    multipart_boundary,
    multipart_fields,
    url_queries,
)

__all__ = ["FileKind", "Finding", "ScanReport", "Skipped", "scan_files", "scan_interaction",
           "scan_path"]

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
        if headers is not None and is_grpc(headers):  # the strings in the messages
            strings = message_text(data, message_coding(headers))
            if strings:
                self.text(location, body_text(strings))
        text = body_text(data)
        ctype = (header_value(headers, "content-type") or "").lower() if headers else ""
        if "json" in ctype or text.lstrip()[:1] in ("{", "["):
            for doc in json_documents(text):
                self.json(location, doc)
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
                     file: str = "", number: int | None = None,
                     also: Callable[[_Scan], None] | None = None) -> list[Finding]:
    """Secrets left in ``it`` (an empty list when it is clean); ``also`` scans what is
    not in ``it`` (a big body kept in a file, see ``redaction.big``)."""
    cfg = (config or RedactionConfig()).scanning().for_request(it.request)
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
    if also is not None:
        also(scan)
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


_KEY_VALUE = re.compile(r"""^\s*(?:-\s+)?["']?([A-Za-z0-9_.\-]+)["']?\s*[:=]\s*(.*)$""")
"""``key: value`` (YAML), ``- KEY=value`` (a compose file's environment list),
``"key": "value"`` (JSON), ``KEY=value`` (an env file)."""
_SECRET_WORDS = frozenset({"password", "passwd", "pass", "pwd", "secret", "token",
                           "apikey", "credential", "credentials"})
"""The last word of a key of a text file that names a secret (``POSTGRES_PASSWORD``,
``slackToken``; not ``token_url`` or ``password_policy``)."""
_KEY_WORDS = re.compile(r"[a-z0-9]+")


def _secret_key(key: str, config: RedactionConfig) -> bool:
    words = _KEY_WORDS.findall(re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).lower())
    return key.lower() in config.headers or config.secret_field(key) or \
        bool(words) and words[-1] in _SECRET_WORDS


def _scan_text(path: Path, config: RedactionConfig) -> Iterator[Finding]:
    """Any other file (other YAML or JSON, logs): credential shapes and ``key: value``
    lines whose key names a secret."""
    text = path.read_bytes().decode("utf-8", "replace")
    for n, line in enumerate(text.splitlines(), 1):
        scan = _Scan(str(path), None, config)
        scan.text(f"line {n}", line)
        m = _KEY_VALUE.match(line)
        if m and _secret_key(m.group(1), config):
            key = m.group(1)
            value = m.group(2).strip().rstrip(",").lstrip("[").rstrip("]").strip()
            value = value.strip("'\"")
            if key.lower().endswith("authorization"):
                value = value.split(None, 1)[-1] if value else value
            if value and value not in ("|", ">", "{", "[") and _unredacted(value) \
                    and not value.startswith(("${", "$(", "{{")):
                scan.add(f"line {n} {key}", key.lower(), value)
        yield from scan.findings


class FileKind(StrEnum):
    """What a scanned file was read as; says which command cleans it."""

    CASSETTE = "cassette"
    VCR = "VCR.py cassette"
    HAR = "HAR"
    TEXT = "text"

    def fix(self) -> str:
        """How to clean a file of this kind."""
        return {
            FileKind.CASSETTE: "redact a cassette with `replayproxy redact -c NAME` (add a "
                               "rule to [tool.replayproxy.redact] for what it misses)",
            FileKind.VCR: "import a VCR.py cassette with `replayproxy import vcr FILE -c "
                          "NAME`, which redacts it on the way in, and delete FILE",
            FileKind.HAR: "import a HAR with `replayproxy import har FILE -c NAME`, which "
                          "redacts it on the way in, and delete FILE",
            FileKind.TEXT: "remove the secrets from other files by hand (read them from "
                           "the environment instead)",
        }[self]


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file the scanner could not read as what its name says."""

    file: str
    why: str

    def describe(self) -> str:
        """One line for people."""
        return f"{self.file}: not scanned: {self.why}"


@dataclass(slots=True)
class ScanReport:
    """What ``scan_files`` did: findings, each file scanned and as what, and the files
    it could not scan."""

    findings: list[Finding] = field(default_factory=list)
    scanned: dict[str, FileKind] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)

    def kinds_with_findings(self) -> list[FileKind]:
        """The kinds of the files with findings, in ``FileKind`` order."""
        found = {self.scanned[f.file] for f in self.findings if f.file in self.scanned}
        return [k for k in FileKind if k in found]


_SCANNED = (SUFFIX, ".har", ".yaml", ".yml", ".json")
"""The suffixes a directory is searched for."""


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and not child.name.startswith(".") and \
                    child.suffix in _SCANNED:
                yield child
    else:
        yield path


def _open(path: Path, cfg: RedactionConfig) -> tuple[FileKind, Iterator[Finding]]:
    """What ``path`` is and its findings (lazily, for a cassette). Raises CassetteError
    (``syntax`` True) when it cannot be read as what its name says."""
    if not path.exists():
        raise CassetteError(f"{path} does not exist: pass cassette files or directories")
    if path.suffix == SUFFIX:
        return FileKind.CASSETTE, _scan_cassette(path, cfg)
    formats = {".har": (FileKind.HAR, read_har, _scan_har),
               ".yaml": (FileKind.VCR, read_vcr, _scan_vcr),
               ".yml": (FileKind.VCR, read_vcr, _scan_vcr),
               ".json": (FileKind.VCR, read_vcr, _scan_vcr)}
    if path.suffix in formats:
        kind, read, scan_entry = formats[path.suffix]
        try:
            entries = read(path)
        except CassetteError as e:
            # a HAR must be one; YAML or JSON that parses is scanned as text
            if e.fields.get("syntax") or kind is FileKind.HAR:
                raise
        else:
            return kind, _scan_entries(path, entries, cfg, scan_entry)
    try:
        return FileKind.TEXT, iter(list(_scan_text(path, cfg)))
    except OSError as e:
        raise CassetteError(f"cannot read {path}: {e.strerror}", syntax=True) from None


def scan_path(path: Path, config: RedactionConfig | None = None) -> Iterator[Finding]:
    """Findings in a cassette, HAR, VCR.py YAML or other file, or every such file under a
    directory. Raises CassetteError for a file it cannot read as what its name says."""
    cfg = (config or RedactionConfig()).scanning()
    for file in _files(path):
        yield from _open(file, cfg)[1]


def scan_files(paths: Iterable[Path], config: RedactionConfig | None = None) -> ScanReport:
    """Scan every file of ``paths`` (files or directories): a file that cannot be read
    as what its name says is listed in ``skipped`` with why, never counted clean."""
    cfg = (config or RedactionConfig()).scanning()
    report = ScanReport()
    for path in paths:
        if not path.exists():
            report.skipped.append(Skipped(str(path), "it does not exist"))
            continue
        for file in _files(path):
            try:
                kind, findings = _open(file, cfg)
                found = list(findings)
            except CassetteError as e:
                why = str(e)
                for prefix in (f"cassette file {file} ", f"cassette {file} ", f"{file} "):
                    why = why.removeprefix(prefix)
                report.skipped.append(Skipped(str(file), why))
                continue
            except OSError as e:
                report.skipped.append(Skipped(str(file), f"cannot read it: {e.strerror}"))
                continue
            report.scanned[str(file)] = kind
            report.findings.extend(found)
    return report
