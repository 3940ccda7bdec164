"""gRPC through the proxy (issue 13): a grpcio client and server over TLS, the client
using the proxy as users do (``grpc_proxy`` and the proxy's CA).

Unary and server-streaming calls, and a call ending in an error status, are recorded
with their trailers (``grpc-status``, ``grpc-message``, trailing metadata) and replayed
offline; a ``status,grpc=`` fault gives the client that status; ``cassette show`` shows
the messages as frames, decoded with a descriptor set; ``explain`` names the message
that differs; a client cancelling a stream mid-way is one log line and nothing else.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from replayproxy.cassette.store import cassette_path, load_cassette
from replayproxy.grpc_wire import parse_frames
from replayproxy.model import RecordMode
from replayproxy.run import ProxyRun
from tests.conftest import UpstreamCA
from tests.integration.conftest import RunningProxy
from tests.integration.h2_upstream import (
    COUNT,
    ECHO,
    FAIL,
    HELLO,
    SUM,
    GrpcUpstream,
    decode_string_field,
    decode_varint_field,
    descriptor_set,
    encode_string_field,
    encode_varint_field,
    frame,
)
from tests.integration.support import cli, write_config

pytestmark = pytest.mark.slow

_PROXY_VARIABLES = ("grpc_proxy", "https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY",
                    "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY", "no_grpc_proxy")


@pytest.fixture
def grpc_upstream(upstream_ca: UpstreamCA) -> Iterator[GrpcUpstream]:
    server = GrpcUpstream(upstream_ca.ca.issue_cert("127.0.0.1", "localhost"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def slow_grpc_upstream(upstream_ca: UpstreamCA) -> Iterator[GrpcUpstream]:
    server = GrpcUpstream(upstream_ca.ca.issue_cert("127.0.0.1", "localhost"), delay=0.3)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def through(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``through(p, target, compression=None)``: a secure channel to ``target`` via the
    running proxy ``p`` (grpc C-core reads ``grpc_proxy`` when the channel is made)."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    channels = []

    def make(p: Any, target: str, compression: Any = None) -> Any:
        monkeypatch.setenv("grpc_proxy", p.url)
        creds = grpc.ssl_channel_credentials(root_certificates=p.proxy.ca.cert.read_bytes())
        channel = grpc.secure_channel(target, creds, compression=compression)
        channels.append(channel)
        return channel

    yield make
    for channel in channels:
        channel.close()


def conversation(channel: Any) -> dict[str, Any]:
    """A unary call, a server stream and a call that fails: what the client saw."""
    reply, hello = channel.unary_unary(HELLO).with_call(encode_string_field("bob"), timeout=10)
    stream = channel.unary_stream(COUNT)(encode_varint_field(3), timeout=10)
    counted = [decode_varint_field(m) for m in stream]
    with pytest.raises(grpc.RpcError) as failed:
        channel.unary_unary(FAIL)(encode_string_field("x"), timeout=10)
    return {
        "hello": decode_string_field(reply),
        "hello_status": hello.code(),
        "hello_trailers": dict(hello.trailing_metadata()),
        "count": counted,
        "count_status": stream.code(),
        "fail": (failed.value.code(), failed.value.details()),
    }


def test_unary_and_server_streaming_calls_are_recorded_and_replayed_offline(
        grpc_upstream, run_proxy, through, cassette_dir):
    with run_proxy("grpc", RecordMode.ALL) as p:
        live = conversation(through(p, grpc_upstream.target))
    assert live == {
        "hello": "hello bob", "hello_status": grpc.StatusCode.OK,
        "hello_trailers": {"x-served-by": "grpc-upstream"},
        "count": [1, 2, 3], "count_status": grpc.StatusCode.OK,
        "fail": (grpc.StatusCode.NOT_FOUND, "no such greeting"),
    }
    cassette = load_cassette(cassette_path(cassette_dir, "grpc"))
    paths = [cassette.interaction(i).request.path for i in range(len(cassette))]
    assert paths == [HELLO, COUNT, FAIL]
    assert {"h2", "trailers"} <= set(cassette.features)
    streamed = cassette.interaction(1)
    assert streamed.request.body == frame(encode_varint_field(3))
    assert streamed.response.body == b"".join(frame(encode_varint_field(i)) for i in (1, 2, 3))
    assert ("grpc-status", "0") in streamed.response.trailers
    calls = list(grpc_upstream.calls)
    grpc_upstream.stop()  # replay must not need it

    with run_proxy("grpc", RecordMode.NONE) as p:
        replayed = conversation(through(p, grpc_upstream.target))
    assert replayed == live
    assert p.summary is not None
    assert (p.summary.replayed, p.summary.unmatched.total) == (3, 0)
    assert not p.summary.upstream_failures
    assert grpc_upstream.calls == calls


def test_a_grpc_status_fault_gives_the_client_that_status(grpc_upstream, run_proxy, through,
                                                           tmp_path):
    with run_proxy("grpcf", RecordMode.ALL) as p:
        conversation(through(p, grpc_upstream.target))
    grpc_upstream.stop()
    config = write_config(tmp_path, """
        faults = ["status,grpc=UNAVAILABLE,body=try later: 100% busy@POST */demo.Greeter/Hello"]
    """)
    with run_proxy("grpcf", RecordMode.NONE, config=config) as p:
        channel = through(p, grpc_upstream.target)
        with pytest.raises(grpc.RpcError) as failed:
            channel.unary_unary(HELLO)(encode_string_field("bob"), timeout=10)
        counted = [decode_varint_field(m) for m in
                   channel.unary_stream(COUNT)(encode_varint_field(3), timeout=10)]
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert failed.value.details() == "try later: 100% busy"
    assert counted == [1, 2, 3]  # the route names Hello only


def test_cassette_show_and_explain_show_grpc_messages(grpc_upstream, run_proxy, through,
                                                      cassette_dir, cli_env, tmp_path):
    with run_proxy("grpcs", RecordMode.ALL) as p:
        conversation(through(p, grpc_upstream.target))
    grpc_upstream.stop()
    pb = descriptor_set(tmp_path)
    base = ("cassette", "show", "-c", "grpcs", "-d", cassette_dir)

    plain = cli(*base, "-i", "2", env=cli_env)
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.splitlines()
    assert "    message 1: uncompressed, 2 bytes: 0803" in lines  # the request: n = 3
    assert [line for line in lines if line.startswith("    message ")][1:] == [
        "    message 1: uncompressed, 2 bytes: 0801",
        "    message 2: uncompressed, 2 bytes: 0802",
        "    message 3: uncompressed, 2 bytes: 0803"]
    assert "  response trailers:" in lines and "    grpc-status: 0" in lines
    assert "  gRPC status: 0 OK" in lines

    decoded = cli(*base, "--descriptor-set", pb, env=cli_env)
    assert decoded.returncode == 0, decoded.stderr
    out = decoded.stdout
    assert 'demo.HelloRequest {name: "bob"}' in out
    assert 'demo.HelloReply {message: "hello bob"}' in out
    assert "demo.CountRequest {n: 3}" in out
    assert "demo.CountReply {i: 1}" in out and "demo.CountReply {i: 3}" in out
    assert "gRPC status: 5 NOT_FOUND: no such greeting" in out

    missing = cli(*base, "--descriptor-set", tmp_path / "nope.pb", env=cli_env)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "cannot read the descriptor set" in missing.stderr

    body = tmp_path / "eve.bin"
    body.write_bytes(frame(encode_string_field("eve")))
    explained = cli("explain", "-c", "grpcs", "--cassette-dir", cassette_dir,
                    f"https://{grpc_upstream.target}{HELLO}",
                    "-H", "content-type: application/grpc", "-d", f"@{body}", env=cli_env)
    assert explained.returncode == 1, explained.stderr
    assert "grpc message 1" in explained.stdout
    assert "0a03626f62" in explained.stdout and "0a03657665" in explained.stdout


def test_a_client_cancelling_a_server_stream_midway(slow_grpc_upstream, run_proxy, through,
                                                    cassette_dir, caplog):
    """Bad input: an HTTP/2 client resets a stream while recording. One log line, no
    crash, nothing recorded for it; the other calls on the same connection go on."""
    caplog.set_level(logging.INFO)
    with run_proxy("cancel", RecordMode.ALL) as p:
        channel = through(p, slow_grpc_upstream.target)
        stream = channel.unary_stream(COUNT)(encode_varint_field(20), timeout=30)
        threading.Timer(0.8, stream.cancel).start()
        with pytest.raises(grpc.RpcError) as cancelled:
            list(stream)
        reply = channel.unary_unary(HELLO)(encode_string_field("after"), timeout=10)
        # the reset reached the upstream: its handler stopped before the 20th message
        assert slow_grpc_upstream.cancelled.wait(10)
    assert cancelled.value.code() == grpc.StatusCode.CANCELLED
    assert decode_string_field(reply) == "hello after"
    resets = [r.getMessage() for r in caplog.records if r.name == "replayproxy"
              and "reset its HTTP/2 stream" in r.getMessage()]
    assert len(resets) == 1 and COUNT in resets[0] and "not recorded" in resets[0]
    assert "has crashed" not in caplog.text
    assert p.summary is not None and not p.summary.upstream_failures
    cassette = load_cassette(cassette_path(cassette_dir, "cancel"))
    assert [cassette.interaction(i).request.path for i in range(len(cassette))] == [HELLO]


def test_an_unmatched_call_fails_with_a_grpc_status_naming_the_difference(
        grpc_upstream, run_proxy, through):
    with run_proxy("grpcu", RecordMode.ALL) as p:
        conversation(through(p, grpc_upstream.target))
    grpc_upstream.stop()
    with run_proxy("grpcu", RecordMode.NONE) as p, pytest.raises(grpc.RpcError) as failed:
        through(p, grpc_upstream.target).unary_unary(HELLO)(encode_string_field("eve"),
                                                            timeout=10)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    details = failed.value.details()
    assert details.startswith("replayproxy: no recorded interaction in cassette 'grpcu'")
    assert "grpc message 1" in details and "0a03657665" in details
    assert p.summary is not None and p.summary.unmatched.total == 1


def test_a_token_in_metadata_and_messages_is_redacted_and_replays_as_valid_messages(
        grpc_upstream, run_proxy, through, cassette_dir):
    """The client sends its bearer token as metadata and as the name; the server echoes
    the name. The cassette holds neither; the replayed reply is still a valid message."""
    token = "tok_live_0123456789abcdef"
    metadata = (("authorization", f"Bearer {token}"),)
    with run_proxy("grpcr", RecordMode.ALL) as p:
        live = through(p, grpc_upstream.target).unary_unary(HELLO)(
            encode_string_field(token), metadata=metadata, timeout=10)
    assert decode_string_field(live) == f"hello {token}"
    stored = cassette_path(cassette_dir, "grpcr").read_bytes()
    assert token.encode() not in stored
    grpc_upstream.stop()
    with run_proxy("grpcr", RecordMode.NONE) as p:
        replayed = through(p, grpc_upstream.target).unary_unary(HELLO)(
            encode_string_field(token), metadata=metadata, timeout=10)
    name = decode_string_field(replayed)
    assert name.startswith("hello <redacted:authorization:") and token not in name
    assert p.summary is not None and p.summary.replayed == 1


def test_a_token_in_a_gzip_compressed_message_is_redacted_and_replays(
        grpc_upstream, run_proxy, through, cassette_dir):
    """A client compressing its messages (``grpc-encoding: gzip``) sends a token in one:
    the cassette's message, decompressed, holds a placeholder, not the token; replayed
    offline, the same compressed call matches it."""
    import gzip

    token = "AKIAABCDEFGHIJKLMNOP"  # a credential shape: found by its look alone
    name = f"{token} {'x' * 100}"  # compressible: gRPC compresses it
    with run_proxy("grpcz", RecordMode.ALL) as p:
        live = through(p, grpc_upstream.target, grpc.Compression.Gzip).unary_unary(HELLO)(
            encode_string_field(name), timeout=10)
    assert decode_string_field(live) == f"hello {name}"
    it = load_cassette(cassette_path(cassette_dir, "grpcz")).interaction(0)
    assert dict((k.lower(), v) for k, v in it.request.headers)["grpc-encoding"] == "gzip"
    (message,), rest = parse_frames(it.request.body)
    assert rest == b"" and message.compressed
    plain = gzip.decompress(message.payload)
    assert token.encode() not in plain and b"<redacted:aws-access-key:" in plain
    assert token.encode() not in it.response.body
    grpc_upstream.stop()
    with run_proxy("grpcz", RecordMode.NONE) as p:
        replayed = through(p, grpc_upstream.target, grpc.Compression.Gzip).unary_unary(
            HELLO)(encode_string_field(name), timeout=10)
    # the reply, as recorded: the echoed token is its placeholder (a 2-byte length now)
    assert replayed.startswith(b"\n\x8b\x01hello <redacted:aws-access-key:")
    assert token.encode() not in replayed
    assert p.summary is not None and p.summary.replayed == 1


_CLIENT = """\
import sys
import grpc

channel = grpc.secure_channel(sys.argv[1], grpc.ssl_channel_credentials())  # no roots given
reply = channel.unary_unary("/demo.Greeter/Hello")(b"\\x0a\\x03cli", timeout=10)
stream = channel.unary_stream("/demo.Greeter/Count")(b"\\x08\\x02", timeout=10)
print(reply.hex(), [m.hex() for m in stream])
"""


def test_a_grpc_client_run_by_the_cli_needs_no_setup(grpc_upstream, upstream_ca, cli_env,
                                                     tmp_path, cassette_dir):
    """`replayproxy record/replay -- CMD` give a grpcio client the proxy (https_proxy)
    and the CA (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH): the user changes nothing."""
    client = tmp_path / "client.py"
    client.write_text(_CLIENT, encoding="utf-8")
    expected = (f"{encode_string_field('hello cli').hex()} "
                f"{[encode_varint_field(i).hex() for i in (1, 2)]}")
    cmd = ("--", sys.executable, client, grpc_upstream.target)
    recorded = cli("record", "-c", "cli", "-d", cassette_dir, "--upstream-ca", upstream_ca.pem,
                   *cmd, env=cli_env)
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stdout.strip() == expected
    assert "2 recorded" in recorded.stderr
    grpc_upstream.stop()
    replayed = cli("replay", "-c", "cli", "-d", cassette_dir, *cmd, env=cli_env)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == expected
    assert "2 replayed, 0 recorded" in replayed.stderr


def test_a_server_stream_reaches_the_client_as_it_comes_and_replays_paced(
        slow_grpc_upstream, run_proxy, through, cassette_dir):
    """Messages 0.3 s apart: while recording, the first reaches the client long before the
    last; replayed offline (pace 1), the spacing is kept; the same messages."""
    def arrivals(p: Any) -> tuple[list[bytes], list[float]]:
        start = time.monotonic()
        got, times = [], []
        for message in through(p, slow_grpc_upstream.target).unary_stream(COUNT)(
                encode_varint_field(4), timeout=30):
            got.append(message)
            times.append(time.monotonic() - start)
        return got, times

    with run_proxy("paced", RecordMode.ALL) as p:
        live, times = arrivals(p)
    assert live == [encode_varint_field(i) for i in (1, 2, 3, 4)]
    assert times[-1] - times[0] > 0.6, times  # 0.9 s apart at the upstream
    chunks = load_cassette(cassette_path(cassette_dir, "paced")).interaction(0).chunks
    assert len(chunks) == 4 and chunks[-1][0] - chunks[0][0] > 0.6
    slow_grpc_upstream.stop()
    with run_proxy("paced", RecordMode.NONE) as p:
        replayed, times = arrivals(p)
    assert replayed == live and times[-1] - times[0] > 0.6, times
    assert p.summary is not None and p.summary.replayed == 1


def test_client_streaming_and_bidirectional_calls_sent_whole_replay_offline(
        grpc_upstream, run_proxy, through, cassette_dir):
    """A client-streaming call and a bidirectional one whose client sends all its
    messages before reading: each recorded as one request and one response body, and
    replayed offline with the same messages."""
    def calls(p: Any) -> tuple[int, list[str]]:
        channel = through(p, grpc_upstream.target)
        total = channel.stream_unary(SUM)(
            iter([encode_varint_field(i) for i in (1, 2, 3)]), timeout=10)
        echoed = channel.stream_stream(ECHO)(
            iter([encode_string_field(n) for n in ("a", "b")]), timeout=10)
        return decode_varint_field(total), [decode_string_field(m) for m in echoed]

    with run_proxy("streaming", RecordMode.ALL) as p:
        live = calls(p)
    assert live == (6, ["echo a", "echo b"])
    cassette = load_cassette(cassette_path(cassette_dir, "streaming"))
    assert cassette.interaction(0).request.body == b"".join(
        frame(encode_varint_field(i)) for i in (1, 2, 3))
    grpc_upstream.stop()
    with run_proxy("streaming", RecordMode.NONE) as p:
        assert calls(p) == live
    assert p.summary is not None and p.summary.replayed == 2


def test_a_bidirectional_call_waiting_for_each_reply_fails_the_run_loudly(
        grpc_upstream, proxy_ca, upstream_ca, cassette_dir, through, tmp_path, caplog):
    """Bad input for a recorder that answers a call once its request has ended: a client
    that waits for the reply to its first message before sending the next stalls until it
    gives up. The proxy says why in one line and the run fails; nothing is recorded."""
    run = ProxyRun("pingpong", RecordMode.ALL, cassette_dir=cassette_dir,
                   upstream_ca=upstream_ca.pem, ca_dir=proxy_ca.directory, control=False,
                   upstream_proxy="none")
    p = RunningProxy(run, tmp_path)
    replied: queue.Queue[int] = queue.Queue()

    def one_at_a_time() -> Iterator[bytes]:
        for name in ("x", "y"):
            yield encode_string_field(name)
            replied.get(timeout=2)  # raises: the reply never comes

    run.start()
    try:
        with pytest.raises(grpc.RpcError):
            for _ in through(p, grpc_upstream.target).stream_stream(ECHO)(
                    one_at_a_time(), timeout=10):
                replied.put(1)
    finally:
        summary = run.stop()
    lines = [r.getMessage() for r in caplog.records
             if r.name == "replayproxy" and r.levelno >= logging.ERROR]
    assert len(lines) == 1 and ECHO in lines[0], lines
    assert "waits for a reply before sending the rest" in lines[0]
    assert summary is not None and summary.errors.total == 1
    verdict = run.verdict(command=False)
    assert not verdict.passed and any(ECHO in r for r in verdict.reasons), verdict
    assert not cassette_path(cassette_dir, "pingpong").exists()
