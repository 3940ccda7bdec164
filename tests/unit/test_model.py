"""The cassette model: immutable values, URLs, header lookup, record modes."""

import dataclasses

import pytest

from replayproxy.model import Interaction, RecordMode, Request, Response, header_value


@pytest.mark.parametrize(("scheme", "host", "port", "path", "query", "url"), [
    ("https", "api.example.com", 443, "/v1", "", "https://api.example.com/v1"),
    ("http", "example.com", 80, "/", "", "http://example.com/"),
    ("https", "localhost", 8443, "/a", "x=1&y=2", "https://localhost:8443/a?x=1&y=2"),
    ("http", "h", 443, "/", "", "http://h:443/"),
    ("http", "::1", 8080, "/", "", "http://[::1]:8080/"),
    ("https", "::1", 443, "/x", "", "https://[::1]/x"),
], ids=["https-default-port", "http-default-port", "other-port-and-query",
        "https-port-on-http", "ipv6-bracketed-with-port", "ipv6-bracketed"])
def test_request_url_shows_only_a_non_default_port_and_brackets_ipv6(scheme, host, port, path,
                                                                     query, url):
    assert Request("GET", scheme, host, port, path, query).url == url


def test_header_value_is_case_insensitive_and_returns_first():
    headers = (("Set-Cookie", "a=1"), ("content-type", "text/plain"), ("SET-COOKIE", "b=2"))
    assert header_value(headers, "set-cookie") == "a=1"
    assert header_value(headers, "Content-Type") == "text/plain"
    assert header_value(headers, "x-missing") is None


def test_models_are_frozen_and_derived_with_replace():
    req = Request("GET", "https", "h", 443, "/")
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.method = "POST"  # type: ignore[misc]
    post = dataclasses.replace(req, method="POST")
    assert (req.method, post.method) == ("GET", "POST")
    it = Interaction(req, Response(200))
    assert it.response.body == b"" and it.ttfb == 0.0


def test_models_compare_by_value():
    a = Interaction(Request("GET", "http", "h", 80, "/"), Response(200, "OK"), 1.0, 0.1, 0.2)
    b = Interaction(Request("GET", "http", "h", 80, "/"), Response(200, "OK"), 1.0, 0.1, 0.2)
    assert a == b and hash(a) == hash(b)
    assert a != dataclasses.replace(a, duration=0.3)


@pytest.mark.parametrize("mode", list(RecordMode))
def test_record_mode_parse_accepts_every_value(mode):
    assert RecordMode.parse(mode.value) is mode


def test_record_mode_parse_lists_valid_names():
    with pytest.raises(ValueError, match="unknown record mode 'sometimes'") as info:
        RecordMode.parse("sometimes")
    for name in ("once", "new_episodes", "all", "none"):
        assert name in str(info.value)
