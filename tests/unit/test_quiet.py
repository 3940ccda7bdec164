"""Quiet re-records (#15): which differences are noise, what is kept, what is merged."""

from __future__ import annotations

import gzip

from replayproxy.cassette.diff import Change, compare
from replayproxy.cassette.quiet import Quiet, stabilise
from tests.factories import interaction, request, response

ORDER = {"id": "ord_1", "amount": 1200, "request_id": "req_8f2a9c1d4e", "currency": "eur",
         "generated_at": "2026-12-06T14:00:00Z"}


def order(**changes: object) -> object:
    headers = [("Date", "Sun, 06 Dec 2026 14:00:00 GMT"), ("X-Request-Id", "a1"),
               ("Content-Type", "application/json")]
    doc = {**ORDER, **{k: v for k, v in changes.items() if k != "headers"}}
    extra = changes.get("headers", {})
    assert isinstance(extra, dict)
    headers = [(k, extra.get(k, v)) for k, v in headers]
    return interaction("/v1/orders/ord_1", response(json=doc, headers=[
        h for h in headers if h[0] != "Content-Type"]))


FRESH = order(request_id="req_77b0e3aa91", generated_at="2026-12-06T15:30:00Z",
              headers={"Date": "Sun, 06 Dec 2026 15:30:00 GMT", "X-Request-Id": "b2"})


def test_fresh_dates_ids_and_timestamps_are_noise():
    changes = compare(order(), FRESH)
    assert [c.where for c in changes] == [
        "response header Date", "response header X-Request-Id",
        "response body $.generated_at", "response body $.request_id"]
    assert all(Quiet().noise(c) for c in changes)


def test_an_unchanged_api_keeps_the_recorded_interaction():
    assert stabilise(Quiet(), [order()], [FRESH]) == [0]


def test_a_real_change_is_written_with_its_noise_undone():
    changed = order(amount=1500, request_id="req_77b0e3aa91",
                    headers={"Date": "Sun, 06 Dec 2026 15:30:00 GMT", "X-Request-Id": "b2"})
    [merged] = stabilise(Quiet(), [order()], [changed])
    assert not isinstance(merged, int)
    assert [(c.where, c.old, c.new) for c in compare(order(), merged)] == [
        ("response body $.amount", 1200, 1500)]


def test_no_keep_writes_everything_as_re_recorded():
    assert stabilise(Quiet(keep=False), [order()], [FRESH]) == [FRESH]


def test_shape_and_status_changes_are_real():
    assert stabilise(Quiet(), [order()], [order(amount=None)])[0] != 0
    gone = interaction("/v1/orders/ord_1", response(json={"id": "ord_1"}))
    assert not all(Quiet().noise(c) for c in compare(order(), gone))
    assert not Quiet().noise(Change("status", 200, 500))


def test_configured_paths_and_headers_are_noise():
    old = interaction("/x", response(json={"meta": {"build": "b-1"}, "items": [{"rev": 1}]},
                                     headers=[("X-Build", "1")]))
    new = interaction("/x", response(json={"meta": {"build": "b-2"}, "items": [{"rev": 2}]},
                                     headers=[("X-Build", "2")]))
    assert stabilise(Quiet(), [old], [new]) != [0]
    assert stabilise(Quiet(ignore=("$.meta.build", "$.items[*].rev", "x-build")),
                     [old], [new]) == [0]
    assert stabilise(Quiet(ignore=("$..build", "$..rev", "X-Build")), [old], [new]) == [0]


def test_noise_is_learned_from_a_request_answered_twice():
    def poll(state: str, seq: str) -> object:
        return interaction("/poll", response(json={"state": state, "seq": seq}))

    # within the re-recording, the same request got two different "seq": volatile
    old = [poll("done", "alpha"), poll("done", "beta")]
    new = [poll("done", "gamma"), poll("done", "delta")]
    assert stabilise(Quiet(), old, new) == [0, 1]
    # a value that never varied within one recording is real when it changes
    assert stabilise(Quiet(), [poll("pending", "alpha")], [poll("done", "alpha")]) != [0]
    # a whole text body that varied is not learned: it is the content, not a value
    counted = [interaction("/n", "n#1"), interaction("/n", "n#2")]
    assert stabilise(Quiet(), counted, [interaction("/n", "n#3"), interaction("/n", "n#4")]) \
        == [interaction("/n", "n#3"), interaction("/n", "n#4")]


def test_rotated_credentials_and_re_encoded_bodies_are_noise():
    auth = [("Authorization", "Bearer <redacted:authorization:0a1b2c>")]
    old = interaction(request("GET", "/me", headers=auth), response(body=gzip.compress(
        b'{"a": 1}', mtime=1), headers=[("Content-Encoding", "gzip")]))
    new = interaction(request("GET", "/me", headers=[
        ("Authorization", "Bearer <redacted:authorization:d4e5f6>")]), response(
        body=gzip.compress(b'{"a": 1}', mtime=2), headers=[("Content-Encoding", "gzip")]))
    assert stabilise(Quiet(), [old], [new]) == [0]


def test_websocket_messages_and_trailers_are_content():
    from dataclasses import replace

    from replayproxy.model import WebSocketLog, WebSocketMessage

    def socket(text: str, at: float) -> object:
        log = WebSocketLog((WebSocketMessage(True, b"hi", True, at),
                            WebSocketMessage(False, text.encode(), True, at + 1)), 1000)
        return replace(interaction("/ws", response(101)), websocket=log)

    assert compare(socket("hello", 0.1), socket("hello", 0.5)) == []  # times are not content
    [change] = compare(socket("hello", 0.1), socket("bye", 0.1))
    assert (change.where, change.old, change.new) == ("websocket message 2", "server: hello",
                                                      "server: bye")
    assert not Quiet().noise(change)
    old = interaction("/g", response(body=b"x"))
    new = replace(old, response=replace(old.response, trailers=(("grpc-status", "13"),)))
    assert [c.where for c in compare(old, new)] == ["response trailer grpc-status"]
    assert stabilise(Quiet(), [old], [new]) == [new]


def test_a_streamed_body_keeps_its_bytes_when_merged():
    from dataclasses import replace

    old = order()
    new = replace(order(amount=1500, request_id="req_77b0e3aa91"),
                  chunks=((0.0, 10), (0.1, 200)))
    [merged] = stabilise(Quiet(), [old], [new])
    assert not isinstance(merged, int)
    assert merged.response.body == new.response.body and merged.chunks == new.chunks
