"""Replay is offline: the upstream never sees a connection, for plain HTTP and for
HTTPS CONNECT tunnels, and replay works with the upstream gone."""

from __future__ import annotations

import socket

import pytest

from replayproxy.model import RecordMode
from tests.integration.support import CLIENTS, GZIP_BODY, JSON_BODY, PNG_BODY

PATHS = ["/json", "/gzip", "/png", "/poll?id=1", "/poll?id=1"]


def _fetch(client, upstream):
    return [client.get(upstream.url(p), headers={"Accept-Encoding": "gzip"}) for p in PATHS]


@pytest.mark.parametrize("kind", list(CLIENTS))
def test_replay_opens_no_upstream_connection(kind, upstream, run_proxy):
    with run_proxy("offline", RecordMode.ALL) as p, p.client(kind) as client:
        recorded = _fetch(client, upstream)
    assert upstream.connections >= 1
    assert upstream.total_requests == len(PATHS)

    connections, requests = upstream.connections, upstream.total_requests
    with run_proxy("offline", RecordMode.NONE) as p:
        for n, other in enumerate(CLIENTS):  # every client, not only the one that recorded
            with p.client(other) as client:
                replayed = _fetch(client, upstream)
            assert [r.status for r in replayed] == [200] * len(PATHS)
            assert [r.body for r in replayed[:3]] == [r.body for r in recorded[:3]]
            # the poll sequence is served once, then its last answer repeats
            expected = [recorded[3].body, recorded[4].body] if n == 0 else [recorded[4].body] * 2
            assert [r.body for r in replayed[3:]] == expected
        # an unmatched request does not go upstream either
        with p.client(kind) as client:
            miss = client.get(upstream.url("/json?unrecorded=1"))
    assert miss.status == 502
    assert upstream.connections == connections, f"{upstream.scheme} replay connected upstream"
    assert upstream.total_requests == requests


@pytest.mark.parametrize("kind", list(CLIENTS))
def test_replay_with_upstream_stopped(kind, upstream, run_proxy):
    with run_proxy("gone", RecordMode.ALL) as p, p.client(kind) as client:
        recorded = _fetch(client, upstream)
    upstream.stop()
    with socket.socket() as probe:  # nothing listens there any more
        assert probe.connect_ex(("127.0.0.1", upstream.port)) != 0

    with run_proxy("gone", RecordMode.NONE) as p, p.client(kind) as client:
        replayed = _fetch(client, upstream)
    assert [r.comparable() for r in replayed] == [r.comparable() for r in recorded]
    assert replayed[0].body == JSON_BODY
    assert replayed[1].body == GZIP_BODY
    assert replayed[2].body == PNG_BODY


def test_replay_of_unresolvable_https_host_is_answered_locally(https_upstream, run_proxy):
    """The CONNECT to a host that does not exist is not even attempted: the unmatched
    answer comes from the proxy (lazy connection strategy)."""
    with run_proxy("dns", RecordMode.ALL) as p, p.client("requests") as client:
        client.get(https_upstream.url("/json"))
    with run_proxy("dns", RecordMode.NONE) as p, p.client("curl") as client:
        r = client.get("https://api.nope.invalid/v1/charges")
    assert r.status == 502
    assert r.header("x-replayproxy") == "unmatched"
    assert b"https://api.nope.invalid/v1/charges" in r.body
