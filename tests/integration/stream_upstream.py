"""An upstream that streams: Server-Sent Events spaced in time, a slow chunked body, a
stream it breaks off mid-way, and an endless feed.

Routes (GET):
- ``/events``: ``text/event-stream``, ``EVENTS`` events ``GAP`` seconds apart, chunked;
- ``/slow-chunked``: ``text/plain``, ``PIECES`` chunks ``GAP`` seconds apart;
- ``/cut``: two events, then the connection is dropped without ending the body;
- ``/endless``: an event every 0.1 s until the client leaves (at most 300);
- ``/big-events``: ``BIG_EVENTS`` events of about 64 KiB each (over 9 MiB in all, a body
  recorded from its file, see ``redaction.big``), each carrying a token, sent at once.
"""

from __future__ import annotations

import json
import socket
import time

from tests.integration.support import QuietHandler

__all__ = ["BIG_EVENTS", "EVENTS", "GAP", "PIECES", "StreamHandler", "big_event", "event"]

GAP = 0.45
EVENTS = 5
PIECES = [b"alpha " * 10 + b"\n", b"beta " * 20 + b"\n", b"gamma\n"]


def event(n: int) -> bytes:
    """The ``n``th Server-Sent Event of ``/events`` (it carries a token to redact)."""
    data = json.dumps({"n": n, "text": f"part {n}", "access_token": "sk_live_abcdef0123456789"})
    return f"id: {n}\nevent: delta\ndata: {data}\n\n".encode()


BIG_EVENTS = 150


def big_event(n: int) -> bytes:
    """The ``n``th event of ``/big-events``: a token at a different offset in each."""
    data = json.dumps({"n": n, "pad": "p" * (n * 997 % 4096),
                       "access_token": "sk_live_abcdef0123456789",
                       "text": "t" * 60_000})
    return f"id: {n}\ndata: {data}\n\n".encode()


class StreamHandler(QuietHandler):
    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _start(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def do_GET(self) -> None:
        self.server.count_request("GET", self.path)
        if self.path == "/events":
            self._start("text/event-stream")
            for n in range(EVENTS):
                if n:
                    time.sleep(GAP)
                self._chunk(event(n))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/slow-chunked":
            self._start("text/plain")
            for i, piece in enumerate(PIECES):
                if i:
                    time.sleep(GAP)
                self._chunk(piece)
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/cut":
            self._start("text/event-stream")
            self._chunk(event(0))
            time.sleep(0.2)
            self._chunk(event(1))
            time.sleep(0.2)
            self.wfile.flush()
            # broken off: no last chunk; a reset, as a crashed server's kernel sends
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.close_connection = True
            self.connection.close()
        elif self.path.startswith("/big-events"):
            self._start("text/event-stream")
            for n in range(BIG_EVENTS):
                self._chunk(big_event(n))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/endless":
            self._start("text/event-stream")
            try:
                for n in range(300):
                    self._chunk(event(n))
                    time.sleep(0.1)
            except OSError:
                return  # the client (the proxy) went away
            self.wfile.write(b"0\r\n\r\n")
        else:
            body = b"plain"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
