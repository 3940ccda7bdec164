"""Matchers: each one on its own, the body kinds, bad bodies, and properties of JSON matching."""

import copy
import gzip
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from replayproxy.cassette.store import CassetteFile
from replayproxy.matching.diagnostics import MISSING, compare
from replayproxy.matching.index import ReplayIndex
from replayproxy.matching.rules import (
    EXACT_MATCHERS,
    MATCHER_NAMES,
    RULE_MATCHERS,
    BodyKind,
    MatchConfig,
    MatchRule,
    body_kind,
    body_view,
    extend_rule,
    headers_view,
    match_key,
    normalise_graphql,
    query_view,
    request_view,
)
from replayproxy.model import Interaction, Request, Response

JSON = (("Content-Type", "application/json"),)
FORM = (("Content-Type", "application/x-www-form-urlencoded"),)
TEXT = (("Content-Type", "text/plain; charset=utf-8"),)
GRAPHQL = (("Content-Type", "application/graphql"),)


# -- the oracle: each matcher as its own small function ----------------------------------
# Independent of match_key and of the diagnostics, so the tests below check those
# against one comparison per matcher.

Matcher = Callable[[Request, Request, MatchRule], str | None]


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False,
                                                                    default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _compare(name: str, recorded: Any, incoming: Any) -> str | None:
    if recorded == incoming:
        return None
    return f"{name}: recorded {_short(recorded)}, got {_short(incoming)}"


def _exact_matcher(name: str) -> Matcher:
    def matcher(recorded: Request, incoming: Request, rule: MatchRule) -> str | None:
        a = request_view(recorded, MatchRule(matchers=frozenset()), (name,))[name]
        b = request_view(incoming, MatchRule(matchers=frozenset()), (name,))[name]
        return _compare(name, a, b)

    matcher.__name__ = name
    return matcher


def query(recorded: Request, incoming: Request, rule: MatchRule) -> str | None:
    """Query parameters as a multimap, order-insensitive, minus ignored names."""
    return _compare("query", query_view(recorded.query, rule), query_view(incoming.query, rule))


def headers(recorded: Request, incoming: Request, rule: MatchRule) -> str | None:
    """The chosen headers, minus ignored ones."""
    return _compare("headers", headers_view(recorded.headers, rule),
                    headers_view(incoming.headers, rule))


def body(recorded: Request, incoming: Request, rule: MatchRule) -> str | None:
    """The body, compared according to its content type."""
    return _compare("body", body_view(recorded, rule), body_view(incoming, rule))


MATCHERS: dict[str, Matcher] = {
    **{name: _exact_matcher(name) for name in EXACT_MATCHERS},
    "query": query,
    "headers": headers,
    "body": body,
}
"""Every matcher by the name used in configuration (the production names: MATCHER_NAMES)."""


def req(body=b"", headers=(), *, method="POST", scheme="https", host="api.example.com",
        port=443, path="/v1/charges", query=""):
    return Request(method, scheme, host, port, path, query, tuple(headers), body)


def rule(**settings):
    """A rule built the way configuration builds it (names lower-cased, lists extended)."""
    return extend_rule(MatchRule(), "test", **settings)


def matched(matcher, recorded, incoming, rule_=None):
    """Run one matcher; check that it agrees with ``match_key`` for the rule matchers."""
    rule_ = rule_ or MatchRule()
    reason = MATCHERS[matcher](recorded, incoming, rule_)
    assert reason is None or isinstance(reason, str) and reason.startswith(f"{matcher}: ")
    if matcher in RULE_MATCHERS:
        only = MatchRule(**{**_fields(rule_), "matchers": frozenset({matcher})})
        assert (match_key(recorded, only) == match_key(incoming, only)) is (reason is None)
    return reason is None


def _fields(rule_):
    return {name: getattr(rule_, name) for name in MatchRule.__slots__ if name != "sources"}


def test_the_registry_names_every_matcher():
    assert set(MATCHERS) == {"method", "scheme", "host", "port", "path", "query", "headers",
                             "body"}
    assert set(EXACT_MATCHERS) | set(RULE_MATCHERS) == set(MATCHERS)
    assert tuple(MATCHERS) == MATCHER_NAMES
    one = req(b'{"a": 1}', JSON, query="x=1")
    for name, matcher in MATCHERS.items():
        assert matcher(one, one, MatchRule()) is None, name


# -- the exact matchers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("matcher", "recorded", "same", "different"),
    [
        ("method", {"method": "POST"}, {"method": "post"}, {"method": "PUT"}),
        ("scheme", {"scheme": "https"}, {"scheme": "HTTPS"}, {"scheme": "http"}),
        ("host", {"host": "api.example.com"}, {"host": "API.Example.COM"},
         {"host": "api.example.org"}),
        ("port", {"port": 443}, {"port": 443}, {"port": 8443}),
        ("path", {"path": "/v1/charges"}, {"path": "/v1/charges"}, {"path": "/v1/Charges"}),
        ("path", {"path": "/v1/charges"}, {"path": "/v1/charges"}, {"path": "/v1/charges/"}),
    ],
)
def test_exact_matchers(matcher, recorded, same, different):
    a = req(**recorded)
    assert matched(matcher, a, req(**same))
    other = req(**different)
    assert not matched(matcher, a, other)
    reason = MATCHERS[matcher](a, other, MatchRule())
    shown = json.dumps(getattr(other, matcher).upper() if matcher == "method"
                       else getattr(other, matcher))
    assert f"got {shown}" in reason
    # every other matcher is blind to this field
    for name in MATCHERS:
        if name != matcher:
            assert matched(name, a, other), name


# -- query -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recorded", "incoming", "expected"),
    [
        ("a=1&b=2", "b=2&a=1", True),
        ("a=1&b=2&a=3", "b=2&a=1&a=3", True),
        ("a=1&a=3", "a=3&a=1", False),  # the values of one name keep their order
        ("q=a%20b", "q=a+b", True),
        ("flag", "flag=", True),
        ("a=1&b=2", "a=1", False),
        ("a=1", "a=1&a=1", False),
        ("a=1&b=2", "a=1&b=3", False),
        ("", "a=1", False),
        ("sig=%FF", "sig=%FE", False),
        ("", "", True),
    ],
)
def test_query_is_an_order_insensitive_multimap(recorded, incoming, expected):
    assert matched("query", req(query=recorded), req(query=incoming)) is expected


def test_ignore_query_drops_the_named_parameters_only():
    r = rule(ignore_query=["ts", "nonce"])
    a = req(query="page=2&ts=1700000000&nonce=abc")
    assert matched("query", a, req(query="nonce=zzz&page=2&ts=1800000000"), r)
    assert matched("query", a, req(query="page=2"), r)
    assert not matched("query", a, req(query="page=3&ts=1700000000&nonce=abc"), r)
    assert not matched("query", a, req(query="nonce=zzz&page=2&ts=1800000000"), MatchRule())
    assert query_view("page=2&ts=1&ts=2", r) == {"page": ["2"]}


# -- headers ---------------------------------------------------------------------------


def test_headers_are_not_compared_unless_chosen():
    a = req(headers=(("X-Api-Version", "1"), ("Authorization", "Bearer a")))
    b = req(headers=(("X-Api-Version", "2"),))
    assert headers_view(a.headers, MatchRule()) == {}
    assert matched("headers", a, b)


def test_a_chosen_subset_of_headers_with_names_in_any_case():
    r = rule(headers=["X-Api-Version", "accept"])
    assert r.headers == ("x-api-version", "accept")
    a = req(headers=(("X-API-Version", "2024-01"), ("Accept", "application/json"),
                     ("X-Request-Id", "1"), ("Date", "Mon")))
    b = req(headers=(("accept", "application/json"), ("x-api-version", "2024-01"),
                     ("X-Request-Id", "2")))
    assert matched("headers", a, b, r)
    c = req(headers=(("x-api-version", "2025-01"), ("accept", "application/json")))
    assert not matched("headers", a, c, r)
    assert "2025-01" in MATCHERS["headers"](a, c, r)
    d = req(headers=(("accept", "application/json"),))  # the chosen header is missing
    assert not matched("headers", a, d, r)
    # values are compared exactly
    e = req(headers=(("x-api-version", "2024-01"), ("accept", "Application/JSON")))
    assert not matched("headers", a, e, r)


def test_star_compares_every_header_except_hop_by_hop_ones():
    r = rule(headers=["*"])
    a = req(headers=(("Host", "api.example.com"), ("Content-Length", "10"),
                     ("Connection", "keep-alive"), ("Accept", "*/*"), ("X-Trace", "t1")))
    b = req(headers=(("x-trace", "t1"), ("accept", "*/*"), ("content-length", "99"),
                     ("Proxy-Connection", "close")))
    assert matched("headers", a, b, r)
    assert not matched("headers", a, req(headers=(("Accept", "*/*"), ("X-Trace", "t2"))), r)
    assert not matched("headers", a, req(headers=(("Accept", "*/*"),)), r)
    assert not matched("headers", a, req(headers=(*a.headers, ("X-New", "1"))), r)


def test_ignore_headers_wins_over_star_and_over_a_chosen_name():
    r = rule(headers=["*"], ignore_headers=["X-Request-Id", "date"])
    a = req(headers=(("Accept", "*/*"), ("X-Request-Id", "1"), ("Date", "Mon, 01 Jan")))
    b = req(headers=(("accept", "*/*"), ("x-request-id", "2"), ("date", "Tue, 02 Jan")))
    assert matched("headers", a, b, r)
    assert matched("headers", a, req(headers=(("Accept", "*/*"),)), r)
    assert not matched("headers", a, req(headers=(("Accept", "text/html"),)), r)
    chosen = rule(headers=["x-request-id", "accept"], ignore_headers=["X-REQUEST-ID"])
    assert matched("headers", a, b, chosen)
    assert headers_view(a.headers, chosen) == {"accept": ["*/*"]}


@pytest.mark.parametrize("names", [["*"], ["content-type"]])
def test_a_compared_content_type_ignores_the_multipart_boundary(names):
    r = rule(headers=names)
    a = req(headers=(("Content-Type", "multipart/form-data; boundary=aaa"),))
    b = req(headers=(("content-type", 'multipart/form-data; Boundary="b;b"'),))
    assert matched("headers", a, b, r)
    assert headers_view(a.headers, r) == {"content-type": ["multipart/form-data"]}
    assert not matched("headers", a, req(headers=(("Content-Type", "multipart/mixed; "
                                                                  "boundary=aaa"),)), r)


def test_repeated_headers_are_compared_as_lists():
    r = rule(headers=["accept"])
    a = req(headers=(("Accept", "a"), ("Accept", "b")))
    assert matched("headers", a, req(headers=(("accept", "a"), ("ACCEPT", "b"))), r)
    assert not matched("headers", a, req(headers=(("accept", "a"),)), r)


# -- body: JSON -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "incoming",
    [
        b'{"b": [1, 2, {"y": 1, "x": 2}], "a": "x"}',
        b'  {\n  "a" : "x",\n\t"b":[1,2,{"x":2,"y":1}]  }\n',
        b'{"a":"\\u0078","b":[1,2,{"x":2,"y":1}]}',
    ],
)
def test_json_bodies_compare_semantically(incoming):
    a = req(b'{"a":"x","b":[1,2,{"x":2,"y":1}]}', JSON)
    assert matched("body", a, req(incoming, JSON))
    assert matched("body", a, req(incoming, (("Content-Type", "application/json; charset=utf-8"),)))
    assert matched("body", a, req(incoming, (("content-type", "application/vnd.api+json"),)))


@pytest.mark.parametrize(
    "incoming",
    [
        b'{"a":"x","b":[2,1,{"x":2,"y":1}]}',  # list order matters
        b'{"a":"x","b":[1,2,{"x":2,"y":1}],"c":null}',
        b'{"a":"X","b":[1,2,{"x":2,"y":1}]}',
        b'{"a":"x","b":[1,2,{"x":"2","y":1}]}',
        b'{"a":"x","b":[1,2,{"x":2.5,"y":1}]}',
        b'{"a":"x","b":[1,2,{"x":true,"y":1}]}',
        b'[{"a":"x","b":[1,2,{"x":2,"y":1}]}]',
    ],
)
def test_json_bodies_that_differ(incoming):
    a = req(b'{"a":"x","b":[1,2,{"x":2,"y":1}]}', JSON)
    assert not matched("body", a, req(incoming, JSON))


def test_json_needs_a_json_content_type_unless_the_rule_says_json():
    a, b = req(b'{"a":1,"b":2}'), req(b'{ "b": 2, "a": 1 }')
    assert not matched("body", a, b)  # no content type: bytes
    assert matched("body", a, b, rule(body=BodyKind.JSON))
    forced = rule(body=BodyKind.BYTES)
    assert not matched("body", req(a.body, JSON), req(b.body, JSON), forced)


def test_a_compressed_json_body_is_compared_by_its_content():
    plain = req(b'{"a": 1, "b": 2}', JSON)
    zipped = req(gzip.compress(b'{"b":2,"a":1}'), (*JSON, ("Content-Encoding", "gzip")))
    assert matched("body", plain, zipped)


@pytest.mark.parametrize(
    ("path", "recorded", "incoming"),
    [
        ("$.a", {"a": 1, "b": 2}, {"b": 2, "a": 99}),
        ("$.a", {"a": 1, "b": 2}, {"b": 2}),
        ("$.items[*].ts", {"items": [{"ts": 1, "v": "x"}, {"ts": 2, "v": "y"}]},
         {"items": [{"v": "x", "ts": 10}, {"v": "y", "ts": 20}]}),
        ("$..nonce", {"nonce": "a", "inner": {"nonce": "b", "deep": [{"nonce": "c", "k": 1}]}},
         {"nonce": "x", "inner": {"nonce": "y", "deep": [{"k": 1, "nonce": "z"}]}}),
        ("$['request id']", {"request id": 1, "k": 2}, {"request id": 3, "k": 2}),
    ],
)
def test_ignore_json_paths(path, recorded, incoming):
    a = req(json.dumps(recorded).encode(), JSON)
    b = req(json.dumps(incoming).encode(), JSON)
    assert not matched("body", a, b)
    assert matched("body", a, b, rule(ignore_json=[path]))


def test_ignore_json_leaves_the_other_fields_compared():
    r = rule(ignore_json=["$.a", "$.items[*].ts", "$..nonce"])
    a = req(b'{"a":1,"b":2,"items":[{"ts":1,"v":1}],"x":{"nonce":1}}', JSON)
    assert body_view(a, r) == {"b": 2, "items": [{"v": 1}], "x": {}}
    for changed in (b'{"a":1,"b":3,"items":[{"ts":1,"v":1}],"x":{"nonce":1}}',
                    b'{"a":1,"b":2,"items":[{"ts":1,"v":2}],"x":{"nonce":1}}',
                    b'{"a":1,"b":2,"items":[{"ts":1,"v":1},{"ts":2}],"x":{"nonce":1}}',
                    b'{"a":1,"b":2,"items":[{"ts":1,"v":1}],"x":{"nonce":1,"y":0}}'):
        assert not matched("body", a, req(changed, JSON), r), changed
    # the ignored path does not leak into other requests' views
    assert body_view(a, MatchRule())["a"] == 1


def test_ignore_json_does_not_apply_to_a_non_json_body():
    r = rule(ignore_json=["$.a"])
    assert not matched("body", req(b'{"a":1}', TEXT), req(b'{"a":2}', TEXT), r)


# -- body: GraphQL -----------------------------------------------------------------------

QUERY = """
query GetUser($id: ID!, $first: Int = 10) {
  user(id: $id) {
    name, email
    friends(first: $first) { ...F }
  }
}
fragment F on User { id name }
"""
REFORMATTED = """# fetch a user
query GetUser( $id:ID! $first :Int=10 ){user(id:$id){name
  email # with comments
  friends(first:$first){...F}}}

fragment F on User{
  id,
  name,
}"""


def gql(query=QUERY, operation="GetUser", variables=None, **extra):
    doc = {"query": query, "operationName": operation,
           "variables": {"id": "u1"} if variables is None else variables, **extra}
    return req(json.dumps(doc).encode(), JSON, path="/graphql")


def test_graphql_text_is_normalised():
    assert normalise_graphql(QUERY) == normalise_graphql(REFORMATTED)
    assert normalise_graphql(QUERY) == (
        "query GetUser($id:ID!$first:Int=10){user(id:$id){name email friends(first:$first)"
        "{...F}}}fragment F on User{id name}"
    )
    # strings keep their content, commas and '#' included
    assert normalise_graphql('{ a(s: "x,  #y") }') == '{a(s:"x,  #y")}'
    assert normalise_graphql('{ a(s: "x, y") }') != normalise_graphql('{ a(s: "x,y") }')
    assert normalise_graphql('{ a(s: """block, "q" """) }') == '{a(s:"""block, "q" """)}'


def test_graphql_json_requests_match_despite_reformatting_and_key_order():
    a = gql()
    b = req(json.dumps({"variables": {"id": "u1"}, "query": REFORMATTED,
                        "operationName": "GetUser"}, indent=2).encode(), JSON, path="/graphql")
    assert matched("body", a, b)
    assert body_view(a, MatchRule()) == {"graphql": {
        "operationName": "GetUser", "query": normalise_graphql(QUERY),
        "variables": {"id": "u1"}}}


@pytest.mark.parametrize(
    "incoming",
    [
        gql(operation="GetOther"),
        gql(variables={"id": "u2"}),
        gql(variables={"id": "u1", "first": 5}),
        gql(query=QUERY.replace("email", "phone")),
        gql(query=QUERY.replace("first: Int = 10", "first: Int = 20")),
    ],
)
def test_graphql_requests_that_differ(incoming):
    assert not matched("body", gql(), incoming)


def test_graphql_ignores_keys_outside_operation_query_and_variables_but_honours_ignore_json():
    assert matched("body", gql(), gql(extensions={"persistedQuery": {"sha": "x"}}))
    a = gql(variables={"id": "u1", "nonce": "n1"})
    b = gql(variables={"nonce": "n2", "id": "u1"})
    assert not matched("body", a, b)
    assert matched("body", a, b, rule(ignore_json=["$.variables.nonce"]))
    # empty variables are the same as none
    no_variables = req(json.dumps({"query": QUERY, "operationName": "GetUser"}).encode(), JSON)
    assert matched("body", gql(variables={}), no_variables)


def test_graphql_with_a_query_string_only_is_recognised():
    a = req(json.dumps({"query": "{ viewer { login } }"}).encode(), JSON)
    b = req(json.dumps({"query": "{viewer{login}}"}).encode(), JSON)
    assert matched("body", a, b)
    # a JSON body whose "query" is not GraphQL stays plain JSON
    s1 = req(json.dumps({"query": "shoes  red"}).encode(), JSON)
    s2 = req(json.dumps({"query": "shoes red"}).encode(), JSON)
    assert not matched("body", s1, s2)
    assert matched("body", s1, s2, rule(body=BodyKind.GRAPHQL))


def test_application_graphql_bodies():
    a = req(QUERY.encode(), GRAPHQL, path="/graphql")
    b = req(REFORMATTED.encode(), (("Content-Type", "application/graphql; charset=utf-8"),),
            path="/graphql")
    assert body_kind(a.headers, MatchRule()) is BodyKind.GRAPHQL
    assert matched("body", a, b)
    assert not matched("body", a, req(QUERY.replace("email", "phone").encode(), GRAPHQL))
    assert body_view(a, MatchRule())["graphql"]["query"] == normalise_graphql(QUERY)


# -- body: forms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recorded", "incoming", "expected"),
    [
        (b"a=1&b=2&a=3", b"b=2&a=1&a=3", True),
        (b"name=J%C3%BCrgen+X", b"name=J%c3%bcrgen%20X", True),
        (b"a=1&a=3", b"a=3&a=1", False),
        (b"a=1&b=2", b"a=1&b=2&c=3", False),
        (b"a=1&b=2", b"a=1&b=22", False),
        (b"", b"", True),
        (b"", b"a=", False),
    ],
)
def test_form_bodies_are_multimaps(recorded, incoming, expected):
    assert matched("body", req(recorded, FORM), req(incoming, FORM)) is expected


def test_ignore_form_drops_fields():
    r = rule(ignore_form=["csrf", "ts"])
    a = req(b"amount=12&csrf=abc&ts=1&ts=2", FORM)
    assert body_view(a, r) == {"amount": ["12"]}
    assert matched("body", a, req(b"ts=9&csrf=zzz&amount=12", FORM), r)
    assert matched("body", a, req(b"amount=12", FORM), r)
    assert not matched("body", a, req(b"amount=13&csrf=abc&ts=1&ts=2", FORM), r)


def test_a_form_body_that_does_not_parse_is_compared_as_bytes():
    broken = req(b"a=1&&=%ZZ;b", FORM)
    assert body_view(broken, MatchRule()) == broken.body
    assert matched("body", broken, req(b"a=1&&=%ZZ;b", FORM))
    assert not matched("body", broken, req(b"a=1&&=%ZZ;c", FORM))
    binary = req(b"\xff\xfe=1", FORM)
    assert body_view(binary, MatchRule()) == b"\xff\xfe=1"


# -- body: multipart ---------------------------------------------------------------------


def multipart(boundary, parts):
    """parts: (name, value, filename or None, content type or None)."""
    out = b""
    for name, value, filename, ctype in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename
                                                     else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if ctype:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + value + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    headers = (("Content-Type", f"multipart/form-data; boundary={boundary}"),)
    return req(out, headers, path="/v1/files")


PARTS = [
    ("purpose", b"dispute_evidence", None, None),
    ("file", b"\x89PNG\r\n\x1a\n\x00binary--data", "receipt.png", "image/png"),
    ("nonce", b"n-1", None, None),
]


def test_multipart_with_another_boundary_matches():
    a = multipart("----boundaryAAAA", PARTS)
    b = multipart("xYz0123456789", PARTS)
    assert a.body != b.body
    assert matched("body", a, b)
    view = body_view(a, MatchRule())["multipart"]
    assert [p[0] for p in view] == ["purpose", "file", "nonce"]
    assert view[1][1:] == ["receipt.png", "image/png", b"\x89PNG\r\n\x1a\n\x00binary--data"]


@pytest.mark.parametrize(
    "change",
    [
        lambda parts: [(n, v + b"!" if n == "file" else v, f, c) for n, v, f, c in parts],
        lambda parts: [(n, v, "other.png" if f else f, c) for n, v, f, c in parts],
        lambda parts: [(n, v, f, "image/jpeg" if c else c) for n, v, f, c in parts],
        lambda parts: parts[:2],
        lambda parts: list(reversed(parts)),
    ],
)
def test_a_changed_part_does_not_match(change):
    assert not matched("body", multipart("AAA", PARTS), multipart("BBB", change(PARTS)))


def test_ignore_form_drops_a_multipart_part():
    r = rule(ignore_form=["nonce"])
    a = multipart("AAA", PARTS)
    b = multipart("BBB", [*PARTS[:2], ("nonce", b"n-2", None, None)])
    assert not matched("body", a, b)
    assert matched("body", a, b, r)
    assert matched("body", a, multipart("CCC", PARTS[:2]), r)


def test_a_multipart_body_without_parts_is_compared_as_bytes():
    headers = (("Content-Type", "multipart/form-data"),)  # no boundary
    a = req(b"just text", headers)
    assert body_view(a, MatchRule()) == b"just text"
    assert not matched("body", a, req(b"other text", headers))


# -- body: bytes, regexes, ignore -----------------------------------------------------------


@pytest.mark.parametrize("headers", [(), TEXT, (("Content-Type", "application/octet-stream"),),
                                     (("Content-Type", "application/xml"),)])
def test_other_bodies_are_compared_as_bytes(headers):
    a = req(b"<a>1</a>", headers)
    assert body_view(a, MatchRule()) == b"<a>1</a>"
    assert matched("body", a, req(b"<a>1</a>", headers))
    assert not matched("body", a, req(b"<a>1</a> ", headers))
    assert not matched("body", a, req(b"<a>2</a>", headers))


def test_ignore_regex_blanks_a_timestamp_in_a_text_body():
    r = rule(ignore_regex=[re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"),
                           re.compile(r"nonce=\w+")])
    a = req(b"report at 2024-05-01T10:00:00Z for acct 7 nonce=abc", TEXT)
    b = req(b"report at 2025-12-31T23:59:59Z for acct 7 nonce=zz9", TEXT)
    assert not matched("body", a, b)
    assert matched("body", a, b, r)
    assert not matched("body", a, req(b"report at 2025-12-31T23:59:59Z for acct 8 nonce=x",
                                      TEXT), r)
    assert body_view(a, r) == b"report at  for acct 7 "


def test_body_ignore_matches_any_body():
    r = rule(body=BodyKind.IGNORE)
    assert matched("body", req(b'{"a":1}', JSON), req(b"totally different", TEXT), r)
    assert matched("body", req(b""), req(b"\x00" * 100), r)
    assert body_view(req(b"x"), r) is None


def test_a_rule_without_the_body_matcher_ignores_bodies():
    only_query = MatchRule(matchers=frozenset({"query"}))
    a, b = req(b"1", query="a=1"), req(b"2", query="a=1")
    assert match_key(a, only_query) == match_key(b, only_query)
    assert match_key(a, MatchRule()) != match_key(b, MatchRule())
    assert match_key(a, only_query) != match_key(req(b"1", query="a=2"), only_query)


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "extra_headers"),
    [
        (b"not json", ()),
        (b"{", ()),
        (b'{"a": 1', ()),
        (b"", ()),
        (b"\xff\xfe\x00garbage", ()),
        (b"{'single': 'quotes'}", ()),
        (b'{"a": 1}{"b": 2}', ()),
        (b"\x1f\x8b\x08 not really gzip", (("Content-Encoding", "gzip"),)),
        (b"[" * 5000 + b"]" * 5000, ()),  # deeper than the JSON parser's recursion limit
    ],
)
def test_a_body_that_claims_json_but_is_not_is_compared_as_bytes(body, extra_headers):
    headers = (*JSON, *extra_headers)
    a = req(body, headers)
    assert body_view(a, MatchRule()) == body
    assert body_view(a, rule(ignore_json=["$..x"], ignore_regex=[re.compile("zz")])) == body
    twin = req(bytes(body), headers)
    assert match_key(a, MatchRule()) == match_key(twin, MatchRule())
    assert matched("body", a, twin)
    other = req(body + b" ", headers)
    assert not matched("body", a, other)
    assert compare(a, other, MatchRule())  # and diagnostics do not crash either


def test_a_json_body_that_is_not_utf8_in_a_graphql_content_type_is_bytes():
    a = req(b"\xff{ a }", GRAPHQL)
    assert body_view(a, MatchRule()) == b"\xff{ a }"
    assert matched("body", a, req(b"\xff{ a }", GRAPHQL))


# -- properties -------------------------------------------------------------------------

KEYS = st.text(max_size=8).filter(lambda k: k != "query")
SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**63)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10))
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children,
                                                                      max_size=4),
    max_leaves=16,
)
OBJECTS = st.dictionaries(KEYS, VALUES, max_size=6)
PROPERTY = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def reordered(value, rnd):
    """The same JSON value with every object's keys in a random order."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: reordered(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [reordered(v, rnd) for v in value]
    return value


def serialised(value, rnd):
    """``value`` as JSON bytes, with random key order, white space and escaping."""
    text = json.dumps(
        reordered(value, rnd),
        indent=rnd.choice([None, 0, 2, "\t"]),
        separators=rnd.choice([(",", ":"), (", ", ": "), (" ,\n ", " :\t")]),
        ensure_ascii=rnd.choice([True, False]),
    )
    return (rnd.choice(["", " ", "\n\t"]) + text + rnd.choice(["", "\r\n", "  "])).encode()


@PROPERTY
@given(doc=OBJECTS, rnd=st.randoms(use_true_random=False))
def test_property_json_key_order_and_white_space_never_change_a_match(doc, rnd):
    a = req(serialised(doc, rnd), JSON)
    b = req(serialised(doc, rnd), JSON)
    assert match_key(a, MatchRule()) == match_key(b, MatchRule())
    assert MATCHERS["body"](a, b, MatchRule()) is None
    assert compare(a, b, MatchRule()) == ()


def containers(value, path=()):
    """Paths (tuples of keys and indexes) of every object inside ``value``."""
    if isinstance(value, dict):
        yield path
        for k, v in value.items():
            yield from containers(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from containers(v, (*path, i))


def get(value, path):
    for step in path:
        value = value[step]
    return value


def json_path(path):
    """A JSONPath that jsonpath-ng parses, quoting every key."""
    out = "$"
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += "['" + step.replace("\\", "\\\\").replace("'", "\\'") + "']"
    return out


# "where" and "wherenot" are jsonpath-ng keywords; they can only be named quoted
FIELD_NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: name not in ("where", "wherenot"))


@PROPERTY
@given(doc=OBJECTS, data=st.data(), rnd=st.randoms(use_true_random=False))
def test_property_an_ignored_field_never_changes_a_match(doc, data, rnd):
    # objects whose keys a quoted JSONPath can name (jsonpath-ng has no escape for every
    # string); the top-level object always qualifies
    where = data.draw(st.sampled_from([
        c for c in containers(doc) if all(isinstance(s, int) or s.isprintable() for s in c)]))
    name = data.draw(FIELD_NAMES)
    v1, v2 = data.draw(VALUES), data.draw(VALUES)
    assume(json.dumps(v1, sort_keys=True) != json.dumps(v2, sort_keys=True))
    docs = []
    for value in (v1, v2):
        d = copy.deepcopy(doc)
        get(d, where)[name] = value
        docs.append(d)
    path = data.draw(st.sampled_from([json_path((*where, name)), f"$..{name}"]))
    r = rule(ignore_json=[path])
    a, b = req(serialised(docs[0], rnd), JSON), req(serialised(docs[1], rnd), JSON)
    assert match_key(a, r) == match_key(b, r), path
    assert MATCHERS["body"](a, b, r) is None
    assert compare(a, b, r) == ()
    # and without the ignore the planted field does make a difference
    assert match_key(a, MatchRule()) != match_key(b, MatchRule())


def leaves(value, path=()):
    """Paths of every scalar and empty container inside ``value``."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from leaves(v, (*path, k))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from leaves(v, (*path, i))
    else:
        yield path


def changed(value):
    """A JSON value that is certainly different from ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "!"
    return "changed"  # None, floats (0.0 == -0.0), empty containers: change the type


def expected_location(path):
    out = "$"
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif step.isidentifier():
            out += f".{step}"
        else:
            out += f"[{json.dumps(step)}]"
    return out


@PROPERTY
@given(doc=OBJECTS.filter(bool), data=st.data(), rnd=st.randoms(use_true_random=False))
def test_property_a_differing_field_that_is_not_ignored_always_changes_a_match(doc, data, rnd):
    where = data.draw(st.sampled_from(list(leaves(doc))))
    old = get(doc, where)
    new = changed(old)
    other = copy.deepcopy(doc)
    get(other, where[:-1])[where[-1]] = new
    unrelated = data.draw(st.sampled_from(["$.zz_not_there", "$..zz_nowhere"]))
    r = rule(ignore_json=[unrelated], ignore_query=["ts"], headers=["x-api"])
    a, b = req(serialised(doc, rnd), JSON), req(serialised(other, rnd), JSON)
    assert match_key(a, r) != match_key(b, r)
    assert MATCHERS["body"](a, b, r) is not None
    differences = compare(a, b, r)
    assert len(differences) == 1
    (d,) = differences
    assert (d.field, d.location) == ("body", expected_location(where))
    assert d.recorded == old and type(d.recorded) is type(old)
    assert d.received == new and type(d.received) is type(new)
    assert d.recorded is not MISSING


# -- the index with JSON-body matching --------------------------------------------------


def test_the_index_matches_json_bodies_recorded_with_another_key_order():
    recorded = [
        req(b'{"amount": 1200, "currency": "eur", "meta": {"a": 1, "b": [1, 2]}}', JSON),
        req(b'{"amount": 1500, "currency": "eur", "meta": {"a": 1, "b": [1, 2]}}', JSON),
    ]
    index = ReplayIndex(CassetteFile.from_interactions("c", [
        Interaction(q, Response(200, body=str(i).encode())) for i, q in enumerate(recorded)]))
    again = req(b'{"meta":{"b":[1,2],"a":1},"currency":"eur","amount":1500}', JSON)
    first = req(b'{\n  "currency": "eur",\n  "meta": {"b": [1, 2], "a": 1},\n  "amount": 1200\n}',
                JSON)
    assert index.match(again).interaction.response.body == b"1"
    assert index.match(first).interaction.response.body == b"0"
    assert index.match(req(b'{"amount": 1300, "currency": "eur", "meta": {"a": 1, "b": [1, 2]}}',
                           JSON)) is None
    assert index.match(req(b'{"meta":{"b":[2,1],"a":1},"currency":"eur","amount":1500}',
                           JSON)) is None


def test_identical_json_requests_replay_in_recorded_order_whatever_their_key_order():
    bodies = [b'{"a": 1, "b": 2}', b'{"b": 2, "a": 1}', b'{"a":1,"b":2}']
    index = ReplayIndex(CassetteFile.from_interactions("c", [
        Interaction(req(b, JSON), Response(200, body=str(i).encode()))
        for i, b in enumerate(bodies)]))
    served = [index.match(req(b'{"b":2,"a":1}', JSON)) for _ in range(4)]
    assert [s.position for s in served] == [0, 1, 2, 2]
    assert [s.repeated for s in served] == [False, False, False, True]


@pytest.fixture(scope="module")
def big_index():
    """100,000 recorded POSTs with JSON bodies, 1,000 per path."""
    entries = [
        (("POST", "https", "api.example.com", 443, f"/v1/accounts/{i % 100}/charges", "",
          JSON, json.dumps({"id": i, "amount": i * 7, "currency": "eur",
                            "meta": {"n": i % 13}}).encode(), "HTTP/1.1"),
         (200, "OK", (), str(i).encode(), "HTTP/1.1"), 0.0, 0.0, 0.0)
        for i in range(100_000)
    ]
    return ReplayIndex(CassetteFile("big", entries), MatchConfig())


def test_lookup_in_a_100k_interaction_cassette_with_json_bodies(big_index):
    for i in [0, 1, 99, 100, 4_242, 50_000, 77_777, 99_998, 99_999]:
        body = json.dumps({"meta": {"n": i % 13}, "currency": "eur", "amount": i * 7, "id": i},
                          indent=1).encode()
        served = big_index.match(req(body, JSON, path=f"/v1/accounts/{i % 100}/charges"))
        assert served is not None and served.position == i
        assert served.interaction.response.body == str(i).encode()
    # a body that is recorded, but under another path
    wrong_path = json.dumps({"id": 5, "amount": 35, "currency": "eur", "meta": {"n": 5}})
    assert big_index.match(req(wrong_path.encode(), JSON, path="/v1/accounts/6/charges")) is None
    changed = json.dumps({"id": 5, "amount": 36, "currency": "eur", "meta": {"n": 5}})
    assert big_index.match(req(changed.encode(), JSON, path="/v1/accounts/5/charges")) is None
