"""The secret scanner (issue 5): what it finds in an interaction, in cassettes, VCR.py
YAML and HAR files, and how it names each finding (file, interaction, location, rule)."""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path

import pytest
from vcr.serializers import yamlserializer

from replayproxy.cassette.store import save_cassette
from replayproxy.errors import CassetteError
from replayproxy.model import Interaction
from replayproxy.redaction.redactor import Redactor
from replayproxy.redaction.scan import Finding, scan_interaction, scan_path
from replayproxy.redaction.secrets import VALUE_PATTERNS, ValuePattern
from tests.factories import interaction, request, response

STRIPE = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
AWS = "AKIAIOSFODNN7EXAMPLE"
BEARER = "bearer-token-0123456789"
JSON = (("Content-Type", "application/json"),)
FORM = (("Content-Type", "application/x-www-form-urlencoded"),)


def where(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.location, f.rule) for f in findings]


# -- one interaction ---------------------------------------------------------------------


def test_every_kind_of_leftover_secret_is_found_with_location_and_rule():
    it = interaction(
        request("POST", f"/v1/users/{AWS}?page=1&token=query-token-123",
                headers=[("Authorization", f"Bearer {BEARER}"), ("Cookie", "sid=cookie-abc-123"),
                         ("X-Api-Key", "header-key-123")],
                json={"user": {"password": "hunter22"}, "n": 1}),
        response(200, f"client_secret=cs-123456&note={STRIPE}",
                 headers=[("Set-Cookie", "session=set-cookie-123; Path=/"), *FORM]),
    )
    assert where(scan_interaction(it)) == [
        ("request path", "aws-access-key"),
        ("request query token", "token"),
        ("request header Authorization", "authorization"),
        ("request header Cookie", "cookie"),
        ("request header X-Api-Key", "x-api-key"),
        ("response header Set-Cookie", "set-cookie"),
        ("request body $.user.password", "password"),
        ("response body field client_secret", "client_secret"),
        ("response body", "stripe-key"),
    ]


def test_redacted_and_harmless_values_are_clean():
    it = interaction(
        request("POST", "/v1/things?token=<redacted:token:0a1b2c>&q=x",
                headers=[("Authorization", "Bearer <redacted:authorization:0a1b2c>"),
                         ("Cookie", "sid=<redacted:cookie:0a1b2c>; b=<redacted:cookie:3d4e5f>"),
                         ("X-Api-Key", "[FILTERED]")],
                json={"password": "", "token": None, "secret": "***",
                      "client_secret": "<redacted:client_secret:0a1b2c>",
                      "api_key": "REDACTED", "refresh_token": True}),
        response(headers=[("Set-Cookie", "session=<redacted:set-cookie:0a1b2c>; Path=/; Secure")]),
    )
    assert scan_interaction(it) == []


def test_whatever_redaction_produced_scans_clean():
    it = interaction(
        request("POST", "/v1/things?api_key=query-key-123456",
                headers=[("Authorization", f"Basic {BEARER}"), ("Cookie", "a=1; b=2"), *FORM],
                body=f"client_secret=abc&refresh_token=rt-0123456&x={AWS}"),
        response(200, json={"id_token": "x.y.z", "k": STRIPE}))
    assert len(scan_interaction(it)) == 9
    assert scan_interaction(Redactor(key=b"k").redact(it)) == []


def test_excerpt_is_masked():
    [finding] = scan_interaction(interaction(
        request("POST", "/v1/things", headers=[("X-Api-Key", "supersecretvalue-0001")])))
    assert finding.excerpt == "supe… 21 chars"
    assert "supersecretvalue" not in finding.describe()
    [short] = scan_interaction(interaction(
        request("POST", "/v1/things", json={"password": "abc"})))
    assert short.excerpt == "3 chars"


def test_undecodable_body_is_scanned_as_bytes():
    raw = b"\x1f\x8b not really gzip \xff\xfe " + AWS.encode() + b" \x00"
    it = interaction(request("POST", "/v1/things", headers=[("Content-Encoding", "gzip")],
                             body=raw))
    assert where(scan_interaction(it)) == [("request body", "aws-access-key")]


def test_compressed_body_is_decoded_before_scanning():
    raw = gzip.compress(json.dumps({"refresh_token": "rt-0123456789"}).encode())
    it = interaction(request("POST", "/v1/things"),
                     response(200, raw, headers=[("Content-Encoding", "gzip"), *JSON]))
    assert where(scan_interaction(it)) == [("response body $.refresh_token", "refresh_token")]


# -- cassette files ----------------------------------------------------------------------


def _dirty_interactions() -> list[Interaction]:
    clean = interaction(request("POST", "/v1/clean", headers=[("Accept", "application/json")]),
                        response(200, json={"ok": True}))
    dirty = interaction(request("POST", "/v1/login",
                                headers=[("Authorization", f"Bearer {BEARER}")],
                                json={"user": "bob", "password": "hunter22"}),
                        response(200, json={"key": STRIPE}))
    return [clean, dirty]


def test_scan_path_on_a_dirty_cassette(tmp_path):
    path = tmp_path / "dirty.cassette"
    save_cassette(path, _dirty_interactions())
    findings = list(scan_path(path))
    assert [(f.file, f.interaction, f.location, f.rule) for f in findings] == [
        (str(path), 2, "request header Authorization", "authorization"),
        (str(path), 2, "request body $.password", "password"),
        (str(path), 2, "response body", "stripe-key"),
    ]
    assert findings[0].describe() == \
        f"{path}: #2 request header Authorization: authorization (bear… 23 chars)"


def test_scan_path_on_a_clean_cassette(tmp_path):
    path = tmp_path / "clean.cassette"
    redactor = Redactor(key=b"k")
    save_cassette(path, [redactor.redact(it) for it in _dirty_interactions()])
    assert list(scan_path(path)) == []


def test_scan_path_on_a_missing_or_corrupt_file(tmp_path):
    with pytest.raises(CassetteError, match="does not exist"):
        list(scan_path(tmp_path / "nope.cassette"))
    (tmp_path / "bad.cassette").write_bytes(b"\xc1 not msgpack")
    with pytest.raises(CassetteError):
        list(scan_path(tmp_path / "bad.cassette"))


# -- VCR.py YAML ---------------------------------------------------------------------------


def vcr_yaml(*, authorization: str, cookie: str, api_key: str, password: str,
             token: str, set_cookie: str) -> str:
    """A cassette exactly as VCR.py writes it (its own serializer: headers as lists,
    a gzip body as !!binary)."""
    return yamlserializer.serialize({"version": 1, "interactions": [
        {"request": {"method": "GET", "uri": "https://api.example.com/v1/me", "body": None,
                     "headers": {"Accept": ["*/*"]}},
         "response": {"status": {"code": 200, "message": "OK"},
                      "headers": {"Content-Type": ["application/json"]},
                      "body": {"string": '{"ok": true}'}}},
        {"request": {
            "method": "POST", "uri": f"https://api.example.com/v1/login?api_key={api_key}&x=1",
            "body": json.dumps({"user": "bob", "password": password}),
            "headers": {"Authorization": [authorization], "Cookie": [cookie],
                        "Content-Type": ["application/json"]}},
         "response": {"status": {"code": 200, "message": "OK"},
                      "headers": {"Content-Encoding": ["gzip"], "Set-Cookie": [set_cookie],
                                  "Content-Type": ["application/json"]},
                      "body": {"string": gzip.compress(json.dumps(
                          {"access_token": token, "expires_in": 3600}).encode())}}},
    ]})


def test_vcr_yaml_dirty(tmp_path):
    path = tmp_path / "vcr_cassette.yaml"
    path.write_text(vcr_yaml(authorization=f"Bearer {BEARER}", cookie="sid=cookie-123456",
                             api_key="query-key-123456", password="hunter22",
                             token="access-token-0123456", set_cookie="s=set-123456; Path=/"))
    findings = list(scan_path(path))
    assert {f.file for f in findings} == {str(path)}
    assert {f.interaction for f in findings} == {2}
    assert sorted(where(findings)) == sorted([
        ("request query api_key", "api_key"),
        ("request header Authorization", "authorization"),
        ("request header Cookie", "cookie"),
        ("request body $.password", "password"),
        ("response header Set-Cookie", "set-cookie"),
        ("response body $.access_token", "access_token"),  # inside a gzip !!binary body
    ])


def test_vcr_yaml_clean(tmp_path):
    path = tmp_path / "vcr_cassette.yml"
    path.write_text(vcr_yaml(authorization="Bearer <redacted:authorization:0a1b2c>",
                             cookie="sid=<redacted:cookie:0a1b2c>", api_key="DUMMY",
                             password="<redacted:password:0a1b2c>", token="[FILTERED]",
                             set_cookie="s=<redacted:set-cookie:0a1b2c>; Path=/"))
    assert list(scan_path(path)) == []


def test_vcr_yaml_credential_shapes_by_line(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(f"settings:\n  stripe: {STRIPE}\n  region: eu\n  password: hunter22\n")
    assert [(f.interaction, f.location, f.rule) for f in scan_path(path)] == [
        (None, "line 2", "stripe-key"), (None, "line 4 password", "password")]


# -- HAR -----------------------------------------------------------------------------------


def har(*, authorization: str, api_key: str, secret: str, content: bytes, cookie: str,
        url_key: str) -> str:
    return json.dumps({"log": {"version": "1.2", "creator": {"name": "test"}, "entries": [
        {"request": {"method": "GET", "url": "https://api.example.com/v1/ok", "headers": [],
                     "queryString": [], "cookies": []},
         "response": {"status": 200, "headers": [],
                      "content": {"mimeType": "text/plain", "text": "fine"}}},
        {"request": {
            "method": "POST", "url": f"https://api.example.com/v1/keys/{url_key}?api_key={api_key}",
            "headers": [{"name": "Authorization", "value": authorization}],
            "queryString": [{"name": "api_key", "value": api_key}],
            "cookies": [{"name": "sid", "value": cookie}],
            "postData": {"mimeType": "application/x-www-form-urlencoded",
                         "text": f"grant_type=client_credentials&client_secret={secret}"}},
         "response": {"status": 200, "headers": [{"name": "Content-Type",
                                                  "value": "application/json"}],
                      "content": {"mimeType": "application/json", "encoding": "base64",
                                  "text": base64.b64encode(content).decode()}}},
    ]}})


def test_har_dirty_with_base64_content(tmp_path):
    path = tmp_path / "session.har"
    path.write_text(har(authorization=f"Bearer {BEARER}", api_key="query-key-123456",
                        secret="cs-0123456", cookie="cookie-123456", url_key=AWS,
                        content=json.dumps({"refresh_token": "rt-0123456",
                                            "note": STRIPE}).encode()))
    findings = list(scan_path(path))
    assert {(f.file, f.interaction) for f in findings} == {(str(path), 2)}
    assert sorted(where(findings)) == sorted([
        ("request header Authorization", "authorization"),
        ("request cookie sid", "cookie"),
        ("request query api_key", "api_key"),
        ("request url", "aws-access-key"),
        ("request body field client_secret", "client_secret"),
        ("response body $.refresh_token", "refresh_token"),
        ("response body", "stripe-key"),
    ])


def test_har_clean(tmp_path):
    path = tmp_path / "session.har"
    path.write_text(har(authorization="Bearer <redacted:authorization:0a1b2c>",
                        api_key="<redacted:api_key:0a1b2c>", secret="<redacted:x:0a1b2c>",
                        cookie="<redacted:cookie:0a1b2c>", url_key="key-1",
                        content=b'{"refresh_token": "<redacted:refresh_token:0a1b2c>"}'))
    assert list(scan_path(path)) == []


# -- directories ---------------------------------------------------------------------------


def test_scan_a_directory(tmp_path):
    save_cassette(tmp_path / "a.cassette", _dirty_interactions())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.har").write_text(har(
        authorization=f"Bearer {BEARER}", api_key="k", secret="s", cookie="", url_key="x",
        content=b"{}"))
    (tmp_path / "clean.yaml").write_text("a: 1\n")
    (tmp_path / "notes.txt").write_text(STRIPE)  # not a cassette, HAR or YAML: skipped
    (tmp_path / ".a.cassette.123.journal").write_bytes(STRIPE.encode())  # hidden: skipped
    files = {Path(f.file).name for f in scan_path(tmp_path)}
    assert files == {"a.cassette", "b.har"}


_SAMPLES = {
    "private-key": "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----",
    "stripe-key": "sk_live_" + "a1B2c3D4e5F6g7",
    "stripe-webhook-secret": "whsec_" + "a1B2c3D4e5F6g7H8i9",
    "aws-access-key": "AKIA" + "ABCDEFGHIJKLMNOP",
    "github-token": "ghp_" + "a" * 36,
    "gitlab-token": "glpat-" + "a" * 20,
    "slack-token": "xoxb-" + "1" * 12,
    "google-api-key": "AIza" + "b" * 35,
    "sendgrid-key": "SG." + "c" * 16 + "." + "d" * 16,
    "twilio-key": "SK" + "e" * 32,
    "openai-key": "sk-" + "f" * 32,
    "jwt": "eyJ" + "g" * 8 + ".eyJ" + "h" * 8 + "." + "i" * 8,
}


@pytest.mark.parametrize("pattern", VALUE_PATTERNS, ids=lambda p: p.name)
def test_every_match_of_a_default_pattern_contains_one_of_its_hints(pattern):
    sample = _SAMPLES[pattern.name]
    text = f"some text {sample} more text"
    assert [m.group() for m in pattern.finditer(text)] == [sample]
    assert pattern.hints and any(h in sample for h in pattern.hints)


def test_a_pattern_is_not_run_when_no_hint_occurs():
    class Exploding:
        def finditer(self, text):
            raise AssertionError("the regex ran")

    pattern = ValuePattern("x", Exploding(), ("needle",))  # type: ignore[arg-type]
    assert list(pattern.finditer("hay " * 1000)) == []
    with pytest.raises(AssertionError, match="the regex ran"):
        list(pattern.finditer("hay needle hay"))
    unhinted = ValuePattern("y", re.compile(r"\d+"))
    assert [m.group() for m in unhinted.finditer("a 12 b")] == ["12"]


def test_har_urls_are_scanned_as_written_user_info_and_fragment_included(tmp_path):
    token = "ghp_" + "a" * 36
    path = tmp_path / "s.har"
    path.write_text(json.dumps({"log": {"entries": [{
        "request": {"method": "GET", "url": f"https://{token}@api.example.com/x#{STRIPE}"},
        "response": {"status": 200}}]}}))
    assert sorted(where(scan_path(path))) == [("request url", "github-token"),
                                              ("request url", "stripe-key")]


def test_text_keys_name_a_secret_by_their_last_word(tmp_path):
    path = tmp_path / "settings.yml"
    path.write_text("token_url: https://auth.example.com/token\npassword_policy: strict\n"
                    "DB_PASSWORD: hunter2-db\nslackToken: xyz-123456\n"
                    "api_key: ${API_KEY}\n")
    assert [(f.location, f.rule) for f in scan_path(path)] == [
        ("line 3 DB_PASSWORD", "db_password"), ("line 4 slackToken", "slacktoken")]
