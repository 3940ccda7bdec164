"""The ALPN policy (issue 13): which protocol a client gets from the proxy when nothing
upstream is connected, from what the cassette recorded for its host."""

from __future__ import annotations

import pytest

from replayproxy.cassette.store import CassetteFile
from replayproxy.decision.alpn import H2, HTTP1, AlpnPolicy, choose_alpn, protocol_of
from replayproxy.model import Interaction, Request, Response

HTTPX = ["http/1.1", "h2"]
CURL = ["h2", "http/1.1"]
GRPC = ["grpc-exp", "h2"]


def test_protocol_of_versions() -> None:
    assert protocol_of("HTTP/2.0") == H2
    assert protocol_of("HTTP/1.1") == HTTP1
    assert protocol_of("HTTP/1.0") == HTTP1


@pytest.mark.parametrize(("offers", "recorded", "records", "expected"), [
    (HTTPX, frozenset({H2}), False, H2),          # httpx replayed over what was recorded
    (HTTPX, frozenset({HTTP1}), False, HTTP1),
    (CURL, frozenset({HTTP1}), False, HTTP1),     # curl recorded over HTTP/1.1 stays there
    (CURL, frozenset({H2, HTTP1}), False, H2),    # both recorded: the client's preference
    (HTTPX, frozenset({H2, HTTP1}), False, HTTP1),
    (["http/1.1"], frozenset({H2}), False, None),  # h2 recorded, not offered: engine
    (GRPC, frozenset({H2}), False, H2),
    (HTTPX, frozenset(), True, H2),               # recording: as a server would
    (GRPC, frozenset(), True, H2),
    (["http/1.1"], frozenset(), True, None),
    (HTTPX, frozenset(), False, None),            # replay, unknown host: engine's default
    (["spdy/3", "weird"], frozenset({H2}), False, None),
])
def test_choose_alpn(offers: list[str], recorded: frozenset[str], records: bool,
                     expected: str | None) -> None:
    assert choose_alpn(offers, recorded, records=records) == expected


def test_http2_disabled_never_picks_h2() -> None:
    assert choose_alpn(HTTPX, frozenset({H2, HTTP1}), records=False, http2=False) == HTTP1
    assert choose_alpn(CURL, frozenset(), records=True, http2=False) is None


def _it(host: str, port: int, version: str) -> Interaction:
    return Interaction(Request("GET", "https", host, port, "/", http_version=version),
                       Response(200, http_version=version))


def test_policy_reads_each_hosts_protocols_from_the_cassette() -> None:
    cassette = CassetteFile.from_interactions("c", [
        _it("api.example.com", 443, "HTTP/2.0"),
        _it("old.example.com", 443, "HTTP/1.1"),
        _it("API.example.com", 8443, "HTTP/1.1"),
    ])
    policy = AlpnPolicy(cassette, records=False)
    assert policy.recorded("api.example.com", 443) == {H2}
    assert policy.recorded("api.example.com", 8443) == {HTTP1}  # case-insensitive host
    assert policy.choose("api.example.com", 443, HTTPX) == H2
    assert policy.choose("old.example.com", 443, CURL) == HTTP1
    assert policy.choose("new.example.com", 443, HTTPX) is None


def test_policy_without_h2_feature_decodes_nothing() -> None:
    cassette = CassetteFile.from_interactions("c", [_it("a.example", 443, "HTTP/1.1")])
    assert "h2" not in cassette.features
    policy = AlpnPolicy(cassette, records=True)
    assert policy.recorded("a.example", 443) == {HTTP1}
    assert policy.choose("a.example", 443, CURL) == HTTP1  # recorded beats "as a server"
    assert policy.choose("b.example", 443, HTTPX) == H2
