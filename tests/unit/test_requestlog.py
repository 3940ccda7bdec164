"""The request log and request verification (plain values, no proxy)."""

from __future__ import annotations

import gzip
import json
from unittest.mock import ANY

import pytest

from replayproxy.decision.pipeline import Pipeline
from replayproxy.decision.requestlog import (
    BODY_LIMIT,
    RequestLog,
    json_differences,
    verify,
)
from replayproxy.decision.session import CassetteSession
from replayproxy.faults.plan import FaultPlan
from replayproxy.model import RecordMode, Request


def post(path: str, payload: object, host: str = "api.example.com", **headers: str) -> Request:
    body = json.dumps(payload).encode()
    return Request("POST", "https", host, 443, path, "",
                   (("Content-Type", "application/json"), *headers.items()), body)


def get(path: str, query: str = "") -> Request:
    return Request("GET", "https", "api.example.com", 443, path, query)


def test_select_filters_by_method_and_url_glob_from_a_sequence_number():
    log = RequestLog()
    log.add(get("/v1/customers/1"), "replayed")
    start = log.next_seq
    log.add(post("/v1/payment_intents", {"amount": 9999}), "replayed")
    log.add(get("/v1/payment_intents", "limit=3"), "unmatched")
    assert [s.seq for s in log.select(since=start)] == [2, 3]
    sent = log.select(since=start, method="post", url="*/v1/payment_intents")
    assert [(s.method, s.url, s.outcome) for s in sent] == [
        ("POST", "https://api.example.com/v1/payment_intents", "replayed")]
    assert sent[0].json == {"amount": 9999}
    assert sent[0].header("content-type") == "application/json"
    # the query does not stop a host/path glob from matching
    assert [s.seq for s in log.select(url="*/v1/payment_intents")] == [2, 3]
    with pytest.raises(ValueError, match="invalid route"):
        log.select(url="two words")


def test_bodies_are_decoded_and_served_as_json_for_the_control_api():
    log = RequestLog()
    raw = gzip.compress(b'{"a": 1}')
    entry = log.add(Request("PUT", "http", "h", 80, "/x", "", (("Content-Encoding", "gzip"),),
                            raw), "recorded")
    assert entry.json == {"a": 1}
    doc = entry.as_json()
    assert doc["body"] == '{"a": 1}' and doc["json"] == {"a": 1}
    binary = log.add(Request("PUT", "http", "h", 80, "/x", "", (), b"\xff\x00"), "recorded")
    assert binary.as_json()["body_encoding"] == "base64" and "json" not in binary.as_json()


def test_a_long_body_is_cut_and_said_so():
    entry = RequestLog().add(Request("POST", "http", "h", 80, "/", body=b"x" * (BODY_LIMIT + 5)),
                             "recorded")
    assert entry.truncated and len(entry.request.body) == BODY_LIMIT


def test_the_log_is_bounded_and_says_when_requests_fell_off(monkeypatch):
    monkeypatch.setattr(RequestLog, "limit", 3)
    log = RequestLog()
    for i in range(5):
        log.add(get(f"/{i}"), "replayed")
    assert [s.seq for s in log.select(since=3)] == [3, 4, 5]
    with pytest.raises(ValueError, match="last 3 requests"):
        log.select(since=2)
    assert log.clear() == 3 and log.select(since=log.next_seq) == []


def test_the_log_keeps_a_bounded_amount_of_body_bytes(monkeypatch):
    monkeypatch.setattr(RequestLog, "body_budget", 2500)
    log = RequestLog()
    for i in range(4):
        log.add(Request("PUT", "http", "h", 80, f"/{i}", body=b"x" * 1000), "recorded")
    assert [s.seq for s in log.select(since=3)] == [3, 4]
    with pytest.raises(ValueError, match="no longer all there"):
        log.select(since=1)


def test_json_differences_name_each_path():
    actual = {"amount": 1000, "currency": "usd", "items": [{"id": 1}], "live": True}
    assert json_differences({"amount": 1000, "items": [{"id": ANY}]}, actual) == []
    assert json_differences({"amount": 9999, "customer": "c1", "items": [], "live": 1},
                            actual) == [
        "$.amount: expected 9999, got 1000",
        '$.customer: missing (expected "c1")',
        '$.items: expected 0 items, got 1: [{"id": 1}]',
        "$.live: expected 1, got true",
    ]


def test_verify_passes_and_counts():
    sent = [post("/v1/payment_intents", {"amount": 9999}, **{"Idempotency-Key": "k1"})]
    log = RequestLog()
    for r in sent:
        log.add(r, "replayed")
    entries = log.select()
    assert verify(entries, "POST", "*/v1/payment_intents", json={"amount": 9999}, times=1) is None
    assert verify(entries, "POST", "*/v1/payment_intents",
                  headers={"Idempotency-Key": "k1"}) is None
    assert verify(entries, "POST", "*/v1/refunds", times=0) is None
    assert verify(entries, "POST", "*/v1/payment_intents", times=2) is not None


def test_verify_failure_reads_as_a_diff():
    log = RequestLog()
    log.add(get("/v1/customers/cus_1"), "replayed")
    log.add(post("/v1/payment_intents", {"amount": 1000, "currency": "usd"}), "replayed")
    message = verify(log.select(), "POST", "*/v1/payment_intents",
                     json={"amount": 9999}, times=1)
    assert message == (
        'expected 1 request POST */v1/payment_intents with JSON {"amount": 9999}, got 0.\n'
        "Requests sent during this test (2):\n"
        "  #1 GET https://api.example.com/v1/customers/cus_1 (replayed): "
        "not POST */v1/payment_intents\n"
        "  #2 POST https://api.example.com/v1/payment_intents (replayed): differs\n"
        "      $.amount: expected 9999, got 1000")
    assert verify([], "GET", "*") == ("expected at least 1 request GET *, got 0.\n"
                                      "No request was sent through the proxy during this test.")


def test_the_pipeline_logs_every_request_with_its_outcome(tmp_path):
    session = CassetteSession(tmp_path, "c", RecordMode.ALL)
    pipeline = Pipeline(session, FaultPlan(["status=503@*/v1/fail"]))
    pipeline.decide(get("/v1/ok"), 0.0)
    pipeline.decide(get("/v1/fail"), 0.0)
    assert [(s.request.path, s.outcome) for s in pipeline.requests.select()] == [
        ("/v1/ok", "forwarded"), ("/v1/fail", "fault")]
