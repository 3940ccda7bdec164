"""The test factories parse URLs the way a Request holds them."""

import pytest

from replayproxy.model import Interaction, Request, Response
from tests.factories import RECORDED_AT, interaction, request, response


@pytest.mark.parametrize(("url", "fields"), [
    ("/v1/items", ("https", "api.example.com", 443, "/v1/items", "")),
    ("/v1/items?a=1&b=2", ("https", "api.example.com", 443, "/v1/items", "a=1&b=2")),
    ("http://h", ("http", "h", 80, "/", "")),
    ("http://localhost:8080/v1/x?a=2", ("http", "localhost", 8080, "/v1/x", "a=2")),
    ("https://Example.COM:8443/p?", ("https", "Example.COM", 8443, "/p", "")),
    ("https://[::1]:8443/x", ("https", "::1", 8443, "/x", "")),
    ("http://[::1]/", ("http", "::1", 80, "/", "")),
], ids=["path", "path-query", "bare-host", "port-query", "host-case", "ipv6-port", "ipv6"])
def test_request_splits_a_url_or_path(url, fields):
    q = request("GET", url)
    assert (q.scheme, q.host, q.port, q.path, q.query) == fields


@pytest.mark.parametrize("url", ["ftp://h/x", "v1/items", "https:///x"])
def test_request_refuses_what_is_not_an_http_url_or_path(url):
    with pytest.raises(ValueError):
        request("GET", url)


def test_json_sets_the_body_and_a_content_type_unless_one_is_given():
    assert request("POST", "/x", json={"a": 1}) == Request(
        "POST", "https", "api.example.com", 443, "/x", "",
        (("Content-Type", "application/json"),), b'{"a": 1}')
    text = (("content-type", "text/plain"),)
    assert response(json=None, headers=text) == Response(200, "OK", text, b"null")


def test_response_reason_is_the_standard_phrase_unless_given():
    assert [response(s).reason for s in (200, 201, 204, 599)] == ["OK", "Created",
                                                                  "No Content", ""]
    assert response(200, "ok", reason="").reason == ""
    assert response(200, "ok").body == b"ok"


def test_interaction_takes_a_path_and_a_body_for_a_get_answered_200():
    assert interaction("/a", b"A1") == Interaction(
        Request("GET", "https", "api.example.com", 443, "/a"), Response(200, "OK", (), b"A1"),
        RECORDED_AT, 0.01, 0.02)
    assert interaction() == Interaction(request(), response(), RECORDED_AT, 0.01, 0.02)
