"""A request nothing in the cassette matches: 502, `X-Replayproxy: unmatched`, and a
plain-text body saying what was asked and which cassette had no match."""

from __future__ import annotations

import pytest

from replayproxy.model import RecordMode
from tests.integration.support import CLIENTS


@pytest.mark.parametrize("kind", list(CLIENTS))
def test_unmatched_request_gets_502_naming_request_and_cassette(kind, upstream, run_proxy):
    with run_proxy("payments", RecordMode.ALL) as p, p.client(kind) as client:
        client.post(upstream.url("/echo"), b'{"amount": 1}')

    connections = upstream.connections
    with run_proxy("payments", RecordMode.NONE) as p, p.client(kind) as client:
        other_path = client.get(upstream.url("/v1/refunds?limit=3"))
        other_body = client.post(upstream.url("/echo"), b'{"amount": 2}')
        other_method = client.request("PUT", upstream.url("/echo"), body=b'{"amount": 1}')
        matched = client.post(upstream.url("/echo"), b'{"amount": 1}')
    assert matched.status == 200

    for resp, method, url in [
        (other_path, "GET", upstream.url("/v1/refunds?limit=3")),
        (other_body, "POST", upstream.url("/echo")),
        (other_method, "PUT", upstream.url("/echo")),
    ]:
        assert resp.status == 502
        assert resp.header("X-Replayproxy") == "unmatched"
        assert resp.header("content-type").startswith("text/plain")
        text = resp.body.decode("utf-8")
        assert f"{method} {url}" in text
        assert "'payments'" in text
        assert "replayproxy record -c payments" in text  # what to do about it
    assert p.summary is not None
    assert [(u.request.method, u.request.url) for u in p.summary.unmatched] == [
        ("GET", upstream.url("/v1/refunds?limit=3")),
        ("POST", upstream.url("/echo")),
        ("PUT", upstream.url("/echo")),
    ]
    assert upstream.connections == connections


def test_new_episodes_forwards_unmatched_and_records_it(https_upstream, run_proxy):
    with run_proxy("grow", RecordMode.ALL) as p, p.client("httpx") as client:
        client.get(https_upstream.url("/json"))
    with run_proxy("grow", RecordMode.NEW_EPISODES) as p, p.client("httpx") as client:
        assert client.get(https_upstream.url("/json")).status == 200
        assert client.get(https_upstream.url("/png")).status == 200
    assert https_upstream.hits("/json") == 1
    assert https_upstream.hits("/png") == 1
    assert p.summary is not None
    assert (p.summary.replayed, p.summary.recorded) == (1, 1)
    with run_proxy("grow", RecordMode.NONE) as p, p.client("curl") as client:
        assert client.get(https_upstream.url("/png")).status == 200
    assert https_upstream.hits("/png") == 1
