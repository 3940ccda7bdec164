"""Route patterns: ``[METHOD ]TARGET`` with globs over host/path or the full URL, or ``re:``."""

import pytest

from replayproxy.model import Request
from replayproxy.routes import Route, parse_route


def req(method="GET", url_host="api.example.com", path="/v1/charges", *, scheme="https",
        port=443, query=""):
    return Request(method, scheme, url_host, port, path, query)


def matches(pattern, request):
    route = parse_route(pattern)
    assert isinstance(route, Route) and route.text == pattern
    # matches() and matches_fields() must agree
    via_fields = route.matches_fields(request.method, request.scheme, request.host,
                                      request.port, request.path)
    assert route.matches(request) is via_fields
    return via_fields


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (req("POST", path="/v1/charges"), True),
        (req("post", path="/v1/charges"), True),
        (req("POST", "API.Example.COM", "/v1/charges"), True),
        (req("POST", path="/v1/"), True),
        (req("POST", path="/v1/charges/ch_1/refunds", query="x=1"), True),
        (req("POST", path="/v1/charges", scheme="http", port=8080), True),
        (req("GET", path="/v1/charges"), False),
        (req("PUT", path="/v1/charges"), False),
        (req("POST", path="/v2/charges"), False),
        (req("POST", path="/v1"), False),
        (req("POST", "api.example.org", "/v1/charges"), False),
        (req("POST", "sandbox.api.example.com", "/v1/charges"), False),
        (req("POST", "evilapi.example.com", "/v1/charges"), False),
        (req("POST", path="/x/v1/charges"), False),
    ],
)
def test_method_and_host_path_glob(request_, expected):
    assert matches("POST api.example.com/v1/*", request_) is expected


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (req(path="/search"), True),
        (req(path="/search/users"), True),
        (req("DELETE", "other.example.net", "/searching"), True),
        (req(path="/v1/search", query="q=x"), True),
        (req(path="/v1/items", query="search=1"), False),  # the query is not part of it
        (req(path="/Search"), False),  # paths are case-sensitive
    ],
)
def test_any_host_glob(request_, expected):
    assert matches("*/search*", request_) is expected


@pytest.mark.parametrize(
    ("method", "expected"),
    [("GET", True), ("HEAD", True), ("head", True), ("POST", False), ("OPTIONS", False)],
)
def test_several_methods_and_any_target(method, expected):
    assert matches("GET|HEAD *", req(method, "any.host", "/anything")) is expected


@pytest.mark.parametrize("pattern", ["*", "* *", "*/*"])
def test_match_everything(pattern):
    for request_ in (req(), req("PATCH", "h", "/"), req("GET", "x.y", "/a/b/c", port=1)):
        assert matches(pattern, request_)


def test_a_method_star_means_any_method():
    assert matches("* api.example.com/v1/*", req("PATCH"))
    assert not matches("* api.example.com/v1/*", req("PATCH", path="/v2/x"))


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (req(path="/"), True),
        (req(path="/v1/charges"), True),
        (req("DELETE", "API.EXAMPLE.COM", "/x"), True),
        (req(path="/", scheme="http", port=80), True),
        (req("GET", "api.example.com.evil.net", "/"), False),
        (req("GET", "xapi.example.com", "/"), False),
        (req("GET", "example.com", "/"), False),
    ],
)
def test_bare_host_means_every_path_on_it(request_, expected):
    assert matches("api.example.com", request_) is expected


def test_path_case_is_kept_in_the_glob_while_host_case_is_not():
    route = "API.Example.com/v1/Users/*"
    assert matches(route, req("GET", "api.example.com", "/v1/Users/1"))
    assert not matches(route, req("GET", "api.example.com", "/v1/users/1"))


@pytest.mark.parametrize(
    ("pattern", "request_", "expected"),
    [
        ("https://api.example.com:8443/v1/*", req(port=8443, path="/v1/x"), True),
        ("https://api.example.com:8443/v1/*", req(port=443, path="/v1/x"), False),
        ("https://api.example.com:8443/v1/*", req(port=8443, path="/v1/x", scheme="http"), False),
        ("https://api.example.com/v1/*", req(port=443, path="/v1/x"), True),
        ("https://api.example.com/v1/*", req(port=8443, path="/v1/x"), False),
        ("http://*/health", req(scheme="http", port=80, path="/health"), True),
        ("http://*/health", req(scheme="https", path="/health"), False),
        ("http://*:8080/*", req("GET", "localhost", "/a", scheme="http", port=8080), True),
        ("http://*:8080/*", req("GET", "localhost", "/a", scheme="http", port=8081), False),
        ("POST https://api.example.com/v1/*", req("GET", path="/v1/x"), False),
        ("POST https://api.example.com/v1/*", req("POST", path="/v1/x"), True),
        ("https://api.example.com/v1/charge?", req(path="/v1/charges"), True),
        ("https://api.example.com/v1/charge?", req(path="/v1/charge"), False),
    ],
)
def test_full_url_globs(pattern, request_, expected):
    assert matches(pattern, request_) is expected


@pytest.mark.parametrize(
    ("pattern", "request_", "expected"),
    [
        (r"re:^api\.example\.com/v1/charges/\w+$", req(path="/v1/charges/ch_1"), True),
        (r"re:^api\.example\.com/v1/charges/\w+$", req(path="/v1/charges/ch_1/refunds"), False),
        (r"re:^api\.example\.com/v1/charges/\w+$", req(path="/v1/charges"), False),
        (r"re:/v\d+/", req(path="/v2/x"), True),  # searched, not anchored
        (r"re:/v\d+/", req(path="/latest/x"), False),
        (r"DELETE re:/charges/", req("DELETE", path="/v1/charges/1"), True),
        (r"DELETE re:/charges/", req("GET", path="/v1/charges/1"), False),
        (r"re:^https://api\.example\.com:8443/", req(port=8443), True),
        (r"re:^https://api\.example\.com:8443/", req(port=443), False),
    ],
)
def test_regular_expression_routes(pattern, request_, expected):
    assert matches(pattern, request_) is expected


def test_parsed_parts():
    route = parse_route("get|Head api.example.com/v1/*")
    assert route.methods == frozenset({"GET", "HEAD"})
    assert not route.full_url
    assert parse_route("api.example.com").methods is None
    assert parse_route("* api.example.com").methods is None
    assert parse_route("https://api.example.com/*").full_url
    assert parse_route(r"re:^https://api\.example\.com/").full_url


@pytest.mark.parametrize("pattern", ["", "   ", "\t\n"])
def test_empty_patterns_are_rejected(pattern):
    with pytest.raises(ValueError, match="empty route"):
        parse_route(pattern)


@pytest.mark.parametrize("pattern", ["re:((", "POST re:[a-", "re:*x"])
def test_invalid_regular_expressions_are_rejected(pattern):
    with pytest.raises(ValueError, match="invalid regular expression") as info:
        parse_route(pattern)
    assert repr(pattern) in str(info.value)


@pytest.mark.parametrize("pattern", ["POST api.example.com /v1", "GET HEAD x/y", "a b c"])
def test_targets_with_spaces_are_rejected(pattern):
    with pytest.raises(ValueError, match="invalid route") as info:
        parse_route(pattern)
    assert repr(pattern) in str(info.value) and "POST api.example.com/v1/*" in str(info.value)
