"""Streamed responses through mitmproxy: recorded as they pass, replayed with their pacing.

Recording: in ``responseheaders``, a response ``replayproxy.streams.should_stream`` picks
gets a ``Recorder`` as ``flow.response.stream``. mitmproxy calls it with each piece as it
comes from the upstream; it notes the time and the length, spools the bytes and hands
them straight on to the client. When the stream ends (the ``response`` hook, or the
``error`` hook when the upstream broke it off or the client left) ``recorded`` turns
what arrived into the interaction, with its ``chunks`` and, if it ended early, its
``cut``.

Replay: mitmproxy sends a response an addon sets in one piece, and only streams a body
coming from a server. So a recorded stream is sent by the trickle server (see
``trickle.py``): ``play`` points the flow at it, it sends the body as chunked HTTP/1.1,
piece by piece on the recorded schedule, and mitmproxy streams it on to the client with
the recorded status and headers (put back by ``dress`` in ``responseheaders``, so the
client sees the recorded framing, not the trickle server's). A cut is replayed by
aborting that connection after the last piece: mitmproxy then breaks the client's
connection (HTTP/1.1) or resets its stream (HTTP/2), as it did when recording. The body
is written in slices of the recorded bytes, never copied whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time

from mitmproxy import http

from replayproxy.cassette.store import release_pages
from replayproxy.engines.mitm import h2
from replayproxy.engines.mitm.convert import response_from_flow
from replayproxy.engines.mitm.trickle import Sender, TrickleServer, point_at
from replayproxy.grpc_wire import is_grpc
from replayproxy.model import Interaction, Response
from replayproxy.streams import (
    CLIENT_CUT,
    ChunkLog,
    Send,
    Spool,
    client_cut,
    schedule,
    should_stream,
    upstream_cut,
)

__all__ = ["Recorder", "discard", "dress", "ended_early", "grpc", "play", "played",
           "recorded", "recording", "start_recording"]

log = logging.getLogger("replayproxy")

_RECORDER = "replayproxy.stream"
_PLAYING = "replayproxy.playing"
_PLAYED = "replayproxy.played"
_SLICE = 1 << 16
"""Bytes written at a time when replaying a piece."""
_RELEASE_EVERY = 64 * _SLICE
"""Bytes of a body left in a mapped cassette sent between two ``release_pages``."""
_HOLD_AT_MOST = 600.0
"""How long a replayed stream the client had left when recording stays open (seconds):
mitmproxy's own idle timeout."""


class Recorder:
    """``flow.response.stream`` while recording: notes and keeps each piece, passes it on."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.log = ChunkLog()
        self.spool = Spool()

    def __call__(self, data: bytes) -> bytes:
        if data:
            self.log.add(time.time() - self.start, len(data))
            self.spool.write(data)
        return data


def start_recording(flow: http.HTTPFlow) -> bool:
    """Stream ``flow``'s response to the client and record it as it passes, if it is
    one that streams; called in ``responseheaders``."""
    response = flow.response
    if response is None or not should_stream(flow.request.method, response.status_code,
                                             response_from_flow(response).headers):
        return False
    recorder = Recorder(flow.request.timestamp_start)
    response.stream = recorder
    flow.metadata[_RECORDER] = recorder
    return True


def discard(flow: http.HTTPFlow) -> None:
    """Drop what ``flow``'s stream recorded (a call the client cancelled)."""
    recorder = flow.metadata.pop(_RECORDER, None)
    if isinstance(recorder, Recorder):
        recorder.spool.close()


def grpc(flow: http.HTTPFlow) -> bool:
    """Whether ``flow`` is a gRPC call (its cancellation is not recorded, unlike a stream
    a client leaves)."""
    return is_grpc(tuple((k.decode("latin-1"), v.decode("latin-1"))
                         for k, v in flow.request.headers.fields))


def recording(flow: http.HTTPFlow) -> bool:
    """Whether ``flow``'s response is being streamed and recorded."""
    return isinstance(flow.metadata.get(_RECORDER), Recorder)


def _left_by_client(flow: http.HTTPFlow, message: str) -> bool:
    if message == "Client disconnected." or message.startswith("stream reset by client"):
        return True
    return flow.client_conn.timestamp_end is not None \
        and flow.server_conn.timestamp_end is None


def recorded(flow: http.HTTPFlow, interaction: Interaction) -> Interaction:
    """``interaction`` (converted from ``flow``) with the body that streamed through, its
    chunks and, if the flow failed, its cut; as it is for a flow that did not stream."""
    recorder = flow.metadata.pop(_RECORDER, None)
    if not isinstance(recorder, Recorder):
        return interaction
    try:
        body = recorder.spool.read()
    finally:
        recorder.spool.close()
    cut = ""
    duration = interaction.duration
    if flow.error is not None:
        message = flow.error.msg
        cut = CLIENT_CUT if _left_by_client(flow, message) else upstream_cut(message)
        duration = round(max(0.0, time.time() - recorder.start), 6)
        log.info("%s %s: %s after %d bytes; recorded what arrived", flow.request.method,
                 flow.request.pretty_url, cut if cut != CLIENT_CUT else
                 f"{cut} ({' '.join(message.split())})", len(body))
    return dataclasses.replace(
        interaction, response=dataclasses.replace(interaction.response, body=body),
        chunks=recorder.log.chunks, cut=cut, duration=duration)


def play(flow: http.HTTPFlow, interaction: Interaction, body: memoryview | None,
         pace: float, server: TrickleServer) -> bool:
    """Send the recorded stream ``interaction`` to ``flow``'s client through ``server``
    with its pacing scaled by ``pace``; its body is ``body`` when given (left in the
    cassette's bytes), else the response's. False if it is not a stream (or the server
    is not up), for the caller to answer it in one piece."""
    if server.address is None or not (interaction.chunks or interaction.cut):
        return False
    sends = schedule(interaction.chunks, pace)
    sender = _sender(interaction.response, interaction.response.body if body is None
                     else body, sends, flow.request.timestamp_start, interaction.cut)
    flow.metadata[_PLAYING] = interaction.response
    flow.metadata[_PLAYED] = True
    point_at(flow, server.address, server.add(sender))
    return True


def played(flow: http.HTTPFlow) -> bool:
    """Whether ``flow`` was answered with a recorded stream."""
    return flow.metadata.get(_PLAYED) is True


def dress(flow: http.HTTPFlow) -> None:
    """Give a replayed stream's response (from the trickle server) the recorded status
    and headers before mitmproxy sends them to the client (``responseheaders``)."""
    recorded_response = flow.metadata.pop(_PLAYING, None)
    response = flow.response
    if not isinstance(recorded_response, Response) or response is None:
        return
    response.status_code = recorded_response.status
    response.reason = recorded_response.reason
    response.http_version = recorded_response.http_version
    response.headers = _headers(recorded_response.headers)
    if recorded_response.trailers:
        # set here, not sent by the trickle server: they follow the streamed body, to
        # the clients that can take them
        response.trailers = _headers(recorded_response.trailers)
        h2.fit_trailers(flow)


def _headers(pairs: tuple[tuple[str, str], ...]) -> http.Headers:
    return http.Headers([(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs])


def ended_early(flow: http.HTTPFlow) -> None:
    """Say in one line that a replayed stream ended before its end (``error`` hook): the
    client left, or the recorded cut was replayed."""
    if flow.error is None:
        return
    message = " ".join(flow.error.msg.split())
    if _left_by_client(flow, message):
        log.info("%s %s: the client closed the replayed stream before its end (%s)",
                 flow.request.method, flow.request.pretty_url, message)
    else:
        log.info("%s %s: replayed the recorded cut (%s)", flow.request.method,
                 flow.request.pretty_url, message)


def _head(response: Response) -> bytes:
    status = response.status
    lines = [b"HTTP/1.1 %d %s" % (status, (response.reason or "-").encode("latin-1"))]
    for name, value in response.headers:
        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
            lines.append(f"{name}: {value}".encode("latin-1"))
    lines += [b"Transfer-Encoding: chunked", b"Connection: close", b"", b""]
    return b"\r\n".join(lines)


def _sender(response: Response, body: bytes | memoryview, sends: list[Send], start: float,
            cut: str) -> Sender:
    """Send ``response`` as chunked HTTP/1.1, each piece when ``sends`` says (seconds
    from ``start``, the request's arrival); then end it (its trailers are set on the
    flow, see ``dress``), or break it off as ``cut`` says."""
    async def send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        origin = loop.time() - max(0.0, time.time() - start)
        writer.write(_head(response))
        await writer.drain()
        view = memoryview(body)
        sent = 0
        for piece in sends:
            if piece.length <= 0:
                continue
            delay = origin + piece.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(b"%x\r\n" % piece.length)
            end = piece.offset + piece.length
            for at in range(piece.offset, end, _SLICE):
                writer.write(view[at:min(at + _SLICE, end)])
                await writer.drain()
                sent += _SLICE
                if sent % _RELEASE_EVERY == 0:
                    release_pages(view)
            writer.write(b"\r\n")
            await writer.drain()
        release_pages(view)
        if cut and not client_cut(cut):
            writer.transport.abort()  # the upstream broke it off here
            return
        if cut:
            # the client left an endless stream: it stays open until this one leaves too
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(), _HOLD_AT_MOST)
            return
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return send
