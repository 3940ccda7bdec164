"""Local HTTP/2 and gRPC upstreams for the integration tests, over real TLS.

``H2Upstream`` speaks HTTP/2 only (ALPN ``h2``), written on the ``h2`` library (which
mitmproxy itself uses), and sends trailers. ``GrpcUpstream`` is a grpcio server with
generic handlers on raw bytes (no generated code): ``/demo.Greeter/Hello`` (unary: one
message back) and ``/demo.Greeter/Count`` (server streaming: one message per count).
Both count the TCP connections they accept, so a test can prove replay stayed offline.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import trustme

TRAILERS = [("x-checksum", "sha1-abc123"), ("x-served-by", "h2-upstream")]
H2_JSON = json.dumps({"protocol": "h2", "ok": True}).encode()


class H2Upstream:
    """An HTTP/2-only TLS server on 127.0.0.1 (port 0).

    ``/json``: a JSON body; ``/trailers``: a body, then ``TRAILERS``; ``/echo``: the
    request body back, with its length in a trailer.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._context.set_alpn_protocols(["h2"])
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.host, self.port = "127.0.0.1", self._sock.getsockname()[1]
        self.connections = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: set[ssl.SSLSocket] = set()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"https://{self.host}:{self.port}{path}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            sock = self._context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with self._lock:
            self._open.add(sock)
        try:
            self._talk(sock)
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass  # a client going away is not the test's business
        finally:
            with self._lock:
                self._open.discard(sock)
            sock.close()

    def _talk(self, sock: ssl.SSLSocket) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        heads: dict[int, dict[str, str]] = {}
        bodies: dict[int, bytes] = {}
        while not self._stop.is_set():
            data = sock.recv(65535)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    heads[event.stream_id] = {
                        (k.decode() if isinstance(k, bytes) else k):
                        (v.decode() if isinstance(v, bytes) else v)
                        for k, v in event.headers}
                    bodies[event.stream_id] = b""
                elif isinstance(event, h2.events.DataReceived):
                    bodies[event.stream_id] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length,
                                                   event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    self._respond(conn, event.stream_id, heads.pop(event.stream_id),
                                  bodies.pop(event.stream_id))
            sock.sendall(conn.data_to_send())

    def _respond(self, conn: h2.connection.H2Connection, stream: int,
                 head: dict[str, str], body: bytes) -> None:
        with self._lock:
            self.requests += 1
        path = head.get(":path", "")
        trailers: list[tuple[str, str]] = []
        if path == "/json":
            out, ctype = H2_JSON, "application/json"
        elif path == "/trailers":
            out, ctype, trailers = b"body before the trailers\n", "text/plain", TRAILERS
        elif path == "/echo":
            out, ctype = body, "application/octet-stream"
            trailers = [("x-length", str(len(body)))]
        else:
            out, ctype = b"not found", "text/plain"
        status = "404" if out == b"not found" else "200"
        conn.send_headers(stream, [(":status", status), ("content-type", ctype),
                                   ("server", "h2-upstream")])
        conn.send_data(stream, out, end_stream=not trailers)
        if trailers:
            conn.send_headers(stream, trailers, end_stream=True)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.close()
        self._thread.join(5)
        with self._lock:
            open_sockets = list(self._open)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(5)


# -- gRPC -----------------------------------------------------------------------------

SERVICE = "demo.Greeter"
HELLO = f"/{SERVICE}/Hello"
COUNT = f"/{SERVICE}/Count"
FAIL = f"/{SERVICE}/Fail"
SUM = f"/{SERVICE}/Sum"
ECHO = f"/{SERVICE}/Echo"


def frame(payload: bytes, compressed: bool = False) -> bytes:
    """A gRPC length-prefixed message."""
    return struct.pack(">?I", compressed, len(payload)) + payload


class GrpcUpstream:
    """A grpcio server over TLS on 127.0.0.1 (port 0), with raw-bytes handlers.

    Messages are protobuf-encoded by hand (``demo.proto`` below describes them):
    ``Hello(HelloRequest{name}) -> HelloReply{message}``;
    ``Count(CountRequest{n}) -> stream CountReply{i}`` (i = 1..n, ``delay`` seconds
    apart); ``Fail`` always answers NOT_FOUND with a message; ``Sum(stream
    CountRequest{n}) -> CountReply{total}`` (client streaming); ``Echo(stream
    HelloRequest{name}) -> stream HelloReply{message}`` (bidirectional: one reply per
    message, sent as soon as it came).
    """

    def __init__(self, leaf: trustme.LeafCert, delay: float = 0.0) -> None:
        import grpc  # imported here: only the gRPC tests need it

        self.delay = delay
        self.calls: list[str] = []
        self.cancelled = threading.Event()
        handler = grpc.method_handlers_generic_handler(SERVICE, {
            "Hello": grpc.unary_unary_rpc_method_handler(self._hello),
            "Count": grpc.unary_stream_rpc_method_handler(self._count),
            "Fail": grpc.unary_unary_rpc_method_handler(self._fail),
            "Sum": grpc.stream_unary_rpc_method_handler(self._sum),
            "Echo": grpc.stream_stream_rpc_method_handler(self._echo),
        })
        self._pool = ThreadPoolExecutor(max_workers=4)
        self._server = grpc.server(self._pool, handlers=(handler,))
        creds = grpc.ssl_server_credentials([(leaf.private_key_pem.bytes(),
                                              leaf.cert_chain_pems[0].bytes())])
        self.port = self._server.add_secure_port("127.0.0.1:0", creds)
        self.target = f"127.0.0.1:{self.port}"
        self._server.start()

    def _hello(self, request: bytes, context: Any) -> bytes:
        self.calls.append("Hello")
        context.set_trailing_metadata((("x-served-by", "grpc-upstream"),))
        name = decode_string_field(request)
        return encode_string_field(f"hello {name}")

    def _count(self, request: bytes, context: Any) -> Iterator[bytes]:
        self.calls.append("Count")
        n = decode_varint_field(request)
        for i in range(1, n + 1):
            if not context.is_active():
                self.cancelled.set()
                return
            yield encode_varint_field(i)
            if self.delay and self.cancelled.wait(self.delay):
                return

    def _sum(self, requests: Iterator[bytes], context: Any) -> bytes:
        self.calls.append("Sum")
        return encode_varint_field(sum(decode_varint_field(r) for r in requests))

    def _echo(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        self.calls.append("Echo")
        for r in requests:
            yield encode_string_field(f"echo {decode_string_field(r)}")

    def _fail(self, request: bytes, context: Any) -> bytes:
        import grpc

        self.calls.append("Fail")
        context.abort(grpc.StatusCode.NOT_FOUND, "no such greeting")
        raise AssertionError("abort returns never")

    def stop(self) -> None:
        """Stop serving (idempotent) and free the handler threads."""
        self.cancelled.set()  # a stream waiting between messages ends now
        self._server.stop(0).wait(5)
        self._pool.shutdown(wait=True, cancel_futures=True)


# protobuf by hand: field 1, a string (wire type 2) or a varint (wire type 0)

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_string_field(text: str) -> bytes:
    data = text.encode()
    return b"\x0a" + _varint(len(data)) + data


def decode_string_field(data: bytes) -> str:
    """Field 1 of a message holding only that string (shorter than 128 bytes): its
    length must be the message's, as a protobuf parser checks."""
    assert data[:1] == b"\x0a" and len(data) == 2 + data[1], data
    return data[2:].decode()


def encode_varint_field(n: int) -> bytes:
    return b"\x08" + _varint(n)


def decode_varint_field(data: bytes) -> int:
    assert data[:1] == b"\x08", data
    n, shift = 0, 0
    for byte in data[1:]:
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return n


DEMO_PROTO = """\
syntax = "proto3";
package demo;
message HelloRequest { string name = 1; }
message HelloReply { string message = 1; }
message CountRequest { int32 n = 1; }
message CountReply { int32 i = 1; }
service Greeter {
  rpc Hello (HelloRequest) returns (HelloReply);
  rpc Count (CountRequest) returns (stream CountReply);
  rpc Fail (HelloRequest) returns (HelloReply);
}
"""


def descriptor_set(directory: Path) -> Path:
    """``demo.proto`` compiled by grpc_tools.protoc into a FileDescriptorSet file, as a
    user would (``protoc --descriptor_set_out``)."""
    from grpc_tools import protoc

    proto = directory / "demo.proto"
    proto.write_text(DEMO_PROTO, encoding="utf-8")
    out = directory / "demo.pb"
    rc = protoc.main(["protoc", f"-I{directory}", f"--descriptor_set_out={out}",
                      "--include_imports", str(proto)])
    assert rc == 0, "protoc failed"
    return out
