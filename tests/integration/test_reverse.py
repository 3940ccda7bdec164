"""Reverse mode: one upstream served on a local port as a plain base URL, for clients
that ignore proxy variables; recorded, then replayed offline."""

from __future__ import annotations

import socket

import pytest

from replayproxy.cassette.store import cassette_path, load_cassette
from replayproxy.model import RecordMode
from tests.integration.support import (
    GZIP_BODY,
    JSON_BODY,
    PNG_BODY,
    RequestsClient,
    cli_bytes,
)

# uses only $REPLAYPROXY_REVERSE_URL; --noproxy '*' makes curl ignore HTTP_PROXY, like a
# client that knows nothing about proxies
SCRIPT = (
    'case "$REPLAYPROXY_REVERSE_URL" in http://127.0.0.1:*) ;; *) exit 9;; esac; '
    "curl -sS --noproxy '*' \"$REPLAYPROXY_REVERSE_URL/json\" && "
    "curl -sS --noproxy '*' -H 'Accept-Encoding: gzip' \"$REPLAYPROXY_REVERSE_URL/gzip\" && "
    "curl -sS --noproxy '*' -d 'a=1' \"$REPLAYPROXY_REVERSE_URL/echo?x=y\""
)


@pytest.mark.slow
def test_reverse_record_then_replay_offline_cli(https_upstream, cli_env, upstream_ca,
                                                 tmp_path):
    cdir = tmp_path / "cassettes"

    def run(verb: str):
        return cli_bytes(verb, "-c", "rev", "--cassette-dir", cdir, "--upstream-ca",
                         upstream_ca.pem, "--reverse", https_upstream.base_url, "--",
                         "sh", "-c", SCRIPT, env=cli_env, cwd=tmp_path)

    rec = run("record")
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout.startswith(JSON_BODY + GZIP_BODY)
    assert b'"query": "x=y"' in rec.stdout
    assert f"reverse proxy for {https_upstream.base_url} at http://127.0.0.1:".encode() \
        in rec.stderr
    cassette = load_cassette(cassette_path(cdir, "rev"))
    assert [(it.request.scheme, it.request.host, it.request.port, it.request.path)
            for it in cassette.interactions()] == [
        ("https", "127.0.0.1", https_upstream.port, p) for p in ("/json", "/gzip", "/echo")]
    assert https_upstream.total_requests == 3

    https_upstream.stop()
    rep = run("replay")
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.stdout


def _udp_port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_reverse_in_process_replay_counts_no_connections(https_upstream, run_proxy):
    with run_proxy("rev", RecordMode.ALL, reverse=https_upstream.base_url) as p:
        base = p.proxy.reverse_url
        assert base is not None and base.startswith("http://127.0.0.1:")
        # TCP only: mitmproxy 11 would also serve HTTP/3 on UDP through mitmproxy_rs,
        # whose threads crash the interpreter at exit (SIGSEGV, one run in six)
        assert _udp_port_is_free(int(base.rsplit(":", 1)[1]))
        with RequestsClient(None, p.proxy.ca.bundle, p.workdir) as client:  # no proxy
            recorded = [client.get(f"{base}/png"), client.get(f"{base}/poll?id=r"),
                        client.get(f"{base}/poll?id=r")]
    assert recorded[0].body == PNG_BODY
    assert [r.body for r in recorded[1:]] == [b'{"status": "pending"}', b'{"status": "done"}']

    connections = https_upstream.connections
    with run_proxy("rev", RecordMode.NONE, reverse=https_upstream.base_url) as p:
        base = p.proxy.reverse_url
        with RequestsClient(None, p.proxy.ca.bundle, p.workdir) as client:
            replayed = [client.get(f"{base}/png"), client.get(f"{base}/poll?id=r"),
                        client.get(f"{base}/poll?id=r")]
            missing = client.get(f"{base}/nothing")
    assert [r.comparable() for r in replayed] == [r.comparable() for r in recorded]
    assert missing.status == 502 and missing.header("x-replayproxy") == "unmatched"
    assert https_upstream.connections == connections
