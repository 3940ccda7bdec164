"""The control API cannot be reached through the proxy, and is never recorded (#16).

A recording run with its control API: clients that send the control URL through the
proxy (plain HTTP by 127.0.0.1, localhost and another loopback address, and a CONNECT tunnel to
its port) get a 403 naming the fix; no fault is added, nothing of it is in the cassette,
while the same call made directly works and ordinary traffic is recorded as usual.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from replayproxy.cassette.store import cassette_path, load_cassette
from replayproxy.engines.mitm.ca import CA
from replayproxy.model import RecordMode
from replayproxy.run import ProxyRun
from tests.conftest import UpstreamCA
from tests.integration.conftest import serving
from tests.integration.support import RequestsClient, Upstream, base_env


@pytest.fixture
def run(proxy_ca: CA, upstream_ca: UpstreamCA, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> Iterator[ProxyRun]:
    proxy_run = ProxyRun("guarded", RecordMode.ALL, cassette_dir=tmp_path / "cassettes",
                         upstream_ca=upstream_ca.pem, ca_dir=proxy_ca.directory,
                         upstream_proxy="none")

    class Running:
        run = proxy_run
        summary = None

    with serving(Running, caplog):
        yield proxy_run


def test_the_control_api_is_refused_through_the_proxy_and_never_recorded(
        run, http_upstream: Upstream, tmp_path):
    control, token = run.control_url, run.control_token
    port = urlsplit(control).port
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    fault = json.dumps({"spec": "status=503"}).encode()
    with RequestsClient(run.proxy_url, run.ca.bundle, tmp_path) as c:
        for host in ("127.0.0.1", "localhost", "127.0.0.2"):
            refused = c.post(f"http://{host}:{port}/faults", fault, auth)
            assert refused.status == 403, refused
            assert b"control API is not served through the proxy" in refused.body
            assert c.get(f"http://{host}:{port}/faults", auth).status == 403
        assert c.get(http_upstream.url("/json")).status == 200  # ordinary traffic
    # a tunnel to the control port is refused too (curl: CONNECT answered 403)
    env = base_env(http_proxy=run.proxy_url)
    tunnel = subprocess.run(["curl", "-sS", "--max-time", "20", "--proxytunnel",
                             "-H", f"Authorization: Bearer {token}", f"{control}/faults"],
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    assert tunnel.returncode != 0 and "403" in tunnel.stderr, tunnel.stderr
    # nothing reached the API: no fault was added; a direct call works
    faults = run.fault_control()
    assert faults.list() == []
    run.stop()
    recorded = load_cassette(cassette_path(tmp_path / "cassettes", "guarded"))
    urls = [f"{i.request.host}:{i.request.port}{i.request.path}" for i in recorded.interactions()]
    assert urls == [f"{http_upstream.host}:{http_upstream.port}/json"]
    raw = cassette_path(tmp_path / "cassettes", "guarded").read_bytes()
    assert token is not None and token.encode() not in raw
