"""``replayproxy explain``: would this request match, offline, and if not, why.

The request is given as curl takes it (``URL``, ``-X``, ``-H``, ``-d``), so a curl
command line from a failing test becomes an ``explain`` by changing its first word.
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
from replayproxy.cli.output import interrupted_note
from replayproxy.errors import ConfigError
from replayproxy.model import Request

if TYPE_CHECKING:
    from replayproxy.decision.session import Decision

_DEFAULT_PORTS = {"http": 80, "https": 443}


def request_from_cli(method: str, url: str, headers: Iterable[str], body: bytes) -> Request:
    """Build a Request from curl-like pieces: an absolute URL, ``Name: value`` headers.

    Raises:
        ConfigError: the URL is not absolute http(s), or a header has no ``:``.
    """
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(f"invalid URL {url!r}: give an absolute http(s) URL, "
                          "e.g. https://api.example.com/v1/charges")
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
    _answer(session.decide(request), json_output)


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
