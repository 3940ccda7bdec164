"""WebSockets in the mitm engine: what a recording keeps, and a loopback server that
plays the server's side on replay.

Recording: mitmproxy relays the messages; ``websocket_log`` turns what went over the
socket (injected messages left out) into the model's ``WebSocketLog``, written with
the handshake when the WebSocket ends, or, still open, when the proxy stops.

Replay: an upgrade answered by an addon has no server connection behind it. In forward
mode mitmproxy then crashes on the first message it relays (``KeyError: Server(...)``);
in reverse mode answering in ``request`` and injecting messages works (notes, section
8), but one design for every mode is simpler to keep right: the handshake is sent to
``WebSocketServer``, a loopback server in the proxy (as the trickle server for slow
bodies), which accepts it with the right ``Sec-WebSocket-Accept`` for the client's key
and then carries out a ``Conversation`` (``replayproxy.decision.websocket``): it only
sleeps, sends, closes and drops. mitmproxy relays between it and the client, in forward
mode (CONNECT tunnels and plain http) and in reverse mode alike. It never offers
permessage-deflate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import wsproto
import wsproto.events as ws_events
from mitmproxy import ctx, http
from wsproto.connection import ConnectionState
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from replayproxy.decision.websocket import (
    Action,
    Close,
    Conversation,
    Drop,
    Send,
    UnexpectedMessage,
)
from replayproxy.model import Headers, WebSocketLog, WebSocketMessage

__all__ = ["WebSocketServer", "drop_after", "drop_when_due", "websocket_log"]

log = logging.getLogger("replayproxy")

_ABNORMAL = 1006
"""The code wsproto reports when a connection ended with no close frame."""
_OWN_HEADERS = frozenset({"upgrade", "connection", "sec-websocket-accept",
                          "sec-websocket-extensions", "sec-websocket-protocol",
                          "content-length", "transfer-encoding", "date"})
"""Response headers of the handshake the loopback server writes itself."""
_CLOSE_WAIT = 5.0
"""Seconds to wait for the client's answer to a close frame."""


def websocket_log(flow: http.HTTPFlow) -> WebSocketLog:
    """What went over ``flow``'s WebSocket so far: each message with its time from the
    101 response, injected ones left out, and the close (a drop: no code)."""
    ws = flow.websocket
    assert ws is not None and flow.response is not None
    start = flow.response.timestamp_end or flow.response.timestamp_start
    messages = tuple(
        WebSocketMessage(m.from_client, m.content, m.is_text,
                         round(max(0.0, m.timestamp - start), 6))
        for m in ws.messages if not m.injected)
    closed_by = "" if ws.closed_by_client is None else (
        "client" if ws.closed_by_client else "server")
    code = None if ws.close_code in (None, _ABNORMAL) else ws.close_code
    return WebSocketLog(messages, code, (ws.close_reason or "") if code else "", closed_by)


@dataclass(slots=True)
class _Play:
    """A registered conversation, waiting for its handshake."""

    conversation: Conversation
    subprotocol: str | None
    headers: Headers
    on_unexpected: Callable[[UnexpectedMessage], None]
    drop: Callable[[int], None]
    """Drop the client's connection once this many server messages reached it."""


class WebSocketServer:
    """A loopback server that plays registered conversations as the server."""

    def __init__(self) -> None:
        self.address: tuple[str, int] | None = None
        self._pending: dict[str, _Play] = {}
        self._server: asyncio.Server | None = None
        self._open: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=2**20)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = (str(host), int(port))

    async def stop(self) -> None:
        """Stop listening and end the conversations still going (see
        ``TrickleServer.stop`` for why they are dropped and waited for)."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._open.values()):
            writer.transport.abort()
        if self._open:
            await asyncio.wait(list(self._open), timeout=5)
        await self._server.wait_closed()

    def register(self, conversation: Conversation, recorded_headers: Headers,
                 on_unexpected: Callable[[UnexpectedMessage], None],
                 drop: Callable[[int], None]) -> str:
        """Keep ``conversation`` for one handshake; return the path that starts it.

        The 101 carries the recorded subprotocol (when the client offers it) and the
        recorded headers that are not the handshake's own. ``drop(n)`` drops the client's
        connection once n server messages reached it (mitmproxy would answer a server
        that drops with a close frame).
        """
        subprotocol = next((v.strip() for k, v in recorded_headers
                            if k.lower() == "sec-websocket-protocol"), None)
        extra = tuple((k, v) for k, v in recorded_headers if k.lower() not in _OWN_HEADERS)
        token = secrets.token_hex(8)
        self._pending[token] = _Play(conversation, subprotocol, extra, on_unexpected, drop)
        return f"/replayproxy-websocket/{token}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._open[task] = writer
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            token = head.split(b" ", 2)[1].rsplit(b"/", 1)[-1].decode("ascii", "replace")
            play = self._pending.pop(token, None)
            if play is None:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                return
            await _Session(play, reader, writer).run(head)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                IndexError, LocalProtocolError, RemoteProtocolError):
            pass  # the client went away, or mitmproxy gave up on it
        finally:
            writer.close()
            if task is not None:
                self._open.pop(task, None)


class _Session:
    """One replayed WebSocket on the loopback server."""

    def __init__(self, play: _Play, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.play = play
        self.conversation = play.conversation
        self.reader = reader
        self.writer = writer
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        self.parts: list[bytes] = []
        self.closed = False

    async def run(self, head: bytes) -> None:
        self.ws.receive_data(head)
        request = next((e for e in self.ws.events() if isinstance(e, ws_events.Request)), None)
        if request is None:
            self.writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        subprotocol = self.play.subprotocol if self.play.subprotocol in \
            request.subprotocols else None
        extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.play.headers]
        self.writer.write(self.ws.send(ws_events.AcceptConnection(
            subprotocol=subprotocol, extra_headers=extra)))
        await self._act(self.conversation.start())
        while not self.closed:
            data = await self.reader.read(65536)
            self.ws.receive_data(data or None)
            for event in self.ws.events():
                await self._handle(event)
                if self.closed:
                    break
            if not data:
                break

    async def _handle(self, event: ws_events.Event) -> None:
        if isinstance(event, ws_events.Message):
            data = event.data
            self.parts.append(data.encode("utf-8") if isinstance(data, str) else data)
            if not event.message_finished:
                return
            content, self.parts = b"".join(self.parts), []
            message = WebSocketMessage(True, content, isinstance(data, str))
            if self.conversation.finished:
                return
            actions = self.conversation.receive(message)
            unexpected = self.conversation.unexpected
            if unexpected is not None:
                self.play.on_unexpected(unexpected)
            await self._act(actions)
        elif isinstance(event, ws_events.Ping):
            self._write(self.ws.send(event.response()))
        elif isinstance(event, ws_events.CloseConnection):
            if self.ws.state is ConnectionState.REMOTE_CLOSING:
                self._write(self.ws.send(event.response()))
            self.closed = True

    def _write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    async def _act(self, actions: list[Action]) -> None:
        for action in actions:
            if action.wait > 0:
                await asyncio.sleep(action.wait)
            if self.writer.is_closing():
                return
            if isinstance(action, Send):
                message = action.message
                event: ws_events.Event = (
                    ws_events.TextMessage(message.content.decode("utf-8", "replace"))
                    if message.is_text else ws_events.BytesMessage(message.content))
                self._write(self.ws.send(event))
                await self.writer.drain()
            elif isinstance(action, Close):
                self._write(self.ws.send(ws_events.CloseConnection(action.code,
                                                                   action.reason)))
                await self.writer.drain()
                await self._await_close()
                return
            elif isinstance(action, Drop):
                # the proxy drops the client once it has relayed what went before;
                # closing here first would make mitmproxy send the client a close frame
                self.play.drop(self.conversation.sent)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_CLOSE_WAIT):
                        while await self.reader.read(65536):
                            pass
                self.closed = True
                return

    async def _await_close(self) -> None:
        """After our close frame: read until the client answers it (or goes away)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_WAIT):
                while self.ws.state is not ConnectionState.CLOSED:
                    data = await self.reader.read(65536)
                    self.ws.receive_data(data or None)
                    for _ in self.ws.events():
                        pass
                    if not data:
                        break
        self.closed = True


# -- the ws_drop fault -------------------------------------------------------------


_DROP_AFTER = "replayproxy-ws-drop"
"""``flow.metadata`` key: drop the client once this many server messages were relayed."""


def _relayed(flow: http.HTTPFlow) -> int:
    ws = flow.websocket
    return 0 if ws is None else sum(not m.from_client and not m.dropped for m in ws.messages)


def drop_after(flow: http.HTTPFlow, messages: int) -> None:
    """Drop the client's connection of ``flow`` (a ``ws_drop`` fault) once ``messages``
    server messages were relayed to it (``websocket_message`` counts them)."""
    if _relayed(flow) >= messages:
        _drop_client(flow)
    else:
        flow.metadata[_DROP_AFTER] = messages


def _drop_client(flow: http.HTTPFlow) -> None:
    """Close the client's connection with no WebSocket close frame, a moment from now:
    mitmproxy relays a message right after its ``websocket_message`` hook."""
    def drop() -> None:
        proxyserver = ctx.master.addons.get("proxyserver")
        handler = proxyserver.connections.get(flow.client_conn.id) if proxyserver else None
        if handler is not None:
            handler.close_connection(flow.client_conn)

    asyncio.get_running_loop().call_later(0.05, drop)


def drop_when_due(flow: http.HTTPFlow) -> None:
    """After each relayed message: drop the client if a ``drop_after`` count is reached."""
    due = flow.metadata.get(_DROP_AFTER)
    if isinstance(due, int) and _relayed(flow) >= due:
        del flow.metadata[_DROP_AFTER]
        _drop_client(flow)
