"""The drift check's pure part: what is re-sent, with which credentials, and the verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from replayproxy.config import parse_settings
from replayproxy.drift.findings import Severity
from replayproxy.drift.plan import (
    Checked,
    DriftConfig,
    DriftReport,
    DriftRoute,
    Outcome,
    Pacer,
    Planned,
    Skip,
    endpoint_of,
    interaction_key,
    judge,
    parse_origin,
    parse_rate,
    plan_request,
)
from replayproxy.errors import ConfigError
from replayproxy.model import Request, Response
from replayproxy.routes import parse_route

AUTH = "<redacted:authorization:a1b2c3>"
KEY = "<redacted:x-api-key:d4e5f6>"


def req(method: str = "GET", path: str = "/v1/things", *, query: str = "",
        headers: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> Request:
    return Request(method, "https", "api.example.com", 443, path, query,
                   (("Host", "api.example.com"), *headers), body)


def planned(result: Planned | Skip) -> Planned:
    assert isinstance(result, Planned), result
    return result


def test_safe_methods_are_planned_unsafe_skipped_with_the_way_to_allow():
    config = DriftConfig()
    for method in ("GET", "HEAD", "OPTIONS"):
        assert isinstance(plan_request(req(method), config, {}), Planned)
    skip = plan_request(req("POST"), config, {})
    assert isinstance(skip, Skip) and not skip.error and "--allow-unsafe" in skip.reason


def test_allow_unsafe_globally_and_per_route():
    post = req("POST", "/v1/charges")
    assert isinstance(plan_request(post, DriftConfig(allow_unsafe=True), {}), Planned)
    route = DriftRoute(parse_route("POST */v1/charges"), allow_unsafe=True)
    assert isinstance(plan_request(post, DriftConfig(routes=(route,)), {}), Planned)
    assert isinstance(plan_request(req("DELETE", "/v1/charges"), DriftConfig(routes=(route,)),
                                   {}), Skip)


def test_unsafe_requests_are_never_repeated():
    plan = planned(plan_request(req("POST"), DriftConfig(allow_unsafe=True), {}))
    assert plan.repeat is False
    assert planned(plan_request(req("GET"), DriftConfig(), {})).repeat is True
    assert planned(plan_request(req("GET"), DriftConfig(repeat=False), {})).repeat is False


def test_route_skip_and_ignore():
    routes = (DriftRoute(parse_route("*/v1/secret*"), skip=True),
              DriftRoute(parse_route("*/v1/things"), ignore=("$.meta",)))
    config = DriftConfig(ignore=("X-Version",), routes=routes)
    assert isinstance(plan_request(req(path="/v1/secrets"), config, {}), Skip)
    assert planned(plan_request(req(), config, {})).ignore == ("X-Version", "$.meta")


@pytest.mark.parametrize("key", ["authorization", "Authorization", AUTH])
def test_credential_by_rule_header_or_placeholder_keeps_the_scheme(key):
    request = req(headers=(("Authorization", f"Bearer {AUTH}"),))
    plan = planned(plan_request(request, DriftConfig(credentials=((key, "TOKEN"),)),
                                {"TOKEN": "sk_test_123"}))
    assert dict(plan.request.headers)["Authorization"] == "Bearer sk_test_123"
    assert plan.secrets == ("sk_test_123",)


def test_credentials_in_query_json_and_form_are_escaped_for_where_they_go():
    config = DriftConfig(credentials=(("api_key", "K"), ("password", "P")))
    env = {"K": "a b&c", "P": 'p"w'}
    q = planned(plan_request(req(query="api_key=<redacted:api_key:000000>&x=1"), config, env))
    assert q.request.query == "api_key=a%20b%26c&x=1"
    encoded = req(query="api_key=%3Credacted%3Aapi_key%3A000000%3E")
    assert planned(plan_request(encoded, config, env)).request.query == "api_key=a%20b%26c"
    body = json.dumps({"password": "<redacted:password:111111>"}).encode()
    j = planned(plan_request(req("GET", headers=(("Content-Type", "application/json"),),
                                 body=body), config, env))
    assert json.loads(j.request.body) == {"password": 'p"w'}
    f = planned(plan_request(req("GET", headers=(
        ("Content-Type", "application/x-www-form-urlencoded"),),
        body=b"password=<redacted:password:111111>"), config, env))
    assert f.request.body == b"password=p%22w"


def test_missing_credential_variable_is_an_error_naming_it():
    request = req(headers=(("Authorization", f"Bearer {AUTH}"),))
    skip = plan_request(request, DriftConfig(credentials=(("authorization", "TOKEN"),)), {})
    assert isinstance(skip, Skip) and skip.error
    assert "TOKEN is not set" in skip.reason


def test_unmapped_placeholder_is_an_error_with_the_fix():
    skip = plan_request(req(headers=(("X-Api-Key", KEY),)), DriftConfig(), {})
    assert isinstance(skip, Skip) and skip.error
    assert KEY in skip.reason and 'x-api-key = "ENV_VAR"' in skip.reason


def test_hop_by_hop_and_content_length_are_dropped():
    request = req("GET", headers=(("Content-Length", "3"), ("Connection", "close"),
                                  ("Transfer-Encoding", "chunked"), ("X-Keep", "1")),
                  body=b"abc")
    names = [k for k, _ in planned(plan_request(request, DriftConfig(), {})).request.headers]
    assert names == ["Host", "X-Keep"]


def test_origin_rewrites_scheme_host_port_prefix_and_host_header():
    config = DriftConfig(origins=(("https://api.example.com:443", "http://127.0.0.1:8080/sbx"),))
    live = planned(plan_request(req(query="a=1"), config, {})).request
    assert live.url == "http://127.0.0.1:8080/sbx/v1/things?a=1"
    assert dict(live.headers)["Host"] == "127.0.0.1:8080"
    other = DriftConfig(origins=(("https://other.example.com", "http://127.0.0.1:1"),))
    assert planned(plan_request(req(), other, {})).request.host == "api.example.com"


def test_endpoint_folds_ids_and_key_counts_occurrences():
    r = req(path="/v1/customers/cus_Nffrfeu1aPfVbJ/orders/12345")
    assert endpoint_of(r) == "GET api.example.com/v1/customers/{id}/orders/{id}"
    assert endpoint_of(req(path="/v1/charges")) == "GET api.example.com/v1/charges"
    assert endpoint_of(req(path="/v1/charges/ch_0001")) == "GET api.example.com/v1/charges/{id}"
    assert endpoint_of(req(path="/v1/payment_intents")).endswith("/v1/payment_intents")
    assert interaction_key(r, 2).endswith(" #2")


def test_judge_and_exit_codes():
    json_ct = (("Content-Type", "application/json"),)
    recorded = Response(200, "OK", json_ct, b'{"id": "ch_1a2b3c4d5e6f", "amount": 1}')
    base = Checked("c", 0, "k", "GET x", "GET", "https://x/", Outcome.SKIPPED)
    same = judge(base, recorded, Response(200, "OK", json_ct,
                                          b'{"id": "ch_9z8y7x6w5v4u", "amount": 2}'), None, ())
    assert same.outcome is Outcome.PASSED and same.findings[0].severity is Severity.NOISE
    added = judge(base, recorded, Response(200, "OK", json_ct,
                                           b'{"id": "ch_1a2b3c4d5e6f", "amount": 1, "x": 1}'),
                  None, ())
    assert added.outcome is Outcome.CHANGED
    broken = judge(base, recorded, Response(404, "", json_ct, b"{}"), None, ())
    assert broken.outcome is Outcome.BREAKING

    report = DriftReport(("c",))
    assert report.exit_code() == 0
    report.results = [same, added]
    assert report.exit_code() == 0
    report.results.append(broken)
    assert report.exit_code() == 1
    report.results.append(Checked("c", 3, "k3", "GET x", "GET", "u", Outcome.ERROR, message="x"))
    assert report.exit_code() == 2
    doc = report.as_json()
    assert doc["counts"] == {"error": 1, "breaking": 1, "changed": 1, "passed": 1, "skipped": 0}
    json.dumps(doc)  # JSON-safe


def test_problems_make_exit_code_2():
    report = DriftReport(("c",), problems=["cassette 'c' does not exist"])
    assert report.exit_code() == 2


def test_pacer_spaces_sends_per_host():
    pacer = Pacer(2.0)  # one every 0.5 s per host
    assert pacer.reserve("a", 10.0) == 0.0
    assert pacer.reserve("a", 10.0) == pytest.approx(0.5)
    assert pacer.reserve("a", 10.1) == pytest.approx(0.9)
    assert pacer.reserve("b", 10.1) == 0.0
    assert Pacer(None).reserve("a", 0.0) == 0.0


@pytest.mark.parametrize(("text", "rate"), [("5/s", 5.0), ("120/min", 2.0), ("3600/h", 1.0),
                                            ("2", 2.0), ("0.5/s", 0.5)])
def test_parse_rate(text, rate):
    assert parse_rate("--rate", text) == pytest.approx(rate)


@pytest.mark.parametrize("text", ["0/s", "fast", "-1/s", "5/day"])
def test_parse_rate_rejects(text):
    with pytest.raises(ValueError, match="--rate"):
        parse_rate("--rate", text)


@pytest.mark.parametrize("text", ["api.example.com", "ftp://x", "https://x:99999", "https://"])
def test_parse_origin_rejects(text):
    with pytest.raises(ValueError, match="not an origin"):
        parse_origin("--origin", text)


# -- configuration ----------------------------------------------------------------------


def test_drift_configuration_is_read():
    settings = parse_settings({"drift": {
        "credentials": {"authorization": "STRIPE_KEY"},
        "ignore": ["$.meta", "X-Version"],
        "allow_unsafe": False,
        "origins": {"https://api.example.com": "https://sandbox.example.com"},
        "concurrency": 2, "rate": "5/s", "timeout": "3s", "repeat": False,
        "database": "drift.db",
        "routes": [{"route": "POST */v1/charges", "allow_unsafe": True, "ignore": ["$.x"]},
                   {"route": "*/v1/files/*", "skip": True}],
    }}, Path("replayproxy.toml"), "")
    d = settings.drift
    assert d.credentials == (("authorization", "STRIPE_KEY"),)
    assert d.concurrency == 2 and d.rate == 5.0 and d.timeout == 3.0 and d.repeat is False
    assert d.routes[0].allow_unsafe is True and d.routes[1].skip is True
    assert d.database == "drift.db"


@pytest.mark.parametrize(("table", "needle"), [
    ({"concurrency": "many"}, "concurrency"),
    ({"concurrency": 0}, "concurrency"),
    ({"rate": "fast"}, "rate"),
    ({"timeout": "soon"}, "timeout"),
    ({"credentials": {"authorization": 1}}, "credentials"),
    ({"ignore": ["$.[["]}, "ignore"),
    ({"origins": {"api.example.com": "x"}}, "origins"),
    ({"bogus": 1}, "unknown setting"),
    ({"routes": [{"route": "*", "bogus": 1}]}, "unknown setting"),
    ({"routes": [{"route": "*", "skip": "yes"}]}, "skip"),
    ({"repeat": 1}, "repeat"),
])
def test_bad_drift_configuration_names_the_key(table, needle):
    with pytest.raises(ConfigError, match=needle) as e:
        parse_settings({"drift": table}, Path("replayproxy.toml"), "")
    assert "replayproxy.toml" in str(e.value) and "\n" not in str(e.value)


def test_grpc_calls_are_skipped_like_posts_and_say_why_when_allowed():
    """A gRPC call is a POST: skipped unless unsafe methods are allowed; even then the
    live check (HTTP/1.1, no trailers) cannot make one, and says so."""
    call = req("POST", "/demo.Greeter/Hello", headers=(("content-type", "application/grpc"),),
               body=b"\x00\x00\x00\x00\x05\x0a\x03bob")
    skip = plan_request(call, DriftConfig(), {})
    assert isinstance(skip, Skip) and "--allow-unsafe" in skip.reason
    skip = plan_request(call, DriftConfig(allow_unsafe=True), {})
    assert isinstance(skip, Skip) and not skip.error
    assert skip.reason.startswith("gRPC call not re-sent") and "HTTP/2" in skip.reason


def test_websockets_are_skipped_and_said_so():
    handshake = req(headers=(("Upgrade", "websocket"), ("Connection", "Upgrade")))
    skip = plan_request(handshake, DriftConfig(), {})
    assert isinstance(skip, Skip) and not skip.error
    assert "drift does not re-send WebSockets" in skip.reason
