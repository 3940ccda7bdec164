"""Every place a secret hides in real traffic (#16's hostile corpus): redaction replaces
it, and the scanner finds it in an unredacted recording. One row per kind."""

from __future__ import annotations

import json

import pytest

from replayproxy.model import Interaction, Request, Response
from replayproxy.redaction.redactor import RedactionConfig, Redactor
from replayproxy.redaction.scan import scan_interaction
from replayproxy.redaction.secrets import PLACEHOLDER

R = Redactor(key=b"places-key")
SECRET = "s3cr3t-Value-0042"
BOUNDARY = "----form7MA4YWxk"


def _multipart(*fields: tuple[str, str]) -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
             f"{value}\r\n" for name, value in fields]
    return ("".join(parts) + f"--{BOUNDARY}--\r\n").encode()


def _request(headers=(), body=b"", query="") -> Request:
    return Request("POST", "https", "api.example.com", 443, "/v1/login", query,
                   tuple(headers), body)


def _json(doc) -> tuple[tuple[tuple[str, str], ...], bytes]:
    return (("Content-Type", "application/json"),), json.dumps(doc).encode()


CASES = {
    "multipart password": Interaction(_request(
        (("Content-Type", f"multipart/form-data; boundary={BOUNDARY}"),),
        _multipart(("user", "ada"), ("password", SECRET))), Response(200)),
    "multipart short api_key": Interaction(_request(
        (("Content-Type", f"multipart/form-data; boundary={BOUNDARY}"),),
        _multipart(("api_key", "k42"), ("note", "hello"))), Response(200)),
    "Location query": Interaction(_request(), Response(
        302, "Found", (("Location", f"https://app.example.com/cb?access_token={SECRET}&s=1"),))),
    "Link query": Interaction(_request(), Response(200, "OK", (
        ("Link", f'<https://api.example.com/v1/items?page=2&token={SECRET}>; rel="next"'),))),
    "Refresh query": Interaction(_request(), Response(200, "OK", (
        ("Refresh", f"0; url=https://app.example.com/?client_secret={SECRET}"),))),
    "camelCase accessToken": Interaction(_request(), Response(200, "OK", *_json(
        {"accessToken": SECRET, "expiresIn": 3600}))),
    "camelCase clientSecret": Interaction(_request(*_json({"clientSecret": SECRET})),
                                          Response(200)),
    "kebab access-token": Interaction(_request(*_json({"access-token": SECRET})),
                                      Response(200)),
    "SHOUTING ACCESS_TOKEN": Interaction(_request(*_json({"ACCESS_TOKEN": SECRET})),
                                         Response(200)),
    "JSON inside a JSON string": Interaction(_request(), Response(200, "OK", *_json(
        {"payload": json.dumps({"access_token": SECRET, "scope": "read"})}))),
    "short secret inside a JSON string": Interaction(_request(), Response(200, "OK", *_json(
        {"payload": json.dumps({"password": "pw1"})}))),
    "header Token": Interaction(_request((("Token", SECRET),)), Response(200)),
    "header X-Session-Token": Interaction(_request((("X-Session-Token", SECRET),)),
                                          Response(200)),
    "header X-My-Secret": Interaction(_request((("X-My-Secret", SECRET),)), Response(200)),
    "header X-Signature": Interaction(_request(), Response(200, "OK", (
        ("X-Signature", SECRET),))),
    "query camelCase apiKey": Interaction(_request(query=f"apiKey={SECRET}&page=1"),
                                          Response(200)),
}

HIDDEN = {"multipart short api_key": "k42", "short secret inside a JSON string": "pw1"}


def _text(it: Interaction) -> str:
    q, r = it.request, it.response
    return "\n".join([q.path, q.query, *(f"{k}: {v}" for k, v in q.headers + r.headers),
                      q.body.decode(), r.body.decode()])


@pytest.mark.parametrize("kind", list(CASES))
def test_redaction_replaces_it(kind):
    secret = HIDDEN.get(kind, SECRET)
    redacted = R.redact(CASES[kind])
    text = _text(redacted)
    assert secret not in text, text
    assert PLACEHOLDER.search(text), text
    assert scan_interaction(redacted) == [], "the scanner still finds something"


@pytest.mark.parametrize("kind", list(CASES))
def test_the_scanner_finds_it_in_an_unredacted_recording(kind):
    findings = scan_interaction(CASES[kind])
    assert findings, f"the scanner missed {kind}"


@pytest.mark.parametrize("kind", list(CASES))
def test_redacted_json_stays_json(kind):
    redacted = R.redact(CASES[kind])
    for part in (redacted.request, redacted.response):
        ctype = dict((k.lower(), v) for k, v in part.headers).get("content-type", "")
        if "json" in ctype:
            json.loads(part.body)


@pytest.mark.parametrize(("header", "kept"), [
    ("Sec-WebSocket-Key", True), ("Idempotency-Key", True), ("Keep-Alive", True),
    ("Content-Type", True), ("X-Request-Id", True), ("Token", False), ("X-Api-Token", False),
])
def test_header_names_that_say_secret(header, kept):
    it = Interaction(_request(((header, "dGhlIHNhbXBsZSBub25jZQ=="),)), Response(200))
    value = dict(R.redact(it).request.headers)[header]
    assert (value == "dGhlIHNhbXBsZSBub25jZQ==") is kept


def test_the_word_rule_is_off_with_the_defaults():
    bare = Redactor(RedactionConfig(headers=frozenset(), header_words=frozenset(),
                                    fields=frozenset(), patterns=()), b"k")
    it = CASES["header X-Session-Token"]
    assert bare.redact(it) == it


def test_a_redacted_request_still_matches_its_recording():
    """Redacting the incoming request the same way keeps matching working."""
    it = CASES["camelCase clientSecret"]
    assert R.redact_request(it.request) == R.redact(it).request


def test_defaults_off_in_the_configuration_turns_the_word_rule_off():
    from replayproxy.config import parse_settings

    config = parse_settings({"redact": {"defaults": False}}).redact
    assert config.header_words == frozenset()
    assert not config.secret_header("X-Session-Token")
