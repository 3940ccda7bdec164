"""Redaction (issue 5): every default rule, stable keyed placeholders, secrets replaced
everywhere in an interaction, compressed and undecodable bodies, user rules from the
configuration, matching of redacted requests, fail-closed recording, and a property
test over random JSON documents with planted secrets."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import re
import tempfile
import zlib
from pathlib import Path
from urllib.parse import parse_qsl, quote, quote_plus, urlencode

import brotli
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from replayproxy.cassette.store import CassetteFile, cassette_path, load_cassette, save_cassette
from replayproxy.codec import decode_body
from replayproxy.config import parse_settings
from replayproxy.decision.session import CassetteSession, Replay, Unmatched
from replayproxy.matching.index import ReplayIndex
from replayproxy.matching.rules import MatchConfig, MatchRule, extend_rule
from replayproxy.model import Interaction, RecordMode, Request, Response, header_value
from replayproxy.redaction.redactor import RedactionConfig, Redactor, load_key
from replayproxy.redaction.scan import scan_interaction
from replayproxy.redaction.secrets import DEFAULT_SECRET_FIELDS, PLACEHOLDER, VALUE_PATTERNS

KEY = b"unit-test-redaction-key"
R = Redactor(key=KEY)

JSON = (("Content-Type", "application/json"),)
FORM = (("Content-Type", "application/x-www-form-urlencoded"),)
TEXT = (("Content-Type", "text/plain; charset=utf-8"),)

# credential shapes (made up, but of the real formats)
STRIPE = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
AWS = "AKIAIOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
       ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
PRIVATE_KEY = ("-----BEGIN RSA PRIVATE KEY-----\n"
               "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
               "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
               "-----END RSA PRIVATE KEY-----")


def make(*, method="POST", path="/v1/things", query="", headers=(), body=b"",
         status=200, r_headers=(), r_body=b"", host="api.example.com") -> Interaction:
    return Interaction(
        Request(method, "https", host, 443, path, query, tuple(headers), body),
        Response(status, "OK", tuple(r_headers), r_body),
        recorded_at=1_767_225_600.0, ttfb=0.01, duration=0.02,
    )


def ph(rule: str, value: str, key: bytes = KEY) -> str:
    """The placeholder the module docstring promises: HMAC-SHA256, first 6 hex digits."""
    digest = hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:6]
    return f"<redacted:{rule}:{digest}>"


def everything(it: Interaction) -> bytes:
    """Every byte that would be written for ``it``: the cassette file, plus the bodies
    decoded (a gzip body hides its text from a plain byte search)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.cassette"
        save_cassette(path, [it])
        data = path.read_bytes()
    for body, headers in ((it.request.body, it.request.headers),
                          (it.response.body, it.response.headers)):
        decoded = decode_body(body, headers)
        if decoded is not None:
            data += b"\n" + decoded
    return data


def forms(secret: str) -> list[bytes]:
    """The ways a secret can appear in bytes: raw, URL-encoded, JSON-escaped."""
    out = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1],
           json.dumps(secret, ensure_ascii=False)[1:-1]}
    return [s.encode("utf-8") for s in out]


def assert_absent(it: Interaction, *secrets: str) -> None:
    data = everything(it)
    for secret in secrets:
        for form in forms(secret):
            assert form not in data, f"{form!r} left in {data!r}"


def h(it: Interaction, name: str, side: str = "request") -> str | None:
    part = it.request if side == "request" else it.response
    return header_value(part.headers, name)


# -- default rules: headers -------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "Basic", "Token", "bearer"])
def test_authorization_keeps_its_scheme(scheme):
    token = "dXNlcjpwYXNzd29yZA==" if scheme == "Basic" else "tok_live_abcdef123456"
    out = R.redact(make(headers=[("Authorization", f"{scheme} {token}")]))
    assert h(out, "authorization") == f"{scheme} {ph('authorization', token)}"
    assert_absent(out, token)


def test_proxy_authorization_keeps_its_scheme():
    out = R.redact(make(headers=[("Proxy-Authorization", "Basic dXNlcjpwcm94eXB3")]))
    assert h(out, "proxy-authorization") == \
        f"Basic {ph('proxy-authorization', 'dXNlcjpwcm94eXB3')}"


def test_authorization_without_a_scheme_is_redacted_whole():
    out = R.redact(make(headers=[("Authorization", "rawtoken123456")]))
    assert h(out, "authorization") == ph("authorization", "rawtoken123456")


def test_cookie_keeps_names_and_redacts_every_value():
    out = R.redact(make(headers=[("Cookie", "sid=s3ss10n-abcdef; csrftoken=xyz987654; a=1")]))
    assert h(out, "cookie") == (f"sid={ph('cookie', 's3ss10n-abcdef')}; "
                                f"csrftoken={ph('cookie', 'xyz987654')}; a={ph('cookie', '1')}")
    assert_absent(out, "s3ss10n-abcdef", "xyz987654")


def test_set_cookie_keeps_name_and_attributes():
    value = "session=QmFzZTY0c2Vzc2lvbg; Path=/; Expires=Wed, 21 Oct 2026 07:28:00 GMT; " \
            "HttpOnly; Secure; SameSite=Lax"
    out = R.redact(make(r_headers=[("Set-Cookie", value), ("Set-Cookie", "theme=darkmode")]))
    cookies = [v for k, v in out.response.headers if k == "Set-Cookie"]
    assert cookies == [
        f"session={ph('set-cookie', 'QmFzZTY0c2Vzc2lvbg')}; Path=/; "
        "Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly; Secure; SameSite=Lax",
        f"theme={ph('set-cookie', 'darkmode')}",
    ]
    assert_absent(out, "QmFzZTY0c2Vzc2lvbg", "darkmode")


@pytest.mark.parametrize("name", ["X-Api-Key", "x-api-key", "X-API-KEY", "Api-Key",
                                  "X-Auth-Token", "Private-Token", "X-Goog-Api-Key",
                                  "X-Amz-Security-Token", "Stripe-Signature"])
def test_key_headers_are_redacted_whole(name):
    out = R.redact(make(headers=[(name, "key-0123456789abcdef"), ("X-Request-Id", "req-1")]))
    assert h(out, name) == ph(name.lower(), "key-0123456789abcdef")
    assert h(out, "x-request-id") == "req-1"  # other headers untouched
    assert_absent(out, "key-0123456789abcdef")


def test_headers_of_the_response_are_redacted_too():
    out = R.redact(make(r_headers=[("X-Auth-Token", "resp-token-123456")]))
    assert h(out, "x-auth-token", "response") == ph("x-auth-token", "resp-token-123456")


# -- default rules: query, JSON, form ----------------------------------------------------


@pytest.mark.parametrize("name", ["api_key", "apikey", "token", "access_token", "API_KEY"])
def test_query_parameters_named_like_secrets(name):
    out = R.redact(make(method="GET", query=f"page=2&{name}=q-secret-987654&sort=asc"))
    assert out.request.query == \
        f"page=2&{name}={ph(name.lower(), 'q-secret-987654')}&sort=asc"
    assert_absent(out, "q-secret-987654")


def test_short_and_percent_encoded_query_values():
    out = R.redact(make(method="GET", query="token=ab&access_token=a%2Fb%2Bc%3Ddefg&x=1"))
    pairs = dict(parse_qsl(out.request.query))
    assert pairs == {"token": ph("token", "ab"), "access_token": ph("access_token", "a/b+c=defg"),
                     "x": "1"}


@pytest.mark.parametrize("field", ["password", "client_secret", "refresh_token", "id_token",
                                   "Password"])
def test_json_fields_at_any_depth(field):
    doc = {
        field: "top-level-secret-1",
        "user": {"name": "bob", "credentials": {field: "nested-secret-22"}},
        "list": [{"other": 1}, [{field: "in-a-list-333"}]],
        "keep": "visible value",
    }
    out = R.redact(make(headers=JSON, body=json.dumps(doc).encode()))
    got = json.loads(out.request.body)
    rule = field.lower()
    assert got == {
        field: ph(rule, "top-level-secret-1"),
        "user": {"name": "bob", "credentials": {field: ph(rule, "nested-secret-22")}},
        "list": [{"other": 1}, [{field: ph(rule, "in-a-list-333")}]],
        "keep": "visible value",
    }
    assert_absent(out, "top-level-secret-1", "nested-secret-22", "in-a-list-333")


def test_short_json_secret_is_redacted_as_a_whole_string():
    out = R.redact(make(headers=JSON, body=b'{"user": "bob", "password": "pw1"}'))
    assert json.loads(out.request.body) == {"user": "bob", "password": ph("password", "pw1")}


def test_json_body_without_json_content_type_is_still_parsed():
    out = R.redact(make(body=b'  {"client_secret": "cs-no-content-type-1"}'))
    assert json.loads(out.request.body) == {
        "client_secret": ph("client_secret", "cs-no-content-type-1")}


@pytest.mark.parametrize("side", ["request", "response"])
def test_form_fields(side):
    body = (b"grant_type=refresh_token&client_id=app-1&client_secret=cs%2Fabc%2Bdef123"
            b"&refresh_token=rt-0123456789&password=hunter22")
    it = make(headers=FORM, body=body) if side == "request" else \
        make(r_headers=FORM, r_body=body)
    out = R.redact(it)
    got = dict(parse_qsl((out.request if side == "request" else out.response).body.decode()))
    assert got == {
        "grant_type": "refresh_token",
        "client_id": "app-1",
        "client_secret": ph("client_secret", "cs/abc+def123"),
        "refresh_token": ph("refresh_token", "rt-0123456789"),
        "password": ph("password", "hunter22"),
    }
    assert_absent(out, "cs/abc+def123", "rt-0123456789", "hunter22")


def test_short_form_values_are_redacted():
    """A login form with a short sandbox password: the value is redacted in place (not
    left for the scanner, which would refuse the whole interaction)."""
    out = R.redact(make(headers=FORM, body=b"username=bob&password=abc&token=x1"))
    assert dict(parse_qsl(out.request.body.decode())) == {
        "username": "bob", "password": ph("password", "abc"), "token": ph("token", "x1")}
    assert scan_interaction(out) == []


# -- default rules: credential shapes ----------------------------------------------------

SHAPES = [("stripe-key", STRIPE), ("aws-access-key", AWS), ("private-key", PRIVATE_KEY),
          ("jwt", JWT), ("github-token", GITHUB)]


@pytest.mark.parametrize(("rule", "secret"), SHAPES, ids=[s[0] for s in SHAPES])
def test_credential_shapes_in_text_json_path_and_headers(rule, secret):
    text = f"config dump:\n{secret}\n-- end".encode()
    doc = json.dumps({"note": f"key is {secret} (do not share)", "n": 1}).encode()
    it = make(path="/v1/things", headers=[("X-Debug", f"k={secret}")] + list(TEXT), body=text,
              r_headers=JSON, r_body=doc)
    out = R.redact(it)
    placeholder = ph(rule, secret)
    assert out.request.body == f"config dump:\n{placeholder}\n-- end".encode()
    assert json.loads(out.response.body) == {"note": f"key is {placeholder} (do not share)",
                                             "n": 1}
    assert h(out, "x-debug") == f"k={placeholder}"
    assert_absent(out, secret)
    assert scan_interaction(out) == []


def test_credential_shapes_in_the_path_and_query():
    out = R.redact(make(method="GET", path=f"/v1/keys/{STRIPE}", query=f"q={AWS}"))
    assert out.request.path == f"/v1/keys/{ph('stripe-key', STRIPE)}"
    assert out.request.query == f"q={ph('aws-access-key', AWS)}"


def test_ordinary_values_are_left_alone():
    body = json.dumps({"id": "ch_1234567890", "amount": 1200, "token_type": "bearer",
                       "tokens": 3, "description": "sk_test is a prefix"}).encode()
    it = make(method="GET", query="page=2&limit=50", headers=[("Accept", "*/*")] + list(JSON),
              body=body, r_headers=JSON, r_body=body)
    assert R.redact(it) == it


# -- stable placeholders -----------------------------------------------------------------


def test_same_token_same_placeholder_two_tokens_two_placeholders():
    a1 = R.redact(make(headers=[("Authorization", "Bearer token-AAAA-1111")]))
    a2 = R.redact(make(path="/v1/other", headers=[("Authorization", "Bearer token-AAAA-1111")]))
    b = R.redact(make(headers=[("Authorization", "Bearer token-BBBB-2222")]))
    assert h(a1, "authorization") == h(a2, "authorization")
    assert h(a1, "authorization") != h(b, "authorization")
    assert PLACEHOLDER.fullmatch(h(b, "authorization").split(" ", 1)[1])


def test_the_hash_depends_on_the_key():
    it = make(headers=[("X-Api-Key", "same-value-123456")])
    one = h(Redactor(key=b"key one").redact(it), "x-api-key")
    two = h(Redactor(key=b"key two").redact(it), "x-api-key")
    assert one != two
    assert one == ph("x-api-key", "same-value-123456", b"key one")
    assert "same-value-123456" not in one + two


def test_load_key_from_the_environment_or_a_private_file(tmp_path):
    assert load_key(tmp_path / "home", {"REPLAYPROXY_REDACTION_KEY": "from-env"}) == b"from-env"
    assert not (tmp_path / "home").exists()
    first = load_key(tmp_path / "home", {})
    path = tmp_path / "home" / "redaction.key"
    assert path.read_bytes() == first and len(first) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_key(tmp_path / "home", {}) == first  # reused, not regenerated


# -- a secret found anywhere is redacted everywhere ---------------------------------------


def test_token_echoed_in_the_response_body_plain_url_encoded_and_json_escaped():
    token = "abc/def+ghi=jkl012"
    password = 'p\u00e4ss"w\\rd-0042'  # needs JSON escaping (quote, backslash, non-ASCII)
    reply = "\n".join([
        f"auth=Bearer {token}",
        f"url={quote(token, safe='')}",
        f"plus={quote_plus(token)}",
        f"json={json.dumps(password)}",
        f"raw={password}",
        f"pw-url={quote(password, safe='')}",
    ]).encode("utf-8")
    it = make(headers=[("Authorization", f"Bearer {token}")] + list(JSON),
              body=json.dumps({"password": password}).encode(),
              r_headers=TEXT, r_body=reply)
    out = R.redact(it)
    t, p = ph("authorization", token), ph("password", password)
    assert out.response.body.decode() == "\n".join([
        f"auth=Bearer {t}", f"url={t}", f"plus={t}", f'json="{p}"', f"raw={p}", f"pw-url={p}",
    ])
    assert_absent(out, token, password)


def test_echo_of_headers_query_and_cookies_in_a_json_response():
    it = make(method="GET", query="api_key=query-key-55555",
              headers=[("Cookie", "sid=cookie-val-4444"), ("X-Api-Key", "header-key-3333")],
              r_headers=JSON,
              r_body=json.dumps({"args": {"api_key": "query-key-55555"},
                                 "url": "https://api.example.com/?api_key=query-key-55555",
                                 "headers": {"Cookie": "sid=cookie-val-4444",
                                             "X-Api-Key": "header-key-3333"}}).encode())
    out = R.redact(it)
    assert_absent(out, "query-key-55555", "cookie-val-4444", "header-key-3333")
    doc = json.loads(out.response.body)
    assert doc["headers"]["X-Api-Key"] == ph("x-api-key", "header-key-3333")
    assert doc["headers"]["Cookie"] == f"sid={ph('cookie', 'cookie-val-4444')}"


def test_secret_issued_in_the_response_is_redacted_in_the_request_too():
    """An OAuth token endpoint: the response's access_token may also appear elsewhere."""
    it = make(headers=JSON, body=b'{"grant_type": "client_credentials"}',
              r_headers=[("Set-Cookie", "sess=issued-sess-777; Path=/")] + list(JSON),
              r_body=json.dumps({"access_token": "issued-at-888888", "token_type": "bearer",
                                 "echo": "sess=issued-sess-777"}).encode())
    out = R.redact(it)
    assert_absent(out, "issued-at-888888", "issued-sess-777")
    assert json.loads(out.response.body)["token_type"] == "bearer"


# -- compressed and undecodable bodies -------------------------------------------------------

ENCODERS = {
    "gzip": lambda b: gzip.compress(b, mtime=0),
    "deflate": zlib.compress,
    "br": brotli.compress,
    "gzip, br": lambda b: brotli.compress(gzip.compress(b, mtime=0)),
}


@pytest.mark.parametrize("encoding", list(ENCODERS))
@pytest.mark.parametrize("side", ["request", "response"])
def test_compressed_bodies_are_decoded_redacted_and_re_encoded(encoding, side):
    doc = {"refresh_token": "rt-in-compressed-body-1", "note": f"key {STRIPE}", "pad": "x" * 300}
    raw = ENCODERS[encoding](json.dumps(doc).encode())
    headers = [("Content-Type", "application/json"), ("Content-Encoding", encoding),
               ("Content-Length", str(len(raw)))]
    it = make(headers=headers, body=raw) if side == "request" else \
        make(r_headers=headers, r_body=raw)
    out = R.redact(it)
    part = out.request if side == "request" else out.response
    assert header_value(part.headers, "content-encoding") == encoding
    assert header_value(part.headers, "content-length") == str(len(part.body))
    plain = decode_body(part.body, part.headers)
    assert plain is not None, "not re-encoded with the same Content-Encoding"
    assert json.loads(plain) == {"refresh_token": ph("refresh_token", "rt-in-compressed-body-1"),
                                 "note": f"key {ph('stripe-key', STRIPE)}", "pad": "x" * 300}
    assert_absent(out, "rt-in-compressed-body-1", STRIPE)
    assert scan_interaction(out) == []


def test_compressed_body_without_secrets_keeps_its_exact_bytes():
    raw = gzip.compress(b'{"hello": "world"}', mtime=12345)
    it = make(r_headers=[("Content-Encoding", "gzip"), ("Content-Length", str(len(raw)))],
              r_body=raw, headers=[("Authorization", "Bearer only-header-secret")])
    out = R.redact(it)
    assert out.response.body == raw


def test_body_claiming_gzip_that_is_not_gzip_is_handled_as_bytes():
    raw = b"\x1f\x8b\x00\xffbroken " + STRIPE.encode() + b" \x80\x81\xfe\xff tail"
    headers = [("Content-Encoding", "gzip"), ("Content-Length", str(len(raw)))]
    it = make(headers=headers, body=raw)
    assert decode_body(raw, tuple(headers)) is None
    # scanned as bytes: the scanner sees the credential inside the undecodable body
    assert [(f.location, f.rule) for f in scan_interaction(it)] == [("request body", "stripe-key")]
    out = R.redact(it)
    expected = raw.replace(STRIPE.encode(), ph("stripe-key", STRIPE).encode())
    assert out.request.body == expected  # every other byte kept, nothing re-encoded
    assert h(out, "content-encoding") == "gzip"
    assert h(out, "content-length") == str(len(expected))
    assert scan_interaction(out) == []


def test_binary_body_bytes_survive_redaction():
    raw = bytes(range(256)) + b" Bearer-less " + AWS.encode() + b" " + bytes(range(255, -1, -1))
    out = R.redact(make(r_headers=[("Content-Type", "application/octet-stream")], r_body=raw))
    assert out.response.body == raw.replace(AWS.encode(), ph("aws-access-key", AWS).encode())


# -- user rules from the configuration -----------------------------------------------------


def configured(redact: dict, key: bytes = KEY) -> Redactor:
    settings = parse_settings({"redact": redact}, Path("pyproject.toml"))
    return Redactor(settings.redact, key)


def test_config_extra_headers_and_fields():
    r = configured({"headers": ["X-Session"], "fields": ["pin_code"]})
    out = r.redact(make(query="pin_code=11223344",
                        headers=[("X-Session", "sess-abcdef-1"), ("X-Other", "plain")] +
                        list(JSON), body=b'{"pin_code": "99887766", "password": "still-on-1"}'))
    assert h(out, "x-session") == ph("x-session", "sess-abcdef-1")
    assert h(out, "x-other") == "plain"
    assert out.request.query == f"pin_code={ph('pin_code', '11223344')}"
    assert json.loads(out.request.body) == {"pin_code": ph("pin_code", "99887766"),
                                            "password": ph("password", "still-on-1")}


def test_config_keep_headers_keeps_a_header_a_default_would_redact():
    r = configured({"keep_headers": ["X-CSRF-Token", "Cookie"]})
    it = make(headers=[("X-Csrf-Token", "csrf-visible-1"), ("Cookie", "lang=en; ab=test-b"),
                       ("Authorization", "Bearer still-redacted-1")])
    out = r.redact(it)
    assert h(out, "x-csrf-token") == "csrf-visible-1"
    assert h(out, "cookie") == "lang=en; ab=test-b"
    assert h(out, "authorization") == f"Bearer {ph('authorization', 'still-redacted-1')}"
    assert scan_interaction(out, r.config) == []  # the scanner honours keep_headers too
    assert h(R.redact(it), "x-csrf-token") != "csrf-visible-1"  # the default would redact


def test_config_json_paths():
    r = configured({"json": ["$.card.number", "$.items[*].cvc"]})
    doc = {"card": {"number": "4242424242424242", "brand": "visa"},
           "items": [{"cvc": "123", "sku": "a"}, {"cvc": "456", "sku": "b"}], "number": "keep"}
    out = r.redact(make(headers=JSON, body=json.dumps(doc).encode()))
    got = json.loads(out.request.body)
    number = PLACEHOLDER.fullmatch(got["card"]["number"])
    assert number and number.group(1).endswith("number"), got
    assert number.group(0) == ph(number.group(1), "4242424242424242")
    assert got["card"]["brand"] == "visa"
    assert [i["sku"] for i in got["items"]] == ["a", "b"]
    assert all(PLACEHOLDER.fullmatch(i["cvc"]) for i in got["items"]), got
    assert got["number"] == "keep"
    assert_absent(out, "4242424242424242")


def test_config_patterns_plain_and_named():
    r = configured({"patterns": [r"acct_[0-9a-z]{12}", {"name": "order-ref",
                                                         "regex": r"ord-\d{8}"}]})
    body = b"account acct_0123456789ab placed ord-20260101 and ord-20260102"
    out = r.redact(make(headers=TEXT, body=body, r_headers=TEXT, r_body=b"ok ord-20260101"))
    assert out.request.body.decode() == (
        f"account {ph('pattern-1', 'acct_0123456789ab')} placed "
        f"{ph('order-ref', 'ord-20260101')} and {ph('order-ref', 'ord-20260102')}")
    assert out.response.body.decode() == f"ok {ph('order-ref', 'ord-20260101')}"
    assert scan_interaction(out, r.config) == []
    assert [f.rule for f in scan_interaction(make(headers=TEXT, body=body), r.config)] == \
        ["pattern-1", "order-ref", "order-ref"]


def test_config_per_route_rules_apply_only_to_their_route():
    r = configured({"routes": [{"route": "POST api.example.com/oauth/*", "fields": ["code"],
                                "headers": ["X-Device"]}]})
    def request(path):
        return make(path=path, headers=[("X-Device", "dev-12345678")] + list(FORM),
                    body=b"code=authcode-0001&state=s1")

    on_route = r.redact(request("/oauth/token"))
    assert dict(parse_qsl(on_route.request.body.decode())) == {
        "code": ph("code", "authcode-0001"), "state": "s1"}
    assert h(on_route, "x-device") == ph("x-device", "dev-12345678")
    off_route = r.redact(request("/v1/other"))
    assert off_route.request.body == b"code=authcode-0001&state=s1"
    assert h(off_route, "x-device") == "dev-12345678"


def test_config_defaults_false_turns_the_built_in_rules_off():
    r = configured({"defaults": False, "headers": ["X-Only"]})
    it = make(headers=[("Authorization", "Bearer left-alone-1"), ("X-Only", "gone-123456")],
              body=STRIPE.encode())
    out = r.redact(it)
    assert h(out, "authorization") == "Bearer left-alone-1"
    assert h(out, "x-only") == ph("x-only", "gone-123456")
    assert out.request.body == STRIPE.encode()


def test_routes_add_to_the_base_config():
    config = parse_settings({"redact": {"routes": [{"route": "*/v1/*", "patterns": ["zz\\d{6}"]}]}
                             }).redact
    req = make(path="/v1/x").request
    merged = config.for_request(req)
    assert [p.name for p in merged.patterns] == [p.name for p in VALUE_PATTERNS] + ["pattern-1"]
    assert config.for_request(make(path="/v2/x").request).patterns == VALUE_PATTERNS


# -- matching: a redacted field matches any value the same rule redacts --------------------

AUTH_MATCH = MatchConfig(base=extend_rule(MatchRule(), "test",
                                          headers=["authorization", "x-api-key"]))


def secret_request(n: int, *, auth: str | None = None) -> Request:
    return Request(
        "POST", "https", "api.example.com", 443, "/v1/login", f"api_key=query-key-{n}0000&v=1",
        (("Authorization", auth or f"Bearer bearer-token-{n}0000"),
         ("X-Api-Key", f"header-key-{n}0000"), ("Content-Type", "application/json")),
        json.dumps({"user": "bob", "password": f"password-{n}0000",
                    "nested": {"client_secret": f"client-secret-{n}0000"}}).encode())


def record_one(tmp_path: Path, redactor: Redactor, request: Request,
               match: MatchConfig = AUTH_MATCH) -> None:
    session = CassetteSession(tmp_path, "m", RecordMode.ALL, match=match, redactor=redactor)
    assert session.record(Interaction(request, Response(200, "OK", JSON, b'{"ok": true}'))) == []
    session.close()


def test_fresh_tokens_match_the_redacted_recording(tmp_path):
    record_one(tmp_path, R, secret_request(1))
    data = cassette_path(tmp_path, "m").read_bytes()
    for secret in ("bearer-token-10000", "header-key-10000", "query-key-10000",
                   "password-10000", "client-secret-10000"):
        assert secret.encode() not in data
    session = CassetteSession(tmp_path, "m", RecordMode.NONE, match=AUTH_MATCH, redactor=R)
    assert isinstance(session.decide(secret_request(2)), Replay)  # every secret different
    # the redacted headers are compared: a different scheme or a missing header does not match
    assert isinstance(session.decide(secret_request(3, auth="Basic dXNlcjpwYXNz")), Unmatched)
    # and the body still is: a different non-secret field does not match
    other = secret_request(2)
    other = Request(*[getattr(other, f) for f in ("method", "scheme", "host", "port", "path",
                                                  "query", "headers")],
                    body=other.body.replace(b'"bob"', b'"eve"'))
    assert isinstance(session.decide(other), Unmatched)


def test_fresh_tokens_match_with_another_key(tmp_path):
    """CI has another redaction key than the recording laptop: still a match."""
    record_one(tmp_path, Redactor(key=b"laptop"), secret_request(1))
    session = CassetteSession(tmp_path, "m", RecordMode.NONE, match=AUTH_MATCH,
                              redactor=Redactor(key=b"ci"))
    assert isinstance(session.decide(secret_request(2)), Replay)


def test_replay_index_matches_two_different_tokens():
    recorded = R.redact(Interaction(secret_request(1), Response(200)))
    index = ReplayIndex(CassetteFile.from_interactions("x", [recorded]), AUTH_MATCH)
    assert index.match(R.redact_request(secret_request(2))) is not None
    assert index.match(secret_request(1)) is None  # an unredacted request would not


@pytest.mark.parametrize("rule", ["authorization", "x-api-key", "api_key", "password",
                                  "client_secret"])
def test_same_value_requires_the_same_secret(tmp_path, rule):
    redactor = Redactor(RedactionConfig(same_value=frozenset({rule})), KEY)
    record_one(tmp_path, redactor, secret_request(1))
    session = CassetteSession(tmp_path, "m", RecordMode.NONE, match=AUTH_MATCH,
                              redactor=redactor)
    assert isinstance(session.decide(secret_request(2)), Unmatched)
    assert isinstance(session.decide(secret_request(1)), Replay)


def test_same_value_from_the_configuration(tmp_path):
    redactor = configured({"same_value": ["authorization"]})
    record_one(tmp_path, redactor, secret_request(1))
    session = CassetteSession(tmp_path, "m", RecordMode.NONE, match=AUTH_MATCH,
                              redactor=redactor)
    fresh = secret_request(2)  # everything differs from the recording...
    same_auth = Request(*[getattr(fresh, f) for f in ("method", "scheme", "host", "port",
                                                      "path", "query")],
                        headers=(("Authorization", "Bearer bearer-token-10000"),
                                 *fresh.headers[1:]), body=fresh.body)
    assert isinstance(session.decide(fresh), Unmatched)
    assert isinstance(session.decide(same_auth), Replay)  # ...but the authorization may not


def test_gzip_and_form_request_bodies_match_with_fresh_secrets(tmp_path):
    def gz(n):
        raw = gzip.compress(json.dumps({"token": f"gz-token-{n}0000", "q": 1}).encode())
        return Request("POST", "https", "api.example.com", 443, "/v1/upload", "",
                       (("Content-Type", "application/json"), ("Content-Encoding", "gzip")), raw)

    def form(n):
        return Request("POST", "https", "api.example.com", 443, "/oauth/token", "", FORM,
                       f"grant_type=refresh_token&client_secret=cs-{n}0000"
                       f"&refresh_token=rt-{n}0000&password=p{n}".encode())

    session = CassetteSession(tmp_path, "m", RecordMode.ALL, redactor=R)
    for req in (gz(1), form(1)):
        assert session.record(Interaction(req, Response(200))) == []
    session.close()
    replay = CassetteSession(tmp_path, "m", RecordMode.NONE, redactor=R)
    assert isinstance(replay.decide(gz(2)), Replay)
    assert isinstance(replay.decide(form(2)), Replay)


def test_a_placeholder_sent_back_takes_the_rule_of_the_field_it_is_sent_in():
    """On replay a client sends back what a replayed response gave it: a Set-Cookie value,
    an access token. Under the field's own rule (same hash) it matches the recording."""
    it = make(query="access_token=%3Credacted%3Aaccess_token%3A0a1b2c%3E&page=2",
              headers=[("Authorization", "Bearer <redacted:access_token:0a1b2c>"),
                       ("Cookie", "session=<redacted:set-cookie:3d4e5f>; theme=dark"),
                       ("X-Api-Key", "<redacted:api_key:999999>")] + list(FORM),
              body=b"token=<redacted:access_token:0a1b2c>&x=1")
    out = R.redact(it)
    assert h(out, "authorization") == "Bearer <redacted:authorization:0a1b2c>"
    assert h(out, "cookie") == f"session=<redacted:cookie:3d4e5f>; theme={ph('cookie', 'dark')}"
    assert h(out, "x-api-key") == "<redacted:x-api-key:999999>"
    assert out.request.query == "access_token=<redacted:access_token:0a1b2c>&page=2"
    assert out.request.body == b"token=<redacted:token:0a1b2c>&x=1"
    assert R.redact(out) == out


def test_tokens_a_replayed_response_issued_match_when_sent_back(tmp_path):
    match = MatchConfig(base=extend_rule(MatchRule(), "test", headers=["authorization",
                                                                        "cookie"]))
    # even when the very same value is required
    redactor = Redactor(RedactionConfig(same_value=frozenset({"authorization", "cookie"})), KEY)
    login = Request("POST", "https", "auth.example.com", 443, "/oauth/token", "", FORM,
                    b"grant_type=client_credentials&client_secret=cs-0123456789")
    issued = Response(200, "OK", (("Set-Cookie", "session=sess-0123456789; Path=/"), *JSON),
                      json.dumps({"access_token": "at-0123456789", "expires_in": 3600}).encode())

    def use(token: str, session: str) -> Request:
        return Request("POST", "https", "auth.example.com", 443, "/oauth/revoke", "",
                       (("Authorization", f"Bearer {token}"), ("Cookie", f"session={session}"),
                        *FORM), f"token={token}".encode())

    session = CassetteSession(tmp_path, "oauth", RecordMode.ALL, match=match, redactor=redactor)
    assert session.record(Interaction(login, issued)) == []
    assert session.record(Interaction(use("at-0123456789", "sess-0123456789"),
                                      Response(200))) == []
    session.close()

    replay = CassetteSession(tmp_path, "oauth", RecordMode.NONE, match=match, redactor=redactor)
    served = replay.decide(login)
    assert isinstance(served, Replay)
    response = served.served.interaction.response
    token = json.loads(response.body)["access_token"]  # what the client now holds
    cookie = header_value(response.headers, "set-cookie").split(";")[0].split("=", 1)[1]
    assert PLACEHOLDER.fullmatch(token) and PLACEHOLDER.fullmatch(cookie)
    assert isinstance(replay.decide(use(token, cookie)), Replay)


# -- fail closed ---------------------------------------------------------------------------


class MissesCredentialShapes(Redactor):
    """A redactor whose rules are narrower than the scanner's (no value patterns): as if a
    rule had a bug. The session scans with the full configuration, so it must notice."""

    def redact(self, it: Interaction) -> Interaction:
        return Redactor(RedactionConfig(patterns=()), self.key).redact(it)


def _leaky() -> Interaction:
    return make(headers=[("Authorization", "Bearer ok-redacted-1")] + list(TEXT),
                body=f"charge with {STRIPE}".encode())


def test_a_secret_the_redaction_missed_is_not_written(tmp_path):
    session = CassetteSession(tmp_path, "leak", RecordMode.ALL,
                              redactor=MissesCredentialShapes(key=KEY))
    clean = make(path="/v1/clean", headers=[("Authorization", "Bearer ok-redacted-2")])
    assert session.record(clean) == []
    findings = session.record(_leaky())
    assert [(f.location, f.rule) for f in findings] == [("request body", "stripe-key")]
    assert STRIPE not in findings[0].excerpt  # masked in the message
    for journal in tmp_path.glob(".*.journal"):
        assert STRIPE.encode() not in journal.read_bytes()
    summary = session.close()
    assert summary.recorded == 1 and not summary.leaks_written
    assert [(q.path, [f.rule for f in fs]) for q, fs in summary.leaks] == \
        [("/v1/things", ["stripe-key"])]
    cassette = load_cassette(cassette_path(tmp_path, "leak"))
    assert [i.request.path for i in cassette.interactions()] == ["/v1/clean"]
    assert STRIPE.encode() not in cassette_path(tmp_path, "leak").read_bytes()
    assert list(tmp_path.glob(".*.journal")) == []


def test_a_numeric_secret_field_becomes_a_placeholder_string(tmp_path):
    """A number under a secret-named JSON key (a PIN-like sandbox password) becomes a
    placeholder string: the body stays valid JSON, the scanner finds nothing, and the
    same request still matches on replay."""
    body = b'{"user": "bob", "password": 4711, "nested": {"apiKey": 4711987654.5}}'
    redacted = R.redact(make(headers=JSON, body=body))
    doc = json.loads(redacted.request.body)
    assert doc["user"] == "bob"
    assert PLACEHOLDER.fullmatch(doc["password"]) and doc["password"].startswith(
        "<redacted:password:")
    assert PLACEHOLDER.fullmatch(doc["nested"]["apiKey"])
    assert b"4711" not in redacted.request.body
    assert scan_interaction(redacted) == []
    session = CassetteSession(tmp_path, "pin", RecordMode.ALL, redactor=R)
    assert session.record(make(headers=JSON, body=body)) == []
    session.close()
    replay = CassetteSession(tmp_path, "pin", RecordMode.NONE, redactor=R)
    assert isinstance(replay.decide(make(headers=JSON, body=body).request), Replay)


def test_a_secret_redaction_cannot_replace_is_caught_by_the_scanner(tmp_path):
    """A short secret written with a JSON escape ("\\u0061bcd" is "abcd") is found in the
    parsed document but is not in the text as written, so it cannot be replaced: the
    scanner catches it and the interaction is not written (fail closed)."""
    session = CassetteSession(tmp_path, "pin", RecordMode.ALL, redactor=R)
    findings = session.record(make(headers=JSON,
                                   body=b'{"user": "bob", "password": "\\u0061bcd"}'))
    assert [(f.location, f.rule) for f in findings] == [("request body $.password", "password")]
    summary = session.close()
    assert summary.recorded == 0 and len(summary.leaks) == 1
    assert not cassette_path(tmp_path, "pin").exists()
    assert list(tmp_path.iterdir()) == []


def test_on_leak_warn_writes_and_reports(tmp_path):
    redactor = MissesCredentialShapes(RedactionConfig(on_leak="warn"), KEY)
    session = CassetteSession(tmp_path, "warn", RecordMode.ALL, redactor=redactor)
    findings = session.record(_leaky())
    assert [f.rule for f in findings] == ["stripe-key"]
    summary = session.close()
    assert summary.recorded == 1 and summary.leaks_written
    assert len(summary.leaks) == 1
    assert STRIPE.encode() in cassette_path(tmp_path, "warn").read_bytes()


def test_on_leak_from_the_configuration():
    assert configured({"on_leak": "warn"}).config.on_leak == "warn"
    assert configured({}).config.on_leak == "error"


# -- idempotence ---------------------------------------------------------------------------


def test_redaction_is_idempotent_on_every_kind_of_secret():
    raw = gzip.compress(json.dumps({"id_token": JWT, "x": AWS}).encode())
    it = make(
        method="POST", path=f"/v1/{GITHUB}", query="token=ab&api_key=qqqqqq123",
        headers=[("Authorization", "Basic dXNlcjpwYXNz"), ("Cookie", "a=1; b=bbbbbbbbb"),
                 ("X-Api-Key", "kkkkkkk1"), ("Content-Type", "application/json"),
                 ("Content-Encoding", "gzip")],
        body=raw,
        r_headers=[("Set-Cookie", "s=ssssssss1; Path=/")] + list(FORM),
        r_body=f"access_token=zzzzzzzz1&password=pw&echo={quote(AWS)}".encode())
    once = R.redact(it)
    assert R.redact(once) == once
    assert scan_interaction(once) == []
    assert_absent(once, JWT, AWS, GITHUB, "qqqqqq123", "dXNlcjpwYXNz", "bbbbbbbbb",
                  "kkkkkkk1", "ssssssss1", "zzzzzzzz1")


def test_redact_request_is_the_request_half_of_redact():
    req = secret_request(7)
    assert R.redact_request(req) == R.redact(Interaction(req, Response(0))).request


# -- property: random JSON documents with planted secrets ------------------------------------

_SECRET_NAMES = sorted(DEFAULT_SECRET_FIELDS)
_WORDS = {"redacted", *DEFAULT_SECRET_FIELDS, *(p.name for p in VALUE_PATTERNS)}
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

plain_keys = st.text(min_size=1, max_size=12).filter(
    lambda k: k.lower() not in DEFAULT_SECRET_FIELDS)
leaves = st.none() | st.booleans() | st.integers(-10**12, 10**12) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
# a secret: 8 to 40 characters, any printable ones but '<' (which starts a placeholder)
field_secrets = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs"), exclude_characters="<"),
    min_size=8, max_size=40,
).map(str.strip).filter(lambda s: len(s) >= 8)


def _b64ish(n: int) -> st.SearchStrategy[str]:
    return st.text(st.sampled_from(_ALNUM), min_size=n, max_size=n + 20)


credentials = st.one_of(
    _b64ish(16).map(lambda s: "sk_test_" + s),
    st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), min_size=16, max_size=16)
    .map(lambda s: "AKIA" + s),
    _b64ish(36).map(lambda s: "ghp_" + s),
    st.tuples(_b64ish(10), _b64ish(10), _b64ish(10))
    .map(lambda t: f"eyJ{t[0]}.eyJ{t[1]}.{t[2]}"),
    st.lists(_b64ish(40), min_size=1, max_size=3)
    .map(lambda lines: "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) +
         "\n-----END PRIVATE KEY-----"),
)


@st.composite
def planted_documents(draw):
    planted: list[str] = []

    def node(depth: int):
        kind = draw(st.sampled_from(["dict", "list", "leaf", "leaf"] if depth < 4 else ["leaf"]))
        if kind == "dict":
            doc = {}
            for _ in range(draw(st.integers(0, 4))):
                key = draw(plain_keys)
                if key not in doc:  # (a subtree overwritten would take its secrets along)
                    doc[key] = node(depth + 1)
            for _ in range(draw(st.integers(0, 2))):  # secrets under secret-named keys
                name = draw(st.sampled_from(_SECRET_NAMES))
                name = draw(st.sampled_from([name, name.upper(), name.title()]))
                if name in doc:
                    continue
                secret = draw(field_secrets)
                planted.append(secret)
                doc[name] = secret
            return doc
        if kind == "list":
            return [node(depth + 1) for _ in range(draw(st.integers(0, 4)))]
        if draw(st.integers(0, 4)) == 0:  # a credential inside an arbitrary string
            credential = draw(credentials)
            planted.append(credential)
            return f"{draw(st.text(max_size=10))} {credential} {draw(st.text(max_size=10))}"
        return draw(leaves)

    doc = {"data": node(0), draw(st.sampled_from(_SECRET_NAMES)): draw(field_secrets)}
    planted.append(next(v for k, v in doc.items() if k != "data"))
    return doc, planted


def _wrap(doc, response_doc, gzip_request: bool) -> Interaction:
    body = json.dumps(doc).encode()
    headers = [("Content-Type", "application/json")]
    if gzip_request:
        body = gzip.compress(body, mtime=0)
        headers.append(("Content-Encoding", "gzip"))
    headers.append(("Content-Length", str(len(body))))
    return make(headers=headers, body=body, r_headers=JSON,
                r_body=json.dumps(response_doc, ensure_ascii=False).encode())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted_documents(), planted_documents(), st.booleans(),
       st.binary(min_size=1, max_size=16).map(base64.b64encode))
def test_property_planted_secrets_never_reach_the_cassette(request_doc, response_doc,
                                                           gzip_request, key):
    (q_doc, q_secrets), (r_doc, r_secrets) = request_doc, response_doc
    secrets = q_secrets + r_secrets
    baseline = everything(R.redact(_wrap({}, {}, gzip_request)))
    for secret in secrets:
        # a secret that is part of the file's own scaffolding or of placeholder syntax
        # ("<redacted:password:…>") cannot be told apart from it
        assume(not any(secret in word for word in _WORDS))
        assume(all(form not in baseline for form in forms(secret)))
    redactor = Redactor(key=key)
    it = _wrap(q_doc, r_doc, gzip_request)
    once = redactor.redact(it)
    data = everything(once)
    for secret in secrets:
        for form in forms(secret):
            assert form not in data, f"planted {secret!r} left as {form!r}"
    assert redactor.redact(once) == once  # idempotent
    assert scan_interaction(once) == []  # and the scanner agrees it is clean
    # what gets written is a valid, re-encoded body with a correct length
    plain = decode_body(once.request.body, once.request.headers)
    assert plain is not None
    assert h(once, "content-length") == str(len(once.request.body))
    for doc, body, ascii_only in ((q_doc, plain, True), (r_doc, once.response.body, False)):
        text = json.dumps(doc, ensure_ascii=ascii_only)
        # ...unless a secret also occurs outside a JSON string (inside a number, or across
        # JSON syntax): it is replaced there too, which breaks the document, not the secret
        if not any(_outside_strings(s, text, ascii_only) for s in secrets):
            json.loads(body)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _outside_strings(secret: str, text: str, ascii_only: bool) -> bool:
    strings = _JSON_STRING.findall(text)
    return any(text.count(form) > sum(t.count(form) for t in strings)
               for form in {secret, json.dumps(secret, ensure_ascii=ascii_only)[1:-1]})


plain_form_names = st.text(min_size=1, max_size=10).filter(
    lambda k: k.lower() not in DEFAULT_SECRET_FIELDS)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(plain_form_names, st.text(max_size=10)), max_size=4),
       st.lists(st.tuples(st.sampled_from(_SECRET_NAMES), st.text(min_size=1, max_size=24)),
                min_size=1, max_size=4),
       st.randoms(use_true_random=False), st.booleans())
def test_property_form_fields_of_any_length_are_redacted(plain, secret_fields, rnd, response):
    fields = plain + secret_fields
    rnd.shuffle(fields)
    body = urlencode(fields).encode()
    it = make(r_headers=FORM, r_body=body) if response else make(headers=FORM, body=body)
    out = R.redact(it)
    part = out.response if response else out.request
    got = parse_qsl(part.body.decode(), keep_blank_values=True)
    assert [k for k, _ in got if k.lower() in DEFAULT_SECRET_FIELDS] == \
        [k for k, _ in fields if k.lower() in DEFAULT_SECRET_FIELDS]
    for k, v in got:
        if k.lower() in DEFAULT_SECRET_FIELDS:
            assert PLACEHOLDER.fullmatch(v.strip()), (k, v)  # (surrounding blanks kept)
    assert R.redact(out) == out
    assert scan_interaction(out) == []


@pytest.mark.parametrize("fields", [[("client_secret", "secret")],
                                    [("secret_key", "secret_key")],
                                    [("note", "x"), ("password", "password")]])
def test_a_form_secret_that_spells_a_field_name_leaves_the_names_alone(fields):
    """Found by hypothesis: the value `secret` also occurs in the name `client_secret`;
    replacing it everywhere renamed the field. Values are replaced, names are not."""
    out = R.redact(make(headers=FORM, body=urlencode(fields).encode()))
    got = parse_qsl(out.request.body.decode(), keep_blank_values=True)
    assert [k for k, _ in got] == [k for k, _ in fields]
    for k, v in got:
        if k.lower() in DEFAULT_SECRET_FIELDS:
            assert PLACEHOLDER.fullmatch(v), (k, v)
