"""`replayproxy explain`, in-process: the request read like curl's, the miss analysis
offline, numbering from 1, ISO 8601 times; and `request_from_cli`, which parses it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from replayproxy.cassette.store import cassette_path, save_cassette
from replayproxy.cli.explain import request_from_cli
from replayproxy.errors import ConfigError
from replayproxy.model import Request
from tests.factories import RECORDED_AT, interaction, request, response
from tests.unit.cli_runner import cli_fixture, error_line  # noqa: F401

URL = "https://api.example.com/v1/payments"
RECORDED_PAYMENT = b'{"amount": 1200, "currency": "eur", "customer": "cus_1"}'
CHANGED_PAYMENT = '{"amount": 1500, "currency": "eur", "customer": "cus_1"}'
REORDERED = json.dumps(dict(reversed(json.loads(RECORDED_PAYMENT).items())))
AMOUNT_DIFF = "body $.amount: recorded 1200, received 1500"
JSON_TYPE = (("Content-Type", "application/json"),)
CT = ("-H", "Content-Type: application/json")


@pytest.fixture
def cdir(tmp_path: Path) -> Path:
    """Cassette ``pay``: #1 GET a customer, #2 the payment POST (as record_payment)."""
    d = tmp_path / "cassettes"
    save_cassette(cassette_path(d, "pay"), [
        interaction("/v1/customers/cus_1", response(200, json={"id": "cus_1"})),
        interaction(request("POST", "/v1/payments", headers=JSON_TYPE, body=RECORDED_PAYMENT),
                    response(200, json={"id": "pay_1"}), recorded_at=RECORDED_AT + 1),
    ])
    return d


@pytest.fixture
def explain(cli, cdir, tmp_path):
    """``explain(*args)``: `replayproxy explain -c pay --cassette-dir CDIR ARGS`."""

    def go(*args: str | Path):
        return cli("explain", "-c", "pay", "--cassette-dir", cdir, *args)

    return go


def _body_file(tmp_path: Path, body: bytes | str) -> str:
    path = tmp_path / "body.json"
    path.write_bytes(body.encode() if isinstance(body, str) else body)
    return f"@{path}"


# -- a request read like curl's -----------------------------------------------------------


@pytest.mark.parametrize("form", [
    ["-X", "POST", URL, *CT, "-d", REORDERED],
    [URL, *CT, "-d", REORDERED],  # -d implies POST, as in curl
    ["--request", "POST", URL, "--header", CT[1], "--data", "@BODY"],
    # the older spellings still work, hidden from --help
    ["--method", "POST", "--url", URL, *CT, "--body", "@BODY"],
    ["-u", URL, *CT, "-b", REORDERED],
], ids=["curl-short", "data-implies-post", "curl-long-file", "old-long", "old-short"])
def test_explain_reads_the_request_like_curl(explain, tmp_path, form):
    body = _body_file(tmp_path, REORDERED)
    result = explain(*(body if arg == "@BODY" else arg for arg in form))
    assert result.exit_code == 0, result.output
    assert result.stdout.split()[:6] == ["matches", "#2", "POST", URL, "->", "200"]


def test_explain_without_a_body_is_a_get(explain):
    result = explain("https://api.example.com/v1/customers/cus_1")
    assert result.exit_code == 0, result.output
    assert result.stdout.split()[:3] == ["matches", "#1", "GET"]


def test_explain_d_is_data_not_the_cassette_directory(cli, cdir, tmp_path):
    # -d DIR would be a body here: the cassette directory is --cassette-dir only
    result = cli("explain", "-c", "pay", "-d", str(cdir), URL, "--cassette-dir", cdir)
    assert result.exit_code == 1  # a POST whose body is the text of the path: no match
    assert f"matches POST {URL}" in result.stdout
    assert "--cassette-dir" in cli("explain", "--help").stdout
    assert "-d, --cassette-dir" not in cli("explain", "--help").stdout


@pytest.mark.parametrize(("args", "needles"), [
    ([], ["no URL given", "replayproxy explain -c NAME URL"]),
    (["api.example.com/v1"], ["invalid URL 'api.example.com/v1'", "absolute http(s) URL"]),
    (["https://api.example.com:99999/"], ["invalid port in URL", "1 to 65535"]),
    ([URL, "-H", "no colon"], ["invalid -H 'no colon'", "-H 'Name: value'"]),
    ([URL, "-d", "@/nonexistent/body.json"], ["cannot read -d @/nonexistent/body.json",
                                              "@FILE"]),
    ([URL, "--url", "https://other.example.com/"], ["URL given twice", "--url"]),
    ([URL, "-d", "a", "--body", "b"], ["-d given twice", "--body"]),
], ids=["no-url", "relative-url", "bad-port", "bad-header", "unreadable-body", "two-urls",
        "two-bodies"])
def test_explain_bad_request_input(explain, args, needles):
    error_line(explain(*args), *needles)


# -- the analysis ---------------------------------------------------------------------------


def test_explain_a_matching_request_numbers_from_1_with_iso_times(explain):
    text = explain(URL, *CT, "-d", REORDERED)
    as_json = explain(URL, *CT, "-d", REORDERED, "--json")
    assert text.exit_code == 0, text.output
    assert text.stdout.split()[:6] == ["matches", "#2", "POST", URL, "->", "200"], text.stdout
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.stdout)
    assert doc == {"match": True, "interaction": 2, "method": "POST", "url": URL,
                   "recorded_at": "2026-01-01T00:00:01+00:00"}
    when = datetime.fromisoformat(doc["recorded_at"])
    assert when.utcoffset() == timedelta(0) and when.timestamp() == RECORDED_AT + 1


def test_explain_a_changed_amount(explain):
    text = explain(URL, *CT, "-d", CHANGED_PAYMENT)
    as_json = explain(URL, *CT, "-d", CHANGED_PAYMENT, "--json")
    ignored = explain(URL, *CT, "-d", CHANGED_PAYMENT, "--ignore-json", "$.amount")
    assert text.exit_code == 1, text.output
    assert f"matches POST {URL}" in text.stdout
    assert f"Closest recorded: #2 POST {URL}" in text.stdout
    assert AMOUNT_DIFF in text.stdout
    assert "replayproxy: replayproxy:" not in text.stdout
    assert text.stderr == ""

    assert as_json.exit_code == 1, as_json.output
    doc = json.loads(as_json.stdout)
    assert doc["error"] == "unmatched"
    assert doc["closest"][0]["interaction"] == 2
    assert doc["closest"][0]["differences"] == [
        {"field": "body", "location": "$.amount", "recorded": 1200, "received": 1500}]

    # the same flags as replay: an ignored path makes it match
    assert ignored.exit_code == 0, ignored.output
    assert ignored.stdout.split()[:2] == ["matches", "#2"], ignored.stdout


# -- request_from_cli -----------------------------------------------------------------------


def test_request_from_cli_builds_the_request():
    request = request_from_cli("post", "https://api.example.com:8443/v1/x?a=1&b=2",
                               ["Content-Type:  application/json ", "X-Empty:"], b"{}")
    assert request == Request("POST", "https", "api.example.com", 8443, "/v1/x", "a=1&b=2",
                              (("Content-Type", "application/json"), ("X-Empty", "")), b"{}")
    assert request_from_cli("GET", "http://h", [], b"").path == "/"
    assert request_from_cli("GET", "http://h", [], b"").port == 80


@pytest.mark.parametrize(("url", "headers", "needle"), [
    ("ftp://h/x", [], "invalid URL 'ftp://h/x'"),
    ("https:///x", [], "invalid URL"),
    ("http://h:port/", [], "invalid port in URL"),
    ("http://h/", [": value"], "invalid -H ': value'"),
], ids=["scheme", "no-host", "port", "header-without-name"])
def test_request_from_cli_refuses_bad_pieces(url, headers, needle):
    with pytest.raises(ConfigError, match="^" + needle.replace("(", r"\(")):
        request_from_cli("GET", url, headers, b"")
