"""Route patterns: ``[METHOD ]TARGET`` with globs over host/path or the full URL, or ``re:``."""

import pytest

from replayproxy.routes import Route, parse_route
from tests.factories import request


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
        (request("POST", "/v1/charges"), True),
        (request("post", "/v1/charges"), True),
        (request("POST", "https://API.Example.COM/v1/charges"), True),
        (request("POST", "/v1/"), True),
        (request("POST", "/v1/charges/ch_1/refunds?x=1"), True),
        (request("POST", "http://api.example.com:8080/v1/charges"), True),
        (request("GET", "/v1/charges"), False),
        (request("PUT", "/v1/charges"), False),
        (request("POST", "/v2/charges"), False),
        (request("POST", "/v1"), False),
        (request("POST", "https://api.example.org/v1/charges"), False),
        (request("POST", "https://sandbox.api.example.com/v1/charges"), False),
        (request("POST", "https://evilapi.example.com/v1/charges"), False),
        (request("POST", "/x/v1/charges"), False),
    ],
)
def test_method_and_host_path_glob(request_, expected):
    assert matches("POST api.example.com/v1/*", request_) is expected


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (request("GET", "/search"), True),
        (request("GET", "/search/users"), True),
        (request("DELETE", "https://other.example.net/searching"), True),
        (request("GET", "/v1/search?q=x"), True),
        (request("GET", "/v1/items?search=1"), False),  # the query is not part of it
        (request("GET", "/Search"), False),  # paths are case-sensitive
    ],
)
def test_any_host_glob(request_, expected):
    assert matches("*/search*", request_) is expected


@pytest.mark.parametrize(
    ("method", "expected"),
    [("GET", True), ("HEAD", True), ("head", True), ("POST", False), ("OPTIONS", False)],
)
def test_several_methods_and_any_target(method, expected):
    assert matches("GET|HEAD *", request(method, "https://any.host/anything")) is expected


@pytest.mark.parametrize("pattern", ["*", "* *", "*/*"])
def test_match_everything(pattern):
    for request_ in (request("GET", "/v1/charges"), request("PATCH", "https://h/"),
                     request("GET", "https://x.y:1/a/b/c")):
        assert matches(pattern, request_)


def test_a_method_star_means_any_method():
    assert matches("* api.example.com/v1/*", request("PATCH", "/v1/charges"))
    assert not matches("* api.example.com/v1/*", request("PATCH", "/v2/x"))


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (request("GET", "/"), True),
        (request("GET", "/v1/charges"), True),
        (request("DELETE", "https://API.EXAMPLE.COM/x"), True),
        (request("GET", "http://api.example.com/"), True),
        (request("GET", "https://api.example.com.evil.net/"), False),
        (request("GET", "https://xapi.example.com/"), False),
        (request("GET", "https://example.com/"), False),
    ],
)
def test_bare_host_means_every_path_on_it(request_, expected):
    assert matches("api.example.com", request_) is expected


def test_path_case_is_kept_in_the_glob_while_host_case_is_not():
    route = "API.Example.com/v1/Users/*"
    assert matches(route, request("GET", "/v1/Users/1"))
    assert not matches(route, request("GET", "/v1/users/1"))


ON_8443 = "https://api.example.com:8443/v1/*"


@pytest.mark.parametrize(
    ("pattern", "request_", "expected"),
    [
        (ON_8443, request("GET", "https://api.example.com:8443/v1/x"), True),
        (ON_8443, request("GET", "/v1/x"), False),
        (ON_8443, request("GET", "http://api.example.com:8443/v1/x"), False),
        ("https://api.example.com/v1/*", request("GET", "/v1/x"), True),
        ("https://api.example.com/v1/*", request("GET", "https://api.example.com:8443/v1/x"),
         False),
        ("http://*/health", request("GET", "http://api.example.com/health"), True),
        ("http://*/health", request("GET", "/health"), False),
        ("http://*:8080/*", request("GET", "http://localhost:8080/a"), True),
        ("http://*:8080/*", request("GET", "http://localhost:8081/a"), False),
        ("POST https://api.example.com/v1/*", request("GET", "/v1/x"), False),
        ("POST https://api.example.com/v1/*", request("POST", "/v1/x"), True),
        ("https://api.example.com/v1/charge?", request("GET", "/v1/charges"), True),
        ("https://api.example.com/v1/charge?", request("GET", "/v1/charge"), False),
    ],
)
def test_full_url_globs(pattern, request_, expected):
    assert matches(pattern, request_) is expected


@pytest.mark.parametrize(
    ("pattern", "request_", "expected"),
    [
        (r"re:^api\.example\.com/v1/charges/\w+$", request("GET", "/v1/charges/ch_1"), True),
        (r"re:^api\.example\.com/v1/charges/\w+$", request("GET", "/v1/charges/ch_1/refunds"),
         False),
        (r"re:^api\.example\.com/v1/charges/\w+$", request("GET", "/v1/charges"), False),
        (r"re:/v\d+/", request("GET", "/v2/x"), True),  # searched, not anchored
        (r"re:/v\d+/", request("GET", "/latest/x"), False),
        (r"DELETE re:/charges/", request("DELETE", "/v1/charges/1"), True),
        (r"DELETE re:/charges/", request("GET", "/v1/charges/1"), False),
        (r"re:^https://api\.example\.com:8443/",
         request("GET", "https://api.example.com:8443/v1/charges"), True),
        (r"re:^https://api\.example\.com:8443/", request("GET", "/v1/charges"), False),
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


# -- host:port/path, and routes that could never apply (#12) ----------------------------


@pytest.mark.parametrize(
    ("pattern", "request_", "expected"),
    [
        ("127.0.0.1:8443/v1/*", request("GET", "https://127.0.0.1:8443/v1/x"), True),
        ("127.0.0.1:8443/v1/*", request("GET", "http://127.0.0.1:8443/v1/x"), True),
        ("127.0.0.1:8443/v1/*", request("GET", "https://127.0.0.1:8444/v1/x"), False),
        ("127.0.0.1:8443/v1/*", request("GET", "https://127.0.0.1:8443/v2/x"), False),
        ("POST localhost:3000/*", request("POST", "http://localhost:3000/a"), True),
        ("POST localhost:3000/*", request("GET", "http://localhost:3000/a"), False),
        ("api.example.com:443/v1/*", request("GET", "https://api.example.com/v1/x"), True),
        ("*:84*/v1/*", request("GET", "http://sandbox:8443/v1/x"), True),
        ("*:84*/v1/*", request("GET", "http://sandbox:9443/v1/x"), False),
        ("sandbox:8443", request("GET", "http://sandbox:8443/any/path"), True),
        # without a port, any port (as before)
        ("127.0.0.1/v1/*", request("GET", "https://127.0.0.1:8443/v1/x"), True),
    ],
)
def test_host_port_path(pattern, request_, expected):
    assert matches(pattern, request_) is expected


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("GRT api.example.com/*", "unknown method 'GRT'"),
        ("GET|PSOT api.example.com/*", "unknown method 'PSOT'"),
        ("FETCH re:^api", "unknown method 'FETCH'"),
        ("api..example.com/v1/*", "malformed host 'api..example.com'"),
        ("api,example.com/v1/*", "malformed host 'api,example.com'"),
        ("GET *,seed=0", "malformed host '*,seed=0'"),
        ("127.0.0.1:port/v1/*", "malformed port 'port'"),
        ("127.0.0.1:70000/v1/*", "malformed port '70000'"),
        ("127.0.0.1:/v1/*", "malformed port ''"),
        ("/v1/*", "it has no host"),
        ("POST /v1/charges", "it has no host"),
        ("https:///v1/*", "the URL has no host"),
        ("ht tp://x/*", "unknown method 'HT'"),
        ("1http://x/*", "malformed scheme '1http'"),
    ],
)
def test_a_route_that_could_never_apply_is_an_error(pattern, problem):
    with pytest.raises(ValueError) as info:
        parse_route(pattern)
    assert problem in str(info.value) and repr(pattern) in str(info.value)
