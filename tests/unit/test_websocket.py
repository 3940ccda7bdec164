"""WebSocket replay decisions: message matching, the server's script, faults, redaction."""

from dataclasses import replace

import pytest

from replayproxy.cassette.view import render_websocket, shorten_message, summary_line
from replayproxy.decision.websocket import (
    UNEXPECTED_CODE,
    Close,
    Conversation,
    Drop,
    Send,
    WebSocketFaults,
    replay_problem,
    websocket_faults,
)
from replayproxy.faults.effects import WsClose, WsDelay, WsDrop
from replayproxy.faults.plan import FaultPlan
from replayproxy.faults.spec import parse_fault
from replayproxy.matching.messages import message_differences, messages_match
from replayproxy.matching.rules import BodyKind, MatchRule
from replayproxy.model import (
    Interaction,
    Request,
    Response,
    WebSocketLog,
    WebSocketMessage,
    is_websocket_upgrade,
)
from replayproxy.redaction.redactor import Redactor
from replayproxy.redaction.scan import scan_interaction

HANDSHAKE = Request("GET", "https", "api.example.com", 443, "/ws",
                    headers=(("Upgrade", "websocket"), ("Connection", "Upgrade")))


def server(content: bytes, at: float, text: bool = True) -> WebSocketMessage:
    return WebSocketMessage(False, content, text, at)


def client(content: bytes, at: float, text: bool = True) -> WebSocketMessage:
    return WebSocketMessage(True, content, text, at)


LOG = WebSocketLog(
    (server(b"welcome", 0.5),
     client(b'{"op": "sub", "amount": 1200}', 1.0),
     server(b"ack", 1.25), server(b"\x00\x01", 2.0, text=False),
     client(b"bye", 3.0),
     server(b"later", 3.5)),
    1000, "done", "server")


def talk(log: WebSocketLog = LOG, **kwargs) -> Conversation:
    return Conversation(log, MatchRule(), cassette="c", request=HANDSHAKE, **kwargs)


def test_the_server_speaks_first_with_the_recorded_gap_scaled_by_pace():
    assert talk().start() == [Send(0.5, LOG.messages[0])]
    assert talk(pace=0).start() == [Send(0.0, LOG.messages[0])]
    assert talk(pace=2).start() == [Send(1.0, LOG.messages[0])]


def test_a_matching_client_message_gets_what_followed_it_then_the_recorded_close():
    c = talk()
    c.start()
    # JSON compared semantically: key order and spacing do not matter
    assert c.receive(client(b'{"amount":1200,"op":"sub"}', 0)) == [
        Send(0.25, LOG.messages[2]), Send(0.75, LOG.messages[3])]
    assert c.receive(client(b"bye", 0)) == [Send(0.5, LOG.messages[5]),
                                            Close(0.0, 1000, "done")]
    assert c.finished and c.unexpected is None and c.sent == 4


def test_an_unexpected_message_closes_and_says_what_differs():
    c = talk()
    c.start()
    assert c.receive(client(b'{"op": "sub", "amount": 1500}', 0)) == [
        Close(0.0, UNEXPECTED_CODE, "replayproxy: unexpected message (see the proxy log)")]
    u = c.unexpected
    assert u is not None and u.number == 1 and u.expected == LOG.messages[1]
    assert [d.describe() for d in u.differences] == [
        "message $.amount: recorded 1200, received 1500"]
    assert "client message 1 was not expected" in u.message
    assert "wss://api.example.com/ws" in u.message
    assert c.receive(client(b"more", 0)) == []  # over


def test_a_message_beyond_the_recording_is_unexpected():
    log = WebSocketLog((client(b"a", 0.1), server(b"b", 0.2)), 1000, "", "client")
    c = talk(log)
    assert c.start() == []
    assert c.receive(client(b"a", 0)) == [Send(pytest.approx(0.1), log.messages[1])]
    assert not c.finished  # the client closes, as recorded
    c.receive(client(b"again", 0))
    assert c.unexpected is not None and c.unexpected.expected is None
    assert "no more client messages" in c.unexpected.message


def test_text_and_binary_never_match_each_other():
    rule = MatchRule()
    assert not messages_match(client(b"ab", 0), client(b"ab", 0, text=False), rule)
    assert [d.describe() for d in message_differences(client(b"ab", 0),
                                                      client(b"ab", 0, text=False), rule)] \
        == ['message type: recorded "text", received "binary"']
    assert messages_match(client(b"\x01", 0, text=False), client(b"\x01", 0, text=False), rule)


def test_the_rule_of_the_handshake_applies_to_messages():
    recorded, received = client(b'{"id": 1, "op": "x"}', 0), client(b'{"id": 2, "op": "x"}', 0)
    assert not messages_match(recorded, received, MatchRule())
    assert messages_match(recorded, received, MatchRule(ignore_json=("$.id",)))
    assert messages_match(recorded, received, MatchRule(body=BodyKind.IGNORE))
    assert not messages_match(recorded, client(b'{"op":"x","id":1}', 0),
                              MatchRule(body=BodyKind.BYTES))


def test_a_server_that_dropped_the_connection_drops_it_again():
    log = WebSocketLog((server(b"x", 0.1),), None, "", "server")
    assert talk(log).start() == [Send(0.1, log.messages[0]), Drop(0.0)]


def test_faults_close_drop_and_delay():
    closing = talk(faults=WebSocketFaults(close_after=1, close_code=1011, close_reason="r"))
    assert closing.start() == [Send(0.5, LOG.messages[0]), Close(0.0, 1011, "r")]
    assert closing.finished
    assert talk(faults=WebSocketFaults(close_after=0)).start() == [Close(0.0, 1001, "")]
    dropping = talk(faults=WebSocketFaults(drop_after=2))
    dropping.start()
    assert dropping.receive(client(b'{"op": "sub", "amount": 1200}', 0)) == [
        Send(0.25, LOG.messages[2]), Drop(0.0)]
    delayed = talk(pace=0, faults=WebSocketFaults(delay=0.3))
    assert delayed.start() == [Send(0.3, LOG.messages[0])]
    assert not WebSocketFaults() and WebSocketFaults(delay=1)


def test_incoming_messages_are_redacted_like_the_recorded_ones():
    redactor = Redactor(key=b"k")
    secret = b'{"op": "auth", "api_key": "sk_live_abcdefghijklmnop"}'
    recorded = redactor.redact(Interaction(HANDSHAKE, Response(101), websocket=WebSocketLog(
        (client(secret, 0.1), server(b'{"ok": true}', 0.2)))))
    assert recorded.websocket is not None
    stored = recorded.websocket.messages[0].content
    assert b"sk_live" not in stored and b"<redacted:" in stored
    c = talk(recorded.websocket, redactor=Redactor(key=b"other"))
    assert c.receive(client(secret, 0)) == [Send(pytest.approx(0.1),
                                                 recorded.websocket.messages[1])]


def test_the_scanner_looks_into_messages():
    it = Interaction(HANDSHAKE, Response(101), websocket=WebSocketLog(
        (server(b'{"token": "ghp_abcdefghijklmnopqrstuvwxyz0123456789"}', 0.1),)))
    findings = scan_interaction(it)
    assert findings and findings[0].location.startswith("websocket message 1 (server)")


def test_upgrade_detection_and_shortening():
    assert is_websocket_upgrade(HANDSHAKE.headers)
    assert not is_websocket_upgrade(())
    assert shorten_message(server(b"hi\x1b[2J", 0)) == '"hi\\u001b[2J"'
    assert shorten_message(server(b"\x00" * 40, 0, text=False)).startswith("<40 bytes> 0000")
    assert len(shorten_message(server(b"x" * 200, 0))) == 60


# -- WebSocket faults: grammar and plan ------------------------------------------------

UPGRADE = Request("GET", "https", "api.example.com", 443, "/ws",
                  headers=(("Upgrade", "websocket"),))
PLAIN = Request("GET", "https", "api.example.com", 443, "/ws")


def test_ws_fault_grammar():
    assert parse_fault("ws_close=3,code=1011,reason=restart@*/ws").params == \
        WsClose(3, 1011, "restart")
    assert parse_fault("ws_close").params == WsClose(0, 1001, "")
    assert parse_fault("ws_drop=2").params == WsDrop(2)
    assert parse_fault("ws_drop").params == WsDrop(0)
    assert parse_fault("ws_delay=250ms,nth=2").params == WsDelay(0.25)


@pytest.mark.parametrize(("spec", "message"), [
    ("ws_delay", "ws_delay needs a duration"),
    ("ws_close=-1", "after must be a number of server messages"),
    ("ws_close,code=1006", "code must be a WebSocket close code"),
    ("ws_close,code=999", "code must be a WebSocket close code"),
    ("ws_close,reason=" + "x" * 124, "at most 123 bytes"),
    ("ws_drop,code=1000", "unknown option 'code' for ws_drop"),
])
def test_bad_ws_faults_are_one_line(spec, message):
    with pytest.raises(ValueError, match=message) as e:
        parse_fault(spec)
    assert "\n" not in str(e.value)


def test_ws_faults_see_websocket_handshakes_only():
    plan = FaultPlan(["ws_drop=1,first=1", "ws_delay=100ms"])
    assert plan.decide(PLAIN, 0.0) is None
    action = plan.decide(UPGRADE, 0.0)
    assert websocket_faults(action) == WebSocketFaults(drop_after=1, delay=0.1)
    assert websocket_faults(plan.decide(UPGRADE, 1.0)) == WebSocketFaults(delay=0.1)
    assert plan.hits() == (1, 2)
    assert websocket_faults(None) == WebSocketFaults()


def test_of_a_close_and_a_drop_the_earliest_applies():
    both = FaultPlan(["ws_close=2,code=4001", "ws_drop=1"]).decide(UPGRADE, 0.0)
    assert websocket_faults(both) == WebSocketFaults(drop_after=1)
    later = FaultPlan(["ws_close=1,code=4001", "ws_drop=3"]).decide(UPGRADE, 0.0)
    assert websocket_faults(later) == WebSocketFaults(close_after=1, close_code=4001)


def test_a_switch_replay_cannot_do_is_named():
    ws = Interaction(HANDSHAKE, Response(101, headers=(("Upgrade", "websocket"),)))
    assert "only the handshake" in (replay_problem(ws) or "")
    assert replay_problem(replace(ws, websocket=LOG)) is None
    assert replay_problem(replace(ws, websocket=LOG), HANDSHAKE) is None
    plain_get = Request("GET", "https", "api.example.com", 443, "/ws")
    assert "no WebSocket handshake" in (replay_problem(replace(ws, websocket=LOG), plain_get)
                                        or "")
    h2c = Interaction(HANDSHAKE, Response(101, headers=(("Upgrade", "h2c"),)))
    assert "'h2c'" in (replay_problem(h2c) or "")
    assert replay_problem(Interaction(HANDSHAKE, Response(200))) is None


def test_cassette_show_lists_the_messages():
    lines = list(render_websocket(LOG))
    assert lines[0] == '  websocket: 6 messages, closed by the server, code 1000 "done"'
    assert lines[1] == '      1 +  0.500s server text   "welcome"'
    assert lines[4] == "      4 +  2.000s server binary <2 bytes> 0001"
    it = Interaction(HANDSHAKE, Response(101, "Switching Protocols"), websocket=LOG)
    assert summary_line(1, it).endswith("websocket 6 messages")
    open_log = WebSocketLog((client(b"x" * 500, 0.1),))
    lines = list(render_websocket(open_log, max_chars=50))
    assert "still open when the recording stopped" in lines[0]
    assert len(lines[1]) < 100 and lines[1].endswith("…")
