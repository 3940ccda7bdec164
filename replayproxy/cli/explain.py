"""``replayproxy explain``: would this request match, offline, and if not, why.

The request is given as curl takes it (``URL``, ``-X``, ``-H``, ``-d``), so a curl
command line from a failing test becomes an ``explain`` by changing its first word.
A ``ws://`` or ``wss://`` URL is a WebSocket handshake; ``-m`` gives the messages the
client would send, checked in order against the recorded ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer

from replayproxy.cli.options import (
    CassetteDirLong,
    CassetteName,
    Config,
    IgnoreHeader,
    IgnoreJson,
    IgnoreQuery,
    MatchHeader,
    Matching,
    catch_errors,
)
from replayproxy.cli.output import interrupted_note, plural
from replayproxy.errors import ConfigError
from replayproxy.model import Request, WebSocketMessage, is_websocket_upgrade

if TYPE_CHECKING:
    from replayproxy.decision.session import CassetteSession, Decision, Replay

_DEFAULT_PORTS = {"http": 80, "https": 443}
_WEBSOCKET_SCHEMES = {"ws": "http", "wss": "https"}


def request_from_cli(method: str, url: str, headers: Iterable[str], body: bytes) -> Request:
    """Build a Request from curl-like pieces: an absolute URL, ``Name: value`` headers.

    Raises:
        ConfigError: the URL is not absolute http(s), or a header has no ``:``.
    """
    parts = urlsplit(url)
    websocket = parts.scheme in _WEBSOCKET_SCHEMES
    if websocket:
        parts = parts._replace(scheme=_WEBSOCKET_SCHEMES[parts.scheme])
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(f"invalid URL {url!r}: give an absolute http(s) URL (ws(s) for a "
                          "WebSocket), e.g. https://api.example.com/v1/charges")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ConfigError(f"invalid port in URL {url!r}: give a number from 1 to 65535, "
                          "e.g. http://127.0.0.1:8080/") from None
    pairs = []
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"invalid -H {h!r}: write it as -H 'Name: value'")
        pairs.append((name.strip(), value.strip()))
    if websocket and not is_websocket_upgrade(pairs):
        pairs += [("Upgrade", "websocket"), ("Connection", "Upgrade")]
    return Request(method.upper(), parts.scheme, parts.hostname, port, parts.path or "/",
                   parts.query, tuple(pairs), body)


def read_body(data: str | None) -> bytes:
    """The body of ``-d DATA``: the text itself, or the bytes of a file for ``@FILE``."""
    if data is None:
        return b""
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read -d {data}: {e.strerror}; give @FILE naming a "
                              "readable file, or the body itself") from None
    return data.encode("utf-8")


def _either(flag: str, old: str, new: str | None, legacy: str | None) -> str | None:
    """The value of a flag that has an older spelling; both only when they agree."""
    if new is not None and legacy is not None and new != legacy:
        raise ConfigError(f"{flag} given twice, as {new!r} and {old} {legacy!r}: "
                          f"give it once, as {flag}")
    return new if new is not None else legacy


@catch_errors
def explain(
    cassette: CassetteName,
    url: Annotated[str | None, typer.Argument(
        metavar="URL", show_default=False, help="The request's absolute URL.")] = None,
    method: Annotated[str | None, typer.Option(
        "--request", "-X", metavar="METHOD", show_default=False,
        help="HTTP method [default: POST with -d, else GET].")] = None,
    header: Annotated[list[str] | None, typer.Option(
        "--header", "-H", metavar="'NAME: VALUE'", show_default=False,
        help="A request header (repeatable).")] = None,
    data: Annotated[str | None, typer.Option(
        "--data", "-d", metavar="DATA", show_default=False,
        help="Request body; @FILE reads a file.")] = None,
    cassette_dir: CassetteDirLong = None,
    config: Config = None,
    ignore_query: IgnoreQuery = None,
    ignore_header: IgnoreHeader = None,
    match_header: MatchHeader = None,
    ignore_json: IgnoreJson = None,
    message: Annotated[list[str] | None, typer.Option(
        "--message", "-m", metavar="TEXT", show_default=False,
        help="A message the WebSocket client sends, in order (repeatable); @FILE sends "
        "a file's bytes as a binary message.")] = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print the analysis as JSON.")] = False,
    url_option: Annotated[str | None, typer.Option(
        "--url", "-u", hidden=True, help="The URL (older spelling).")] = None,
    body_option: Annotated[str | None, typer.Option(
        "--body", "-b", hidden=True, help="The body (older spelling of -d).")] = None,
    method_option: Annotated[str | None, typer.Option(
        "--method", hidden=True, help="The method (older spelling of -X).")] = None,
) -> None:
    """Say, offline, whether a request would match the cassette, and if not, why.

    The request reads like curl's. Exit code 0 when it matches, 1 when it does not.

    Example: replayproxy explain -c stripe https://api.stripe.com/v1/charges
    -H 'Content-Type: application/json' -d @charge.json

    A WebSocket: replayproxy explain -c feed wss://api.example.com/ws -m '{"op": "sub"}'
    """
    target = _either("URL", "--url", url, url_option)
    if target is None:
        raise ConfigError("no URL given: replayproxy explain -c NAME URL [-X METHOD] "
                          "[-H 'Name: value'] [-d DATA]")
    body = _either("-d", "--body", data, body_option)
    verb = _either("-X", "--method", method, method_option)
    verb = verb or ("POST" if body is not None else "GET")
    matching = Matching(config, cassette_dir, False, False, ignore_query, ignore_header,
                        match_header, ignore_json)
    session = matching.read_session(cassette)
    if session.pending:
        typer.echo(interrupted_note(cassette, len(session.pending)), err=True)
    request = request_from_cli(verb, target, header or [], read_body(body))
    messages = [_message(m) for m in message or []]
    if messages and not is_websocket_upgrade(request.headers):
        raise ConfigError("-m gives WebSocket messages: give a ws:// or wss:// URL (or "
                          "-H 'Upgrade: websocket')")
    decision = session.decide(request)
    from replayproxy.decision.session import Replay

    if isinstance(decision, Replay) and decision.served.interaction.response.status == 101:
        _answer_websocket(session, decision, request, messages, json_output)
    _answer(decision, json_output)


def _message(text: str) -> WebSocketMessage:
    """A client message of ``-m``: text, or a file's bytes as a binary one (``@FILE``)."""
    if text.startswith("@"):
        return WebSocketMessage(True, read_body(text), is_text=False)
    return WebSocketMessage(True, text.encode("utf-8"))


def _answer_websocket(session: CassetteSession, decision: Replay, request: Request,
                      messages: list[WebSocketMessage], json_output: bool) -> None:
    """The handshake matched: say whether the recording can be replayed and whether
    each client message would match (exit 1 at the first that would not)."""
    from replayproxy.cassette.view import summary_line
    from replayproxy.decision.websocket import Send, replay_problem

    served = decision.served
    number = served.position + 1
    problem = replay_problem(served.interaction, request)
    result: dict[str, object] = {"match": problem is None, "interaction": number,
                                 "url": served.interaction.request.url}
    lines = [f"matches {summary_line(number, served.interaction)}"]
    if problem is not None:
        result["error"] = problem
        lines.append(f"but it cannot be replayed: {problem}")
    else:
        conversation = session.conversation(served, request, pace=0)
        answers = [sum(isinstance(a, Send) for a in conversation.start())]
        for n, sent in enumerate(messages, 1):
            if conversation.finished and conversation.unexpected is None:
                problem = (f"the recorded server has closed before client message {n}: "
                           "it would not be answered")
                break
            replies = conversation.receive(sent)
            if conversation.unexpected is not None:
                problem = conversation.unexpected.message.rstrip()
                result["unexpected"] = conversation.unexpected.as_json()
                break
            answers.append(sum(isinstance(a, Send) for a in replies))
        lines.append(f"  the server sends {plural(answers[0], 'message')} after the handshake")
        lines += [f"  client message {n} matches; the server answers with "
                  f"{plural(k, 'message')}" for n, k in enumerate(answers[1:], 1)]
        result["answers"] = answers
        if problem is not None:
            result["match"] = False
            result["error"] = problem
            lines.append(problem)
    typer.echo(json.dumps(result) if json_output else "\n".join(lines))
    raise typer.Exit(0 if problem is None else 1)


def _answer(decision: Decision, json_output: bool) -> None:
    """Print whether it matched (exit 0) or why not (exit 1)."""
    from replayproxy.cassette.view import summary_line
    from replayproxy.decision.session import Replay, Unmatched

    if isinstance(decision, Replay):
        served = decision.served
        number = served.position + 1
        if json_output:
            request = served.interaction.request
            recorded = datetime.fromtimestamp(served.interaction.recorded_at, UTC)
            typer.echo(json.dumps({"match": True, "interaction": number,
                                   "method": request.method, "url": request.url,
                                   "recorded_at": recorded.isoformat(timespec="seconds")}))
        else:
            typer.echo(f"matches {summary_line(number, served.interaction)}")
        return
    assert isinstance(decision, Unmatched)
    typer.echo(decision.as_json_bytes().decode() if json_output else decision.message.rstrip())
    raise typer.Exit(1)
