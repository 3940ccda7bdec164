"""One running proxy for a whole test session: ``ProxyRun.use_cassette`` switches the
cassette (and resets the faults) without a restart, ``flush`` saves what was recorded;
several processes starting at once make one CA."""

from __future__ import annotations

import subprocess
import sys

import requests

from replayproxy.cassette.store import load_cassette
from replayproxy.model import RecordMode
from replayproxy.run import ProxyRun


def get(run: ProxyRun, url: str) -> requests.Response:
    return requests.get(url, proxies={"https": run.proxy_url}, verify=str(run.ca.bundle),
                        timeout=20)


def test_use_cassette_switches_the_running_proxy(proxy_ca, upstream_ca, https_upstream,
                                                 tmp_path):
    run = ProxyRun("first", "all", cassette_dir=tmp_path, upstream_ca=upstream_ca.pem,
                   ca_dir=proxy_ca.directory, upstream_proxy="none",
                   faults=["status=418@*/v1/teapot"])
    with run:
        url = run.proxy_url
        assert get(run, https_upstream.url("/v1/one")).status_code == 200
        assert get(run, https_upstream.url("/v1/teapot")).status_code == 418
        run.fault_control().add("status=503@*/v1/one")
        flushed = run.flush()  # saved while the run goes on
        assert flushed.recorded == 1 and len(load_cassette(tmp_path / "first.cassette")) == 1

        previous = run.use_cassette("second", faults=["status=429@*/v1/limited"])
        assert previous.cassette == "first" and previous.recorded == 1
        assert run.proxy_url == url  # the same proxy
        assert [f["spec"] for f in run.fault_control().list()] == ["status=429@*/v1/limited"]
        assert get(run, https_upstream.url("/v1/one")).status_code == 200  # fault gone
        assert get(run, https_upstream.url("/v1/limited")).status_code == 429

        run.use_cassette("first", RecordMode.NONE)
        hits = https_upstream.total_requests
        assert get(run, https_upstream.url("/v1/one")).json()["path"] == "/v1/one"
        assert https_upstream.total_requests == hits  # replayed
        assert [s.outcome for s in run.requests.select()] == [
            "forwarded", "fault", "forwarded", "fault", "replayed"]
    assert [q.path for q in (load_cassette(tmp_path / "second.cassette").request(0),)] == \
        ["/v1/one"]
    assert run.summary is not None and run.summary.cassette == "first"
    assert run.summary.replayed == 1


PROBE = """
import sys
from pathlib import Path
from replayproxy.engines.mitm.ca import ensure_ca
print(ensure_ca(Path(sys.argv[1])).cert.read_text(), end="")
"""


def test_processes_starting_together_make_one_ca(tmp_path):
    directory = tmp_path / "ca"
    children = [subprocess.Popen([sys.executable, "-W", "ignore", "-c", PROBE, str(directory)],
                                 stdout=subprocess.PIPE, text=True) for _ in range(4)]
    certs = {child.communicate(timeout=120)[0] for child in children}
    assert all(child.returncode == 0 for child in children)
    assert certs == {(directory / "mitmproxy-ca-cert.pem").read_text()}
