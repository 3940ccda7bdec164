"""Diagnostics: field-level differences, ranking of the closest recordings, the miss report."""

import json

import pytest

from replayproxy.cassette.store import CassetteFile, save_cassette
from replayproxy.decision.session import CassetteSession, Unmatched
from replayproxy.matching.diagnostics import (
    MISSING,
    Candidate,
    Difference,
    compare,
    rank,
    render_candidates,
)
from replayproxy.matching.index import ReplayIndex
from replayproxy.matching.rules import MatchConfig, MatchRule, extend_rule
from replayproxy.model import Interaction, RecordMode, Request, Response
from replayproxy.routes import parse_route

JSON = (("Content-Type", "application/json"),)


def req(body=None, *, method="POST", host="api.example.com", path="/v1/charges", query="",
        headers=JSON, scheme="https", port=443):
    raw = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else \
        (body or b"")
    return Request(method, scheme, host, port, path, query, tuple(headers), raw)


def interaction(request, status=200):
    return Interaction(request, Response(status, "OK", JSON, b'{"ok": true}'))


def cassette(*requests):
    return CassetteFile.from_interactions("test", [interaction(q) for q in requests])


def rule(**settings):
    return extend_rule(MatchRule(), "test", **settings)


def where(differences):
    return {(d.field, d.location): (d.recorded, d.received) for d in differences}


# -- compare ---------------------------------------------------------------------------


def test_identical_requests_have_no_differences():
    q = req({"amount": 1200}, query="a=1")
    assert compare(q, q, MatchRule()) == ()


def test_a_json_field_is_named_by_its_path_with_both_values():
    recorded = req({"amount": 1200, "currency": "eur", "items": [{"price": 5}, {"price": 7}]})
    received = req({"currency": "eur", "items": [{"price": 5}, {"price": 8}], "amount": 1500})
    assert where(compare(recorded, received, MatchRule())) == {
        ("body", "$.amount"): (1200, 1500),
        ("body", "$.items[1].price"): (7, 8),
    }


def test_added_removed_and_oddly_named_json_fields():
    recorded = req({"a b": 1, "gone": "x", "list": [1, 2]})
    received = req({"a b": 2, "new": None, "list": [1, 2, 3]})
    assert where(compare(recorded, received, MatchRule())) == {
        ("body", '$["a b"]'): (1, 2),
        ("body", "$.gone"): ("x", MISSING),
        ("body", "$.new"): (MISSING, None),
        ("body", "$.list[2]"): (MISSING, 3),
    }


def test_names_that_look_private_in_python_are_still_compared():
    # deepdiff skips "private" keys starting with "__" unless told not to
    recorded = req({"__typename": "User", "a": {"__v": 1}}, query="__x=1")
    received = req({"__typename": "Admin", "a": {"__v": 2}}, query="__x=2")
    assert where(compare(recorded, received, MatchRule())) == {
        ("query", "__x"): ("1", "2"),
        ("body", "$.__typename"): ("User", "Admin"),
        ("body", "$.a.__v"): (1, 2),
    }


def test_exact_fields_query_and_headers_are_named():
    r = rule(headers=["X-Api-Version"])
    recorded = req({"a": 1}, query="page=1&tag=a&tag=b&gone=1",
                   headers=(*JSON, ("X-Api-Version", "2024-01"), ("X-Other", "1")))
    received = req({"a": 1}, method="put", host="API.EXAMPLE.COM", path="/v1/charges/",
                   port=8443, query="tag=a&tag=c&page=2&new=1",
                   headers=(*JSON, ("x-api-version", "2025-01"), ("X-Other", "2")))
    differences = compare(recorded, received, r)
    assert where(differences) == {
        ("method", ""): ("POST", "PUT"),
        ("port", ""): (443, 8443),
        ("path", ""): ("/v1/charges", "/v1/charges/"),
        ("query", "gone"): ("1", MISSING),
        ("query", "new"): (MISSING, "1"),
        ("query", "page"): ("1", "2"),
        ("query", "tag"): (["a", "b"], ["a", "c"]),
        ("header", "x-api-version"): ("2024-01", "2025-01"),
    }
    # exact fields first, then query, headers, body
    assert [d.field for d in differences] == ["method", "port", "path", "query", "query",
                                              "query", "query", "header"]


def test_ignored_fields_never_show_up():
    r = rule(ignore_json=["$.request_id", "$..nonce"], ignore_query=["ts"],
             headers=["*"], ignore_headers=["date"])
    recorded = req({"request_id": "r1", "amount": 1, "meta": {"nonce": "a"}}, query="ts=1",
                   headers=(*JSON, ("Date", "Mon")))
    received = req({"request_id": "r2", "amount": 2, "meta": {"nonce": "b"}}, query="ts=2",
                   headers=(*JSON, ("Date", "Tue")))
    assert where(compare(recorded, received, r)) == {("body", "$.amount"): (1, 2)}


def test_graphql_multipart_and_bytes_locations():
    def gql(variables):
        return req({"query": "query Q { a }", "operationName": "Q", "variables": variables},
                   path="/graphql")

    assert where(compare(gql({"id": 1, "f": {"x": [1]}}), gql({"id": 2, "f": {"x": [2]}}),
                         MatchRule())) == {
        ("body", "graphql variables.id"): (1, 2),
        ("body", "graphql variables.f.x[0]"): (1, 2),
    }

    def upload(boundary, content):
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n{content}"
                f"\r\n--{boundary}--\r\n").encode()
        return req(body, headers=(("Content-Type", f"multipart/form-data; boundary={boundary}"),))

    assert where(compare(upload("x1", "old"), upload("y2", "new"), MatchRule())) == {
        ("body", "multipart part 2"): (b"old", b"new")}
    text = (("Content-Type", "text/plain"),)
    assert where(compare(req(b"abc", headers=text), req(b"abd", headers=text), MatchRule())) \
        == {("body", ""): (b"abc", b"abd")}


def test_a_body_nested_too_deeply_for_a_field_level_diff_is_shown_whole():
    deep_a = b"[" * 600 + b"1" + b"]" * 600
    deep_b = b"[" * 600 + b"2" + b"]" * 600
    (d,) = compare(req(deep_a), req(deep_b), MatchRule())
    assert d.field == "body"
    assert "recorded" in d.describe() and json.dumps(d.as_json())


def test_difference_text_and_json():
    d = Difference("body", "$.amount", 1200, 1500)
    assert d.describe() == "body $.amount: recorded 1200, received 1500"
    assert d.as_json() == {"field": "body", "location": "$.amount", "recorded": 1200,
                           "received": 1500}
    gone = Difference("query", "page", "1", MISSING)
    assert gone.describe() == 'query page: recorded "1", received (missing)'
    assert gone.as_json()["received"] is None
    assert Difference("method", "", "POST", "PUT").describe() == \
        'method: recorded "POST", received "PUT"'
    raw = Difference("body", "", b"caf\xc3\xa9", b"\xff\xfe")
    assert raw.as_json()["recorded"] == "café" and raw.as_json()["received"] == "<2 bytes>"
    long = Difference("body", "$.text", "x" * 500, "y")
    assert len(long.describe()) < 200 and "…" in long.describe()
    assert json.dumps(Difference("body", "", b"z" * 10_000, b"").as_json())


# -- ranking ---------------------------------------------------------------------------


def test_rank_prefers_method_and_host_then_path_then_fewest_differences():
    incoming = req({"amount": 1500, "currency": "eur"}, path="/v1/charges")
    recorded = [
        req({"amount": 1500, "currency": "eur"}, method="GET"),  # other method, same rest
        req({"amount": 1500, "currency": "eur"}, host="api.example.org"),  # other host
        req({"amount": 1, "currency": "usd"}, path="/v1/refunds"),  # other path
        req({"amount": 1, "currency": "usd"}),  # same path, two differences
        req({"amount": 1200, "currency": "eur"}),  # same path, one difference
        req({"amount": 1, "currency": "usd"}, path="/v1/charge"),  # similar path
    ]
    ranked = rank(incoming, enumerate(interaction(q) for q in recorded), MatchRule(), limit=6)
    assert [c.position for c in ranked] == [4, 3, 5, 2, 0, 1]
    assert isinstance(ranked[0], Candidate)
    assert where(ranked[0].differences) == {("body", "$.amount"): (1200, 1500)}
    assert [c.position for c in rank(incoming, enumerate(interaction(q) for q in recorded),
                                     MatchRule())] == [4, 3, 5]


def test_rank_keeps_recorded_order_among_equals_and_handles_an_empty_cassette():
    q = req({"a": 1})
    same = [interaction(req({"a": 2})) for _ in range(3)]
    assert [c.position for c in rank(q, enumerate(same), MatchRule())] == [0, 1, 2]
    assert rank(q, [], MatchRule()) == []


# -- ReplayIndex.closest -----------------------------------------------------------------


def test_closest_ranks_and_reports_field_level_differences():
    config = MatchConfig(base=rule(headers=["x-api-version"]))
    charge = req({"amount": 1200, "currency": "eur"}, query="expand=customer",
                 headers=(*JSON, ("X-Api-Version", "1")))
    index = ReplayIndex(cassette(
        req({"q": 1}, method="GET", path="/v1/charges"),
        req({"amount": 1200}, host="other.example.com"),
        charge,
        req({"amount": 1200, "currency": "eur"}, path="/v1/customers",
            headers=(*JSON, ("X-Api-Version", "1"))),
    ), config)
    incoming = req({"currency": "eur", "amount": 1500}, query="expand=invoice",
                   headers=(*JSON, ("x-api-version", "2")))
    assert index.match(incoming) is None
    closest = index.closest(incoming)
    assert closest[0].position == 2
    assert where(closest[0].differences) == {
        ("query", "expand"): ("customer", "invoice"),
        ("header", "x-api-version"): ("1", "2"),
        ("body", "$.amount"): (1200, 1500),
    }
    assert [c.position for c in closest] == [2, 3, 0]  # other hosts only when nothing else
    assert [c.position for c in index.closest(incoming, limit=1)] == [2]
    lonely = req({"amount": 1}, host="other.example.com", path="/x")
    assert [c.position for c in index.closest(lonely)] == [1]


def test_closest_falls_back_to_other_hosts_and_is_empty_for_an_empty_cassette():
    index = ReplayIndex(cassette(req({"a": 1}, host="a.example"), req({"a": 1}, host="b.example")))
    assert {c.position for c in index.closest(req({"a": 1}, host="c.example"))} == {0, 1}
    assert ReplayIndex(cassette()).closest(req({"a": 1})) == []


def test_closest_uses_the_rule_of_the_route():
    config = MatchConfig(routes=((parse_route("POST api.example.com/v1/*"),
                                  {"ignore_json": ["$.request_id"]}),))
    index = ReplayIndex(cassette(req({"request_id": "r1", "amount": 1200})), config)
    incoming = req({"request_id": "r2", "amount": 1500})
    assert where(index.closest(incoming)[0].differences) == {("body", "$.amount"): (1200, 1500)}


def test_closest_finds_the_same_path_in_a_huge_cassette():
    # the only recording with this path is the very last of 100,000
    entries = [
        (("POST", "https", "api.example.com", 443, f"/v1/items/{i}", "", JSON,
          json.dumps({"id": i, "amount": i * 7}).encode(), "HTTP/1.1"),
         (200, "OK", (), str(i).encode(), "HTTP/1.1"), 0.0, 0.0, 0.0)
        for i in range(100_000)
    ]
    index = ReplayIndex(CassetteFile("big", entries))
    incoming = req({"amount": 1, "id": 99_999}, path="/v1/items/99999")
    assert index.match(incoming) is None
    best = index.closest(incoming)[0]
    assert best.position == 99_999
    assert where(best.differences) == {("body", "$.amount"): (699_993, 1)}


# -- render_candidates and the session's miss report ---------------------------------


def test_render_candidates():
    assert render_candidates([]) == ["The cassette is empty."]
    first = Candidate(4, interaction(req({"a": 1}, query="x=1")),
                      (Difference("body", "$.amount", 1200, 1500),))
    used_up = Candidate(0, interaction(req({"a": 1}, method="GET", path="/v1/x")), ())
    many = Candidate(1, interaction(req({"a": 1})),
                     tuple(Difference("body", f"$.f{i:02}", i, -i) for i in range(13)))
    lines = render_candidates([first, used_up, many])
    assert lines[:2] == ["Closest recorded: #5 POST https://api.example.com/v1/charges?x=1",
                         "  body $.amount: recorded 1200, received 1500"]
    assert lines[2] == "Next closest: #1 GET https://api.example.com/v1/x"
    assert "no differences" in lines[3] and 'on_exhausted = "error"' in lines[3]
    assert lines[4] == "Next closest: #2 POST https://api.example.com/v1/charges"
    assert len(lines) == 5 + 10 + 1 and lines[-1] == "  … and 3 more differences"


@pytest.fixture
def charges(tmp_path):
    save_cassette(tmp_path / "charges.cassette", [
        interaction(req({"amount": 1200, "currency": "eur"})),
        interaction(req({"amount": 99}, path="/v1/refunds")),
    ])
    return tmp_path


def test_an_unmatched_request_names_the_closest_recording_and_the_amount(charges):
    session = CassetteSession(charges, "charges", RecordMode.NONE, match=MatchConfig())
    decision = session.decide(req({"currency": "eur", "amount": 1500}))
    assert isinstance(decision, Unmatched)
    assert decision.closest and decision.closest[0].position == 0
    text = decision.message
    assert "no recorded interaction in cassette 'charges' matches POST " \
           "https://api.example.com/v1/charges" in text
    assert "Closest recorded: #1 POST https://api.example.com/v1/charges\n" in text
    assert "  body $.amount: recorded 1200, received 1500\n" in text
    assert text.index("#1 POST") < text.index("#2 POST")
    doc = decision.as_json()
    assert doc["error"] == "unmatched" and doc["cassette"] == "charges"
    assert doc["request"] == {"method": "POST", "url": "https://api.example.com/v1/charges"}
    assert doc["closest"][0] == {
        "interaction": 1, "method": "POST", "url": "https://api.example.com/v1/charges",
        "differences": [{"field": "body", "location": "$.amount", "recorded": 1200,
                         "received": 1500}],
    }
    assert doc["closest"][1]["interaction"] == 2
    assert json.loads(decision.as_json_bytes()) == doc
    assert session.summary.unmatched == [decision]


def test_a_used_up_sequence_says_so(charges):
    session = CassetteSession(charges, "charges", RecordMode.NONE, strict=True)
    q = req({"amount": 1200, "currency": "eur"})
    assert session.decide(q).served.position == 0
    decision = session.decide(q)
    assert isinstance(decision, Unmatched)
    assert decision.closest[0].differences == ()
    assert "no differences: the recorded sequence for it is used up" in decision.message
    assert decision.as_json()["closest"][0]["differences"] == []
