"""WebSocket messages compared the way request bodies are.

A client message matches a recorded one when both are text or both binary and their
contents are equal under the handshake's ``MatchRule``, as a request body would be: a
text message that parses as JSON is compared semantically (key order and white space
do not matter, ``ignore_json`` paths are left out) unless the rule names another body
kind; ``ignore_regex`` blanks text out; redaction placeholders match as in bodies;
anything else is compared byte for byte. ``body = "ignore"`` makes every message of the
same type match.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from replayproxy.matching.diagnostics import MISSING, Difference, compare
from replayproxy.matching.rules import BodyKind, MatchRule, body_view
from replayproxy.model import Request, WebSocketMessage

__all__ = ["message_differences", "message_view", "messages_match"]

_JSON = (("Content-Type", "application/json"),)


def _as_request(message: WebSocketMessage, rule: MatchRule) -> Request:
    """The message as a request body (JSON when text and the rule says ``auto``)."""
    json_text = message.is_text and rule.body is BodyKind.AUTO
    return Request("WS", "ws", "", 0, "", headers=_JSON if json_text else (),
                   body=message.content)


def _body_only(rule: MatchRule) -> MatchRule:
    return replace(rule, matchers=frozenset({"body"}))


def message_view(message: WebSocketMessage, rule: MatchRule) -> Any:
    """What is compared of ``message`` under ``rule`` (a JSON-like value or bytes)."""
    return body_view(_as_request(message, rule), rule)


def messages_match(recorded: WebSocketMessage, received: WebSocketMessage,
                   rule: MatchRule) -> bool:
    """True when ``received`` matches ``recorded`` under ``rule`` (type and content)."""
    if recorded.is_text != received.is_text:
        return False
    return bool(message_view(recorded, rule) == message_view(received, rule))


def message_differences(recorded: WebSocketMessage | None, received: WebSocketMessage,
                        rule: MatchRule) -> tuple[Difference, ...]:
    """How ``received`` differs from ``recorded`` (None: nothing more was recorded),
    as ``message $.amount: recorded 1200, received 1500`` lines would say."""
    if recorded is None:
        return (Difference("message", "", MISSING, _shown(received)),)
    if recorded.is_text != received.is_text:
        kinds = {True: "text", False: "binary"}
        return (Difference("message", "type", kinds[recorded.is_text],
                           kinds[received.is_text]),)
    found = compare(_as_request(recorded, rule), _as_request(received, rule),
                    _body_only(rule), exact=())
    return tuple(replace(d, field="message") for d in found)


def _shown(message: WebSocketMessage) -> Any:
    if message.is_text:
        try:
            return message.content.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return message.content
