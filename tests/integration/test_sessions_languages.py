"""One proxy shared by test suites in other languages (docs/sessions.md): Node and Go
select their cassette with the proxy URL's user name, Java opens a session of its own
through the control API (docs/examples/sessions/SessionExample.java, run as it is). Each
records, then replays offline, concurrently, and gets only its own interactions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from replayproxy.config import Settings
from replayproxy.run import ProxyRun
from tests.integration.support import JSON_BODY, base_env, offline
from tests.integration.test_clients import (
    CLIENTS,
    SANDBOX,
    ResolveSandbox,
    go_binary,
    java_classes,
    need,
    sandbox,
    sandbox_context,
)

__all__ = ["go_binary", "java_classes", "sandbox", "sandbox_context"]  # fixtures used here

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "sessions"


@pytest.fixture(scope="module")
def example_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("java", "javac")
    out = tmp_path_factory.mktemp("java-example")
    subprocess.run(["javac", "-d", out, EXAMPLE / "SessionExample.java"], check=True,
                   timeout=120, env=base_env())
    return out


def _suites(run: ProxyRun, url: str, go: Path, java: Path) -> dict[str, bytes]:
    """Start the three suites at once; their outputs."""
    env = base_env(**run.environment())
    node = {**env, "HTTPS_PROXY": run.session_url("node-suite"),
            "HTTP_PROXY": run.session_url("node-suite")}
    gos = {**env, "HTTPS_PROXY": run.session_url("go-suite")}
    procs = {
        "node": subprocess.Popen(["node", CLIENTS / "node_client.js", "agent", url],
                                 env=node, stdout=subprocess.PIPE, stderr=subprocess.PIPE),
        "go": subprocess.Popen([go, url.replace("127.0.0.1", SANDBOX)], env=gos,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE),
        "java": subprocess.Popen(["java", "-cp", java, "SessionExample", "java-suite", url],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE),
    }
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"{name}: {stderr.decode(errors='replace')}"
        out[name] = stdout
    return out


def test_node_go_and_java_suites_share_one_proxy(sandbox, proxy_ca, upstream_ca, tmp_path,
                                                 go_binary, example_classes):
    need("node")
    cdir = tmp_path / "cassettes"
    url = f"https://127.0.0.1:{sandbox.port}/json"
    kw = dict(cassette_dir=cdir, settings=Settings(), ca_dir=proxy_ca.directory,
              upstream_proxy="none", addons=[ResolveSandbox()])
    with ProxyRun(None, "once", upstream_ca=upstream_ca.pem, **kw) as run:
        recorded = _suites(run, url, go_binary, example_classes)
    assert recorded == {"node": JSON_BODY, "go": JSON_BODY, "java": JSON_BODY}
    assert {n: s.recorded for n, s in run.session_summaries.items()} == {
        "node-suite": 1, "go-suite": 1, "java-suite": 1}
    assert sorted(p.name for p in cdir.iterdir()) == [
        "go-suite.cassette", "java-suite.cassette", "node-suite.cassette"]

    with offline(sandbox), ProxyRun(None, "none", **kw) as run:
        replayed = _suites(run, url, go_binary, example_classes)
    assert replayed == recorded
    assert {n: (s.replayed, s.unmatched.total) for n, s in run.session_summaries.items()} \
        == {"node-suite": (1, 0), "go-suite": (1, 0), "java-suite": (1, 0)}
    assert run.verdict().passed
