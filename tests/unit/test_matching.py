"""ReplayIndex: which recorded interaction answers a request, and in what order."""

import dataclasses

import pytest

from replayproxy.cassette.format import encode_interaction
from replayproxy.cassette.store import CassetteFile
from replayproxy.errors import CassetteError
from replayproxy.matching.index import ReplayIndex
from tests.factories import interaction, request

BASE = request("POST", "/v1/charges?a=1&b=2", body=b"{}")


def recorded(*pairs):
    """A cassette of (request, response body) pairs."""
    return CassetteFile.from_interactions("test", [interaction(q, body) for q, body in pairs])


def body_of(index, request):
    served = index.match(request)
    return None if served is None else served.interaction.response.body


def test_exact_request_matches():
    index = ReplayIndex(recorded((BASE, b"r")))
    served = index.match(BASE)
    assert served is not None
    assert served.position == 0 and not served.repeated
    assert served.interaction.request == BASE and served.interaction.response.body == b"r"


@pytest.mark.parametrize(
    "change",
    [
        {"method": "PUT"},
        {"scheme": "http"},
        {"host": "api.example.org"},
        {"port": 8443},
        {"path": "/v1/charges/"},
        {"path": "/V1/charges"},
        {"query": "a=1&b=3"},
        {"query": "a=1"},
        {"query": "a=1&b=2&c="},
        {"query": ""},
        {"body": b"{ }"},
        {"body": b""},
    ],
)
def test_each_field_makes_a_difference(change):
    other = dataclasses.replace(BASE, **change)
    index = ReplayIndex(recorded((BASE, b"base"), (other, b"other")))
    assert body_of(index, BASE) == b"base"
    assert body_of(index, other) == b"other"
    lonely = ReplayIndex(recorded((BASE, b"base")))
    assert lonely.match(other) is None


def test_query_order_does_not_matter():
    index = ReplayIndex(recorded((BASE, b"r")))
    assert body_of(index, dataclasses.replace(BASE, query="b=2&a=1")) == b"r"


def test_query_values_are_compared_exactly():
    # percent-escapes that are not UTF-8 must not collapse into the same parameter value
    ff = dataclasses.replace(BASE, query="sig=%FF")
    fe = dataclasses.replace(BASE, query="sig=%FE")
    index = ReplayIndex(recorded((ff, b"ff"), (fe, b"fe")))
    assert body_of(index, fe) == b"fe"
    assert body_of(index, ff) == b"ff"
    assert ReplayIndex(recorded((ff, b"ff"))).match(fe) is None


def test_headers_do_not_take_part_in_matching():
    index = ReplayIndex(recorded((BASE, b"r")))
    assert body_of(index, dataclasses.replace(BASE, headers=(("X-Request-Id", "42"),))) == b"r"


def test_host_scheme_and_method_case_do_not_matter():
    index = ReplayIndex(recorded((BASE, b"r")))
    assert body_of(index, dataclasses.replace(BASE, host="API.Example.COM")) == b"r"
    assert body_of(index, dataclasses.replace(BASE, scheme="HTTPS", method="post")) == b"r"


def test_repeated_requests_are_served_in_order_then_the_last_repeats():
    index = ReplayIndex(recorded((BASE, b"pending"), (BASE, b"pending2"), (BASE, b"done")))
    served = [s for _ in range(5) if (s := index.match(BASE)) is not None]
    assert len(served) == 5
    assert [s.interaction.response.body for s in served] == [
        b"pending", b"pending2", b"done", b"done", b"done"
    ]
    assert [s.position for s in served] == [0, 1, 2, 2, 2]
    assert [s.repeated for s in served] == [False, False, False, True, True]


def test_strict_index_stops_after_the_recorded_sequence():
    index = ReplayIndex(recorded((BASE, b"pending"), (BASE, b"done")), strict=True)
    assert body_of(index, BASE) == b"pending"
    assert body_of(index, BASE) == b"done"
    assert index.match(BASE) is None
    assert index.match(BASE) is None


def test_sequences_of_different_requests_are_independent():
    other = dataclasses.replace(BASE, path="/v1/refunds")
    index = ReplayIndex(recorded((BASE, b"a1"), (other, b"b1"), (BASE, b"a2"), (other, b"b2")))
    assert [body_of(index, q) for q in (other, BASE, BASE, other, other)] == [
        b"b1", b"a1", b"a2", b"b2", b"b2"
    ]


def test_unused_lists_positions_never_served():
    other = dataclasses.replace(BASE, path="/other")
    index = ReplayIndex(recorded((BASE, b"1"), (other, b"2"), (BASE, b"3"), (other, b"4")))
    assert index.unused() == [0, 1, 2, 3]
    index.match(BASE)
    assert index.unused() == [1, 2, 3]
    index.match(BASE)
    index.match(BASE)  # repeat of position 2 changes nothing
    assert index.unused() == [1, 3]
    index.match(dataclasses.replace(BASE, path="/nowhere"))
    assert index.unused() == [1, 3]


def test_empty_cassette_matches_nothing():
    index = ReplayIndex(CassetteFile("empty", ()))
    assert index.match(BASE) is None and index.unused() == []


def test_malformed_entry_is_a_cassette_error():
    good = encode_interaction(interaction(BASE))
    with pytest.raises(CassetteError, match="malformed interaction #2"):
        ReplayIndex(CassetteFile("broken", [good, (None,)]))


def test_lookup_in_a_cassette_of_100k_entries():
    n = 100_000
    template = encode_interaction(interaction(BASE))
    q, r = template[0], template[1]
    entries = [
        ((q[0], q[1], q[2], q[3], f"/items/{i % 50_000}", f"page={i // 50_000}", q[6], b"",
          q[8]), (r[0], r[1], r[2], str(i).encode(), r[4]), 0.0, 0.0, 0.0)
        for i in range(n)
    ]
    index = ReplayIndex(CassetteFile("big", entries))
    for i in (0, 1, 49_999, 50_000, 77_777, n - 1):
        request = dataclasses.replace(BASE, path=f"/items/{i % 50_000}",
                                      query=f"page={i // 50_000}", body=b"")
        served = index.match(request)
        assert served is not None and served.position == i
        assert served.interaction.response.body == str(i).encode()
    assert index.match(dataclasses.replace(BASE, path="/items/50000", query="page=0",
                                           body=b"")) is None
    assert len(index.unused()) == n - 6
