"""How the drift check names a failed live call (the network part runs in the
integration tests)."""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest

from replayproxy.drift.live import _describe
from tests.factories import interaction, request

REQUEST = request("GET", "/v1/x")


def _wrapped(root: BaseException, outer: httpx.HTTPError) -> httpx.HTTPError:
    """``outer`` caused by ``root``, as httpx wraps httpcore wraps the OSError."""
    try:
        try:
            raise root
        except BaseException as e:
            raise outer from e
    except httpx.HTTPError as e:
        return e


@pytest.mark.parametrize(("root", "words", "unreachable"), [
    (socket.gaierror(-2, "Name or service not known"), "cannot resolve api.example.com", True),
    (ConnectionRefusedError(111, "refused"), "connection refused by api.example.com:443", True),
    (ssl.SSLCertVerificationError("certificate verify failed"), "--upstream-ca", True),
    (OSError("network is unreachable"), "cannot connect to api.example.com:443", True),
])
def test_connect_errors_are_named_by_their_cause(root, words, unreachable):
    error = _describe(_wrapped(root, httpx.ConnectError("All connection attempts failed")),
                      REQUEST)
    assert words in str(error)
    assert error.unreachable is unreachable


def test_timeouts():
    assert _describe(httpx.ConnectTimeout("t"), REQUEST).unreachable
    read = _describe(httpx.ReadTimeout("t"), REQUEST)
    assert "did not answer in time" in str(read) and "--timeout" in str(read)
    assert not read.unreachable


def test_protocol_errors_are_not_unreachable():
    error = _describe(httpx.RemoteProtocolError("peer closed connection"), REQUEST)
    assert "RemoteProtocolError" in str(error) and not error.unreachable


def test_interactions_are_keyed_by_their_occurrence_numbered_from_1(tmp_path):
    from replayproxy.cassette.store import cassette_path, save_cassette
    from replayproxy.drift.live import load_jobs
    from replayproxy.drift.plan import DriftReport

    other = request("GET", "/v1/y")
    save_cassette(cassette_path(tmp_path, "c"),
                  [interaction(r) for r in (REQUEST, other, REQUEST)])
    jobs = load_jobs(tmp_path, ["c"], DriftReport(("c",)))
    assert [(j.index, j.key) for j in jobs] == [
        (0, "GET https://api.example.com/v1/x #1"), (1, "GET https://api.example.com/v1/y #1"),
        (2, "GET https://api.example.com/v1/x #2")]
