"""What a secret looks like: names of fields that hold secrets and shapes of credentials.

Shared by redaction (which replaces them before anything is written) and the scanner
(which proves that nothing was left).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "DEFAULT_SECRET_FIELDS",
    "DEFAULT_SECRET_HEADERS",
    "PLACEHOLDER",
    "VALUE_PATTERNS",
    "ValuePattern",
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

PLACEHOLDER = re.compile(r"<redacted:([a-z0-9_.\-]+):([0-9a-f]{6})>")
"""``<redacted:RULE:HASH>``: what a secret becomes. HASH is a keyed hash of the value."""


@dataclass(frozen=True, slots=True)
class ValuePattern:
    """A credential shape recognised anywhere in text."""

    name: str
    regex: re.Pattern[str]
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
