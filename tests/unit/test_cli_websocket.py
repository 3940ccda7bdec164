"""The cassette commands on a WebSocket recording: ``cassette show`` lists its messages,
``explain`` checks client messages against them, ``scan`` and ``redact`` look into them."""

from __future__ import annotations

from pathlib import Path

import pytest

from replayproxy.cassette.store import cassette_path, load_cassette, save_cassette
from replayproxy.model import Interaction, Request, Response, WebSocketLog, WebSocketMessage
from tests.unit.cli_runner import cli_fixture  # noqa: F401

TOKEN = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
HANDSHAKE = Request("GET", "https", "feed.example.com", 443, "/ws",
                    headers=(("Upgrade", "websocket"), ("Connection", "Upgrade")))
LOG = WebSocketLog(
    (WebSocketMessage(False, b"welcome \x1b[2Jcleared", True, 0.1),
     WebSocketMessage(True, b'{"op": "sub", "n": 1}', True, 0.5),
     WebSocketMessage(False, b'{"ack": 1}', True, 0.6),
     WebSocketMessage(False, b"\x00\x01\x02", False, 0.9)),
    1000, "bye", "server")


@pytest.fixture
def cdir(tmp_path: Path) -> Path:
    d = tmp_path / "cassettes"
    save_cassette(cassette_path(d, "feed"), [Interaction(
        HANDSHAKE, Response(101, "Switching Protocols", (("Upgrade", "websocket"),)),
        websocket=LOG)])
    return d


def test_show_lists_the_messages_terminal_safe(cli, cdir):
    result = cli("cassette", "show", "-c", "feed", "--cassette-dir", cdir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert '  websocket: 4 messages, closed by the server, code 1000 "bye"' in lines
    assert '      1 +  0.100s server text   "welcome \\u001b[2Jcleared"' in lines
    assert '      2 +  0.500s client text   "{\\"op\\": \\"sub\\", \\"n\\": 1}"' in lines
    assert "      4 +  0.900s server binary <3 bytes> 000102" in lines
    assert "\x1b" not in result.stdout
    brief = cli("cassette", "show", "-c", "feed", "--cassette-dir", cdir, "--brief")
    assert brief.stdout.splitlines()[1].endswith("websocket 4 messages")


def test_explain_checks_client_messages_in_order(cli, cdir):
    ok = cli("explain", "-c", "feed", "--cassette-dir", cdir, "wss://feed.example.com/ws",
             "-m", '{"n": 1, "op": "sub"}')
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.splitlines()[1:] == [
        "  the server sends 1 message after the handshake",
        "  client message 1 matches; the server answers with 2 messages"]
    bad = cli("explain", "-c", "feed", "--cassette-dir", cdir, "wss://feed.example.com/ws",
              "-m", '{"op": "sub", "n": 2}')
    assert bad.exit_code == 1
    assert "message $.n: recorded 1, received 2" in bad.stdout
    over = cli("explain", "-c", "feed", "--cassette-dir", cdir, "wss://feed.example.com/ws",
               "-m", '{"op": "sub", "n": 1}', "-m", "more")
    assert over.exit_code == 1
    assert "has closed before client message 2" in over.stdout


def test_explain_m_needs_a_websocket_url(cli, cdir):
    result = cli("explain", "-c", "feed", "--cassette-dir", cdir,
                 "https://feed.example.com/ws", "-m", "x")
    assert result.exit_code != 0
    assert "give a ws:// or wss:// URL" in result.output


def test_scan_and_redact_cover_messages(cli, tmp_path):
    d = tmp_path / "cassettes"
    path = cassette_path(d, "leaky")
    save_cassette(path, [Interaction(HANDSHAKE, Response(101), websocket=WebSocketLog(
        (WebSocketMessage(True, f'{{"auth": "{TOKEN}"}}'.encode(), True, 0.1),)))])
    scanned = cli("scan", path)
    assert scanned.exit_code == 1
    assert "websocket message 1 (client)" in scanned.stdout
    redacted = cli("redact", "-c", "leaky", "--cassette-dir", d)
    assert redacted.exit_code == 0, redacted.output
    log = load_cassette(path).interaction(0).websocket
    assert log is not None and TOKEN.encode() not in log.messages[0].content
    assert b"<redacted:" in log.messages[0].content
    assert cli("scan", path).exit_code == 0
