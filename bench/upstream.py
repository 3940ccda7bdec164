"""A minimal, fast HTTP/1.1 upstream for the benchmark (loopback only).

``GET /items/N`` answers a small fixed JSON body per N, keep-alive, Content-Length
framing. ``GET /__count`` answers how many other requests it has served, so the
benchmark can prove that replay never reached the upstream.

Run as ``python bench/upstream.py``: it listens on 127.0.0.1 on a free port, prints
``PORT <n>`` on stdout and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

HOST = "127.0.0.1"


def item_body(n: int) -> bytes:
    """The JSON body of ``/items/<n>`` (also used to check replayed bodies)."""
    return json.dumps(
        {"id": n, "name": f"item-{n}", "price_cents": 100 + n, "currency": "eur", "ok": True},
        separators=(",", ":"),
    ).encode()


def _response(status: str, body: bytes, ctype: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\n"
        b"Content-Type: " + ctype + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Server: bench-upstream\r\n"
        b"\r\n" + body
    )


class _State:
    served = 0
    cache: dict[bytes, bytes] = {}


_NOT_FOUND = _response("404 Not Found", b"not found\n", b"text/plain")


def _answer(target: bytes) -> bytes:
    # absolute-form (http://host:port/path) is accepted too
    if target.startswith(b"http://"):
        slash = target.find(b"/", 7)
        target = target[slash:] if slash >= 0 else b"/"
    if target == b"/__count":
        return _response("200 OK", str(_State.served).encode(), b"text/plain")
    _State.served += 1
    cached = _State.cache.get(target)
    if cached is not None:
        return cached
    path = target.split(b"?", 1)[0]
    if not path.startswith(b"/items/"):
        return _NOT_FOUND
    try:
        n = int(path[7:])
    except ValueError:
        return _NOT_FOUND
    out = _response("200 OK", item_body(n))
    if len(_State.cache) < 100_000:
        _State.cache[target] = out
    return out


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        out = []
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = self.buf[:end]
            length = 0
            lower = head.lower()
            i = lower.find(b"\r\ncontent-length:")
            if i >= 0:
                j = lower.find(b"\r\n", i + 2)
                length = int(lower[i + 17 : j if j >= 0 else None])
            if len(self.buf) < end + 4 + length:
                break
            self.buf = self.buf[end + 4 + length :]
            parts = head.split(b" ", 2)
            out.append(_answer(parts[1]) if len(parts) == 3 else _NOT_FOUND)
        if out:
            self.transport.write(b"".join(out))


async def _main() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    server = await loop.create_server(_Conn, HOST, 0, backlog=512)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_main())
