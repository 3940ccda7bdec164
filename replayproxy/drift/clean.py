"""Keeping live secrets out of everything the drift check writes and prints.

A live answer can hold secrets a recording never had: the sandbox issues a fresh
``access_token``, sets a session cookie, redirects to ``…?access_token=…``, or echoes the
credential the check put in. ``Scrubber`` runs every live response through the same
``Redactor`` as a recording (the configuration's ``[redact]`` rules and this machine's
placeholder key), together with the request that was sent, so the real credential
values in it are known, and with each credential the check injected known as a secret
wherever it appears (plain, percent-encoded, JSON-escaped). It does so *before* the
response is compared, so findings show placeholders on both sides and every report
and the history database read clean data; a placeholder that changes between the two
live calls is still volatile noise, a key that disappears is still breaking.

Texts (error messages, the URL a request was sent to) go through the same redaction,
read as a URL-bearing header value would be. Last, whatever still has a credential
shape the scanner knows (provider keys, JWTs, private keys...) is masked to its first
four characters and its length (``sk_t… 32 chars``), as ``replayproxy scan`` shows it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from urllib.parse import quote, quote_plus

from replayproxy.drift.findings import Finding, Scalar
from replayproxy.model import Interaction, Request, Response
from replayproxy.redaction.redactor import Redactor
from replayproxy.redaction.secrets import PLACEHOLDER, VALUE_PATTERNS, ValuePattern

__all__ = ["Scrubber", "mask", "mask_shapes"]

_PROBE = Request("GET", "http", "drift.invalid", 80, "/")
"""The request a text is redacted with: it holds nothing."""
_MIN_TEXT = 4
"""Injected credentials at least this long are also replaced in texts directly."""


def mask(value: str) -> str:
    """``sk_t… 32 chars``: a secret as the scanner shows it (first 4 characters, length)."""
    value = value.strip()
    return f"{value[:4]}… {len(value)} chars" if len(value) > 4 else f"{len(value)} chars"


def mask_shapes(text: str, patterns: Iterable[ValuePattern] = VALUE_PATTERNS) -> str:
    """``text`` with every credential shape of ``patterns`` masked (``mask``)."""
    for pattern in patterns:
        if any(True for _ in pattern.finditer(text)):
            text = pattern.regex.sub(
                lambda m: m.group() if PLACEHOLDER.fullmatch(m.group()) else mask(m.group()),
                text)
    return text


def _variants(value: str) -> list[str]:
    """How a value can appear: plain, percent-encoded, form-encoded, JSON-escaped."""
    out = [value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1],
           json.dumps(value, ensure_ascii=False)[1:-1]]
    return sorted(dict.fromkeys(v for v in out if v), key=len, reverse=True)


def _credential_pattern(rule: str, value: str) -> ValuePattern:
    """A redaction pattern that finds one injected credential in any of its forms; named
    by the rule of the placeholder it replaced, so it is redacted back to that rule."""
    variants = _variants(value)
    regex = re.compile("|".join(re.escape(v) for v in variants))
    return ValuePattern(rule, regex, tuple(variants))


class Scrubber:
    """Redacts what the drift check got from the live side; see the module docstring.

    ``redactor``: the recording's (None: the built-in rules with an empty key);
    ``credentials``: (rule, value) of each credential put into the request.
    """

    def __init__(self, redactor: Redactor | None = None,
                 credentials: Sequence[tuple[str, str]] = ()) -> None:
        self.base = redactor or Redactor()
        self.credentials = tuple((rule, value) for rule, value in credentials if value.strip())
        extra = tuple(_credential_pattern(rule, value) for rule, value in self.credentials)
        config = self.base.config
        self.redactor = Redactor(replace(config, patterns=(*config.patterns, *extra)),
                                 self.base.key) if extra else self.base
        self._shapes = (*VALUE_PATTERNS, *(p for p in config.patterns if p not in VALUE_PATTERNS))
        self._direct = sorted(((variant, self.base.placeholder(rule, value))
                               for rule, value in self.credentials if len(value) >= _MIN_TEXT
                               for variant in _variants(value)),
                              key=lambda pair: -len(pair[0]))

    def knowing(self, credentials: Sequence[tuple[str, str]]) -> Scrubber:
        """This scrubber with ``credentials`` known too (those of one planned request)."""
        if not credentials:
            return self
        return Scrubber(self.base, (*self.credentials, *credentials))

    def interaction(self, request: Request, response: Response) -> tuple[Request, Response]:
        """``request`` and ``response`` redacted together, as recording would."""
        it = self.redactor.redact(Interaction(request, response))
        return it.request, it.response

    def response(self, request: Request, response: Response) -> Response:
        """``response`` (answering ``request``) redacted."""
        return self.interaction(request, response)[1]

    def text(self, text: str) -> str:
        """A message or URL with its secrets replaced by placeholders, or masked."""
        if not text:
            return text
        for variant, placeholder in self._direct:
            text = text.replace(variant, placeholder)
        probe = Response(0, "", (("Location", text),))
        redacted = self.redactor.redact(Interaction(_PROBE, probe)).response.headers[0][1]
        return mask_shapes(redacted, self._shapes)

    def value(self, value: Scalar) -> Scalar:
        """A finding's value: a string cleaned like ``text``, anything else as it is."""
        return self.text(value) if isinstance(value, str) else value

    def finding(self, f: Finding) -> Finding:
        """``f`` with its location and both values cleaned."""
        return replace(f, location=self.text(f.location), recorded=self.value(f.recorded),
                       live=self.value(f.live))
