"""Issue 4 through the real proxy: requests that differ from the recording in harmless
ways still replay, configured ones are ignored, and every miss explains itself.

Each test records against the local upstream (HTTPS through a CONNECT tunnel, or plain
HTTP), then replays with the upstream's connection counter proving that replay never
reached it. The upstream's ``/v1/`` and ``/v2/`` endpoints echo the request they got
and count identical requests (``n``), so a replayed body shows which recording served
it. Clients are curl, requests and httpx, mixed.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from replayproxy.model import RecordMode
from tests.integration.support import (
    AMOUNT_DIFF,
    AMOUNT_URL_PATH,
    CHANGED_PAYMENT,
    Resp,
    cli,
    offline,
    record_payment,
    write_config,
)

JSON_CT = {"Content-Type": "application/json"}
ACCEPT_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


# -- helpers ----------------------------------------------------------------------------


def echoed(resp: Resp) -> dict:
    """The upstream's echo of the request that was recorded, as replayed."""
    assert resp.status == 200, resp.body
    assert resp.header("X-Replayproxy") is None
    return json.loads(resp.body)


def assert_unmatched_text(resp: Resp, *needles: str) -> str:
    assert resp.status == 502, resp.body
    assert resp.header("X-Replayproxy") == "unmatched"
    assert resp.header("Content-Type").startswith("text/plain")
    text = resp.body.decode("utf-8")
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"
    return text


def differences(text: str) -> list[str]:
    """The differences listed under the closest recording in a 502 text body."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Closest recorded"))
    out = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        out.append(line.strip())
    return out


def unmatched_json(resp: Resp) -> dict:
    assert resp.status == 502, resp.body
    assert resp.header("X-Replayproxy") == "unmatched"
    assert resp.header("Content-Type") == "application/json"
    doc = json.loads(resp.body)
    assert doc["error"] == "unmatched"
    return doc


def curl_status(url: str, *args: str) -> str:
    """A shell command: curl printing only the status code, one line."""
    return shlex.join(["curl", "-sS", "--max-time", "30", "-o", "/dev/null",
                       "-w", "%{http_code}\\n", *args, url])


@pytest.fixture
def replay_cli(cli_env, cassette_dir, tmp_path):
    """``replay_cli(NAME, SCRIPT, *flags)``: `replayproxy replay` around ``sh -c SCRIPT``."""

    def go(name: str, script: str, *flags: str | Path):
        return cli("replay", "-c", name, "--cassette-dir", cassette_dir, *flags, "--",
                   "sh", "-c", script, env=cli_env, cwd=tmp_path)

    return go


# -- 1. headers -------------------------------------------------------------------------


def test_headers_are_not_compared_by_default(https_upstream, run_proxy):
    url = https_upstream.url("/v1/profile")
    with run_proxy("hdr", RecordMode.ALL) as p, p.client("requests") as c:
        recorded = c.get(url, headers={"X-Timestamp": "1700000000", "X-Api-Version": "2024-01"})
    with offline(https_upstream), run_proxy("hdr", RecordMode.NONE) as p, \
            p.client("requests") as c:
        for ts in ("1700000001", "1700000002"):
            r = c.get(url, headers={"X-Timestamp": ts, "X-Api-Version": "2025-06"})
            assert (r.status, r.body) == (200, recorded.body)


@pytest.mark.parametrize("rule", [
    'headers = ["x-api-version"]',
    'headers = ["*"]\nignore_headers = ["X-Timestamp"]',
], ids=["chosen-header", "all-headers-but-timestamp"])
def test_compared_headers_must_match_and_ignored_ones_never_do(rule, https_upstream,
                                                               run_proxy, tmp_path):
    config = write_config(tmp_path, f"[match]\n{rule}\n")
    url = https_upstream.url("/v1/profile")
    with run_proxy("hdr", RecordMode.ALL) as p, p.client("curl") as c:
        recorded = c.get(url, headers={"X-Timestamp": "1700000000", "X-Api-Version": "2024-01"})
    assert echoed(recorded)["n"] == 1

    with offline(https_upstream), run_proxy("hdr", RecordMode.NONE, config=config) as p, \
            p.client("curl") as c:
        fresh_ts = c.get(url, headers={"X-Timestamp": "1799999999", "X-Api-Version": "2024-01"})
        new_version = c.get(url, headers={"X-Timestamp": "1799999999",
                                          "X-Api-Version": "2025-06"})
    assert (fresh_ts.status, fresh_ts.body) == (200, recorded.body)
    text = assert_unmatched_text(new_version)
    assert differences(text) == ['header x-api-version: recorded "2024-01", received "2025-06"']


@pytest.mark.parametrize("flags", [
    ("--match-header", "X-Api-Version"),
    ("--match-header", "*", "--ignore-header", "x-timestamp"),
], ids=["chosen-header", "all-headers-but-timestamp"])
def test_header_flags_on_the_command_line(flags, https_upstream, run_proxy, replay_cli):
    url = https_upstream.url("/v1/profile")
    with run_proxy("hdrcli", RecordMode.ALL) as p, p.client("curl") as c:  # same User-Agent
        c.get(url, headers={"X-Timestamp": "1700000000", "X-Api-Version": "2024-01"})
    script = "; ".join([
        curl_status(url, "-H", "X-Timestamp: 1799999999", "-H", "X-Api-Version: 2024-01"),
        curl_status(url, "-H", "X-Timestamp: 1700000000", "-H", "X-Api-Version: 2025-06"),
    ])
    with offline(https_upstream):
        proc = replay_cli("hdrcli", script, *flags)
    assert proc.stdout.split() == ["200", "502"], proc.stderr
    assert proc.returncode == 1
    summary = proc.stderr[proc.stderr.index("matched nothing"):]
    assert 'header x-api-version: recorded "2024-01", received "2025-06"' in summary
    assert "x-timestamp" not in summary.lower()
    assert "Traceback" not in proc.stderr


# -- 2. JSON bodies ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pyproject.toml", "replayproxy.toml"])
def test_changing_json_nonce_ignored_by_config(name, https_upstream, run_proxy, tmp_path):
    config = write_config(tmp_path, '[match]\nignore_json = ["$.nonce"]\n', name=name)
    url = https_upstream.url("/v1/orders")

    def order(nonce: str) -> bytes:
        return json.dumps({"item": "book", "qty": 2, "nonce": nonce}).encode()

    with run_proxy("nonce", RecordMode.ALL) as p, p.client("httpx") as c:
        recorded = [c.post(url, order(n), JSON_CT) for n in ("a1b2c3", "0f0f0f")]

    with offline(https_upstream):
        with run_proxy("nonce", RecordMode.NONE, config=config) as p, p.client("httpx") as c:
            replayed = [c.post(url, order(n), JSON_CT) for n in ("d4e5f6", "777777", "888888")]
        # a sequence of requests equal but for the nonce, in recorded order, then the last
        assert [r.body for r in replayed] == [recorded[0].body, recorded[1].body,
                                              recorded[1].body]
        assert json.loads(echoed(replayed[0])["body"])["nonce"] == "a1b2c3"  # the recording
        # without the configuration the nonce is compared like anything else
        with run_proxy("nonce", RecordMode.NONE) as p, p.client("httpx") as c:
            miss = c.post(url, order("d4e5f6"), JSON_CT)
    text = assert_unmatched_text(miss)
    assert differences(text) == ['body $.nonce: recorded "a1b2c3", received "d4e5f6"']


def test_json_key_order_and_whitespace_match_without_configuration(upstream, run_proxy):
    url = upstream.url("/v1/charges")
    body = b'{"amount": 1200, "currency": "eur", "meta": {"a": 1, "tags": ["x", "y"]}}'
    with run_proxy("order", RecordMode.ALL) as p, p.client("requests") as c:
        recorded = c.post(url, body, JSON_CT)
    reordered = b'{\n  "meta" : {"tags":["x","y"],"a":1},\n\t"currency":"eur",  "amount":1200\n}'
    with offline(upstream), run_proxy("order", RecordMode.NONE) as p:
        for kind in ("requests", "curl"):
            with p.client(kind) as c:
                r = c.post(url, reordered, {"Content-Type": "application/json; charset=utf-8"})
            assert (r.status, r.body) == (200, recorded.body)
        with p.client("httpx") as c:  # httpx's own compact JSON encoding, keys reordered
            r = c.client.post(url, json={"meta": {"tags": ["x", "y"], "a": 1},
                                         "currency": "eur", "amount": 1200})
            assert (r.status_code, r.content) == (200, recorded.body)
        with p.client("requests") as c:  # a list's order is not whitespace: it counts
            miss = c.post(url, body.replace(b'["x", "y"]', b'["y", "x"]'), JSON_CT)
    assert_unmatched_text(miss, "$.meta.tags[0]")


# -- 3. GraphQL -------------------------------------------------------------------------

GRAPHQL_QUERY = "query GetUser($id: ID!) { user(id: $id) { id name email } }"
GRAPHQL_REFORMATTED = """
# fetch one user
query GetUser(
  $id: ID!
) {
  user(id: $id) {
    id,
    name
    email
  }
}
"""


def test_graphql_query_with_reformatted_whitespace(https_upstream, run_proxy):
    url = https_upstream.url("/v1/graphql")

    def doc(query: str, user: str = "42") -> bytes:
        return json.dumps({"operationName": "GetUser", "query": query,
                           "variables": {"id": user}}).encode()

    with run_proxy("graphql", RecordMode.ALL) as p, p.client("httpx") as c:
        recorded = c.post(url, doc(GRAPHQL_QUERY), JSON_CT)
        recorded_raw = c.post(url, GRAPHQL_QUERY.encode(), {"Content-Type": "application/graphql"})

    with offline(https_upstream), run_proxy("graphql", RecordMode.NONE) as p, \
            p.client("httpx") as c:
        # other key order too: operationName last
        body = json.dumps({"variables": {"id": "42"}, "query": GRAPHQL_REFORMATTED,
                           "operationName": "GetUser"}).encode()
        same = c.post(url, body, JSON_CT)
        same_raw = c.post(url, GRAPHQL_REFORMATTED.encode(),
                          {"Content-Type": "application/graphql"})
        other_user = c.post(url, doc(GRAPHQL_REFORMATTED, "43"), JSON_CT)
        other_fields = c.post(url, doc(GRAPHQL_QUERY.replace(" email", "")), JSON_CT)
    assert (same.status, same.body) == (200, recorded.body)
    assert (same_raw.status, same_raw.body) == (200, recorded_raw.body)
    assert_unmatched_text(other_user, "graphql variables", '"42"', '"43"')
    assert_unmatched_text(other_fields, "graphql query")


# -- 4. multipart -----------------------------------------------------------------------


@pytest.mark.parametrize("rule", [None, 'headers = ["*"]'], ids=["default", "all-headers"])
def test_multipart_upload_with_a_fresh_boundary(rule, upstream, run_proxy, tmp_path):
    """The boundary is ignored, also where it shows in a compared Content-Type header."""
    config = write_config(tmp_path, f"[match]\n{rule}\n") if rule else None
    url = upstream.url("/v1/uploads")
    csv = b"id,amount\n1,1200\n2,1500\n"

    def upload(c, content: bytes = csv):
        r = c.session.post(url, data={"title": "Q3 report"},
                           files={"file": ("report.csv", content, "text/csv")}, timeout=60)
        return r.request.headers["Content-Type"], r.status_code, r.content, r.headers

    with run_proxy("upload", RecordMode.ALL) as p, p.client("requests") as c:
        recorded_ct, status, recorded_body, _ = upload(c)
    assert status == 200
    assert recorded_ct.startswith("multipart/form-data; boundary=")

    with offline(upstream), run_proxy("upload", RecordMode.NONE, config=config) as p, \
            p.client("requests") as c:
        replay_ct, status, body, _ = upload(c)
        _, miss_status, miss_body, miss_headers = upload(c, csv.replace(b"1500", b"1501"))
    assert replay_ct != recorded_ct  # requests chose a fresh boundary
    assert (status, body) == (200, recorded_body)
    assert json.loads(body)["content_type"] == recorded_ct  # the recording answered
    assert miss_status == 502
    assert miss_headers["X-Replayproxy"] == "unmatched"
    assert "body multipart part 2" in miss_body.decode()


# -- 5. forms ---------------------------------------------------------------------------


def test_form_body_with_parameters_in_another_order(https_upstream, run_proxy):
    url = https_upstream.url("/v1/tokens")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with run_proxy("form", RecordMode.ALL) as p, p.client("curl") as c:
        recorded = c.post(url, b"grant_type=client_credentials&scope=read&scope=write&n=1", form)
    with offline(https_upstream), run_proxy("form", RecordMode.NONE) as p, \
            p.client("curl") as c:
        same = c.post(url, b"n=1&scope=read&grant_type=client_credentials&scope=write", form)
        other = c.post(url, b"n=2&scope=read&grant_type=client_credentials&scope=write", form)
    assert (same.status, same.body) == (200, recorded.body)
    assert_unmatched_text(other, "body $.n")


# -- 6. query parameters ----------------------------------------------------------------


def test_ignore_query_flag_on_the_command_line(https_upstream, run_proxy, replay_cli):
    with run_proxy("query", RecordMode.ALL) as p, p.client("requests") as c:
        c.get(https_upstream.url("/v1/items?page=2&ts=1700000000"))
    script = "; ".join([
        curl_status(https_upstream.url("/v1/items?ts=1799999999&page=2")),
        curl_status(https_upstream.url("/v1/items?page=3&ts=1700000000")),
    ])
    with offline(https_upstream):
        ignored = replay_cli("query", script, "--ignore-query", "ts")
        compared = replay_cli("query", curl_status(https_upstream.url("/v1/items?page=2&ts=1")))
    assert ignored.stdout.split() == ["200", "502"], ignored.stderr
    assert ignored.returncode == 1
    assert 'query page: recorded "2", received "3"' in ignored.stderr
    assert "query ts" not in ignored.stderr
    # without the flag, ts is compared
    assert compared.stdout.split() == ["502"], compared.stderr
    assert 'query ts: recorded "1700000000", received "1"' in compared.stderr


# -- 7. a changed amount explains itself ------------------------------------------------


@pytest.mark.parametrize("kind", ["curl", "httpx"])
def test_changed_amount_502_names_the_json_path_as_text(kind, https_upstream, run_proxy,
                                                        caplog):
    record_payment(run_proxy, https_upstream)
    caplog.clear()
    with offline(https_upstream), run_proxy("pay", RecordMode.NONE) as p, p.client(kind) as c:
        r = c.post(https_upstream.url(AMOUNT_URL_PATH), CHANGED_PAYMENT, JSON_CT)
    logged = [rec.getMessage() for rec in caplog.records if rec.name == "replayproxy"]
    assert AMOUNT_DIFF in "\n".join(logged)  # the proxy log says it too
    text = assert_unmatched_text(r, AMOUNT_DIFF, f"POST {https_upstream.url(AMOUNT_URL_PATH)}")
    # the closest recording by its number, and only what differs from it
    assert f"Closest recorded: #2 POST {https_upstream.url(AMOUNT_URL_PATH)}" in text
    assert differences(text) == [AMOUNT_DIFF]
    assert p.summary is not None and len(p.summary.unmatched) == 1


@pytest.mark.parametrize("kind", ["requests", "curl"])
def test_changed_amount_502_as_json_for_a_json_client(kind, upstream, run_proxy):
    record_payment(run_proxy, upstream)
    url = upstream.url(AMOUNT_URL_PATH)
    with offline(upstream), run_proxy("pay", RecordMode.NONE) as p, p.client(kind) as c:
        doc = unmatched_json(c.post(url, CHANGED_PAYMENT, ACCEPT_JSON))
    assert doc["request"] == {"method": "POST", "url": url}
    closest = doc["closest"][0]
    assert (closest["interaction"], closest["method"], closest["url"]) == (2, "POST", url)
    assert closest["differences"] == [
        {"field": "body", "location": "$.amount", "recorded": 1200, "received": 1500}]


def test_changed_amount_in_the_end_of_run_summary(https_upstream, run_proxy, replay_cli):
    record_payment(run_proxy, https_upstream)
    url = https_upstream.url(AMOUNT_URL_PATH)
    script = curl_status(url, "-X", "POST", "-H", "Content-Type: application/json",
                         "--data-binary", CHANGED_PAYMENT.decode())
    with offline(https_upstream):
        proc = replay_cli("pay", script)
    assert proc.stdout.split() == ["502"]
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    summary = proc.stderr[proc.stderr.index("matched nothing"):]
    assert f"unmatched: POST {url}" in summary
    assert AMOUNT_DIFF in summary


# -- 8. rules per route -----------------------------------------------------------------


@pytest.mark.parametrize("form", ["host-path", "full-url"])
def test_rules_per_route(form, http_upstream, run_proxy, tmp_path):
    up = http_upstream
    target = "127.0.0.1/v1/*" if form == "host-path" else f"{up.base_url}/v1/*"
    config = write_config(tmp_path, f"""\
        [[match.routes]]
        route = "POST {target}"
        ignore_json = ["$.request_id"]

        [[match.routes]]
        route = "GET 127.0.0.1/v1/jobs/*"
        on_exhausted = "error"
    """)
    charge = {"amount": 5, "request_id": "req_1"}
    with run_proxy("routes", RecordMode.ALL) as p, p.client("httpx") as c:
        for path in ("/v1/charges", "/v2/charges"):
            c.post(up.url(path), json.dumps(charge).encode(), JSON_CT)
        for path in ("/v1/jobs/7", "/v1/jobs/7", "/v2/jobs/7", "/v2/jobs/7"):
            c.get(up.url(path))

    retry = json.dumps({**charge, "request_id": "req_2"}).encode()
    with offline(up), run_proxy("routes", RecordMode.NONE, config=config) as p, \
            p.client("httpx") as c:
        v1 = c.post(up.url("/v1/charges"), retry, JSON_CT)
        v2 = c.post(up.url("/v2/charges"), retry, JSON_CT)
        v1_jobs = [c.get(up.url("/v1/jobs/7")) for _ in range(3)]
        v2_jobs = [c.get(up.url("/v2/jobs/7")) for _ in range(3)]
    assert json.loads(echoed(v1)["body"])["request_id"] == "req_1"
    assert_unmatched_text(v2, 'body $.request_id: recorded "req_1", received "req_2"')
    # on_exhausted = "error" on /v1/jobs only; elsewhere the last answer repeats
    assert [echoed(r)["n"] for r in v1_jobs[:2]] == [1, 2]
    assert_unmatched_text(v1_jobs[2], "used up")
    assert [echoed(r)["n"] for r in v2_jobs] == [1, 2, 2]


# -- 9. sequences -----------------------------------------------------------------------


def test_identical_requests_replay_in_recorded_order_per_match_key(https_upstream, run_proxy):
    url = https_upstream.url("/v1/jobs/status")
    a, b = b'{"job": "a", "wait": true}', b'{"job": "b", "wait": true}'
    a_reordered = b'{"wait": true, "job": "a"}'
    with run_proxy("seq", RecordMode.ALL) as p, p.client("requests") as c:
        recorded = [echoed(c.post(url, body, JSON_CT)) for body in (a, b, a, b)]
    assert [(json.loads(r["body"])["job"], r["n"]) for r in recorded] == [
        ("a", 1), ("b", 1), ("a", 2), ("b", 2)]

    with offline(https_upstream), run_proxy("seq", RecordMode.NONE) as p, \
            p.client("httpx") as c:
        replayed = [echoed(c.post(url, body, JSON_CT))
                    for body in (b, a_reordered, a, b, a, b)]
    assert [(json.loads(r["body"])["job"], r["n"]) for r in replayed] == [
        ("b", 1), ("a", 1), ("a", 2), ("b", 2), ("a", 2), ("b", 2)]
    assert p.summary is not None and p.summary.unused == []


# -- 10. unused interactions ------------------------------------------------------------


def test_unused_interactions_listed_at_exit(https_upstream, run_proxy, replay_cli):
    paths = ["/v1/alpha", "/v1/beta", "/v1/gamma"]
    with run_proxy("stale", RecordMode.ALL) as p, p.client("httpx") as c:
        for path in paths:
            c.get(https_upstream.url(path))
    partial = curl_status(https_upstream.url("/v1/beta"))
    everything = "; ".join(curl_status(https_upstream.url(path)) for path in paths)
    with offline(https_upstream):
        lenient = replay_cli("stale", partial)
        failing = replay_cli("stale", partial, "--fail-on-unused")
        complete = replay_cli("stale", everything, "--fail-on-unused")

    for proc in (lenient, failing):
        assert proc.stdout.split() == ["200"]
        assert "2 recorded interactions in cassette stale were never used" in proc.stderr
        listed = proc.stderr[proc.stderr.index("were never used"):].splitlines()[1:3]
        assert [line.split()[1:4] for line in listed] == [
            ["#1", "GET", https_upstream.url("/v1/alpha")],
            ["#3", "GET", https_upstream.url("/v1/gamma")]]
        assert "/v1/beta" not in proc.stderr[proc.stderr.index("were never used"):]
    assert lenient.returncode == 0, lenient.stderr
    assert failing.returncode == 1, failing.stderr
    assert "--fail-on-unused" in failing.stderr
    assert complete.stdout.split() == ["200"] * 3
    assert complete.returncode == 0, complete.stderr
    assert "never used" not in complete.stderr


# -- 12. a body that claims JSON but is not JSON ----------------------------------------


def test_body_claiming_json_that_is_not_json_is_matched_as_bytes(upstream, run_proxy):
    url = upstream.url("/v1/raw")
    broken = b'{"amount": 1200, "currency": '  # cut short
    binary = b"\xff\xfe{\x00not json\x00"
    valid = b'{"amount": 1200}'
    with run_proxy("notjson", RecordMode.ALL) as p, p.client("httpx") as c:
        recorded = [c.post(url, body, JSON_CT) for body in (broken, binary, valid)]
    assert [r.status for r in recorded] == [200] * 3

    with offline(upstream), run_proxy("notjson", RecordMode.NONE) as p:
        with p.client("httpx") as c:
            same_broken = c.post(url, broken, JSON_CT)
            other_broken = c.post(url, broken.replace(b"1200", b"1500"), JSON_CT)
            other_binary = c.post(url, binary + b"!", ACCEPT_JSON)
        with p.client("curl") as c:
            same_binary = c.post(url, binary, JSON_CT)
            whitespace = c.post(url, broken + b" ", JSON_CT)  # bytes: every byte counts
            after = c.post(url, b'{ "amount" : 1200 }', JSON_CT)  # still JSON-aware
    assert (same_broken.status, same_broken.body) == (200, recorded[0].body)
    assert (same_binary.status, same_binary.body) == (200, recorded[1].body)
    assert (after.status, after.body) == (200, recorded[2].body)
    assert_unmatched_text(other_broken, "1200", "1500")
    assert_unmatched_text(whitespace)
    doc = unmatched_json(other_binary)
    assert doc["closest"][0]["differences"][0]["field"] == "body"
    assert p.summary is not None and len(p.summary.unmatched) == 3
