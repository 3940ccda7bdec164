"""`replayproxy serve` runs until interrupted and prints `export` lines; `replayproxy env`
prints the same lines for the running server."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from replayproxy.cassette.store import cassette_path, load_cassette
from tests.integration.support import (
    JSON_BODY,
    PNG_BODY,
    assert_clean_error,
    background,
    base_env,
    cli,
    parse_exports,
    replayproxy_cmd,
)

pytestmark = pytest.mark.slow


def _exports_printed(lines: list[str]) -> bool:
    return any(line.startswith("export REPLAYPROXY_URL=") for line in lines)


def _curl(env: dict[str, str], url: str) -> bytes:
    proc = subprocess.run(["curl", "-sS", "--max-time", "30", url], env=env,
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_serve_prints_exports_env_repeats_them_sigint_writes_cassette(
        https_upstream, cli_env, upstream_ca, tmp_path: Path):
    cdir = tmp_path / "cassettes"
    serve = replayproxy_cmd("serve", "-c", "served", "--cassette-dir", cdir, "--upstream-ca",
                            upstream_ca.pem)
    url = https_upstream.url("/json")

    # first run: the cassette does not exist, so `once` records
    with background(serve, env=cli_env, cwd=tmp_path, stderr_path=tmp_path / "s1.err") as bg:
        lines = bg.read_until(_exports_printed)
        exports = [line for line in lines if line.startswith("export ")]
        env = parse_exports(exports)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
                     "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                     "NODE_EXTRA_CA_CERTS"):
            assert name in env, name
        assert env["HTTPS_PROXY"].startswith("http://127.0.0.1:")
        assert lines == exports, "serve printed something besides export lines on stdout"

        assert _curl(base_env(**env), url) == JSON_BODY
        assert https_upstream.hits("/json") == 1

        # the state file holds the control token: owner-only, in an owner-only directory
        states = list((Path(cli_env["REPLAYPROXY_HOME"]) / "run").glob("serve-*.json"))
        assert len(states) == 1
        assert states[0].stat().st_mode & 0o777 == 0o600
        assert states[0].parent.stat().st_mode & 0o777 == 0o700

        same = cli("env", env=cli_env)
        assert same.returncode == 0, same.stderr
        assert same.stdout.splitlines()[0].startswith(f"# replayproxy serve PID {bg.proc.pid}")
        assert [line for line in same.stdout.splitlines() if not line.startswith("#")] == exports

        bg.proc.send_signal(signal.SIGINT)
        assert bg.proc.wait(30) == 0
    assert "1 recorded" in (tmp_path / "s1.err").read_text()
    cassette = load_cassette(cassette_path(cdir, "served"))
    assert [it.request.url for it in cassette.interactions()] == [url]
    assert cassette.interaction(0).response.body == JSON_BODY

    gone = cli("env", env=cli_env)
    assert_clean_error(gone, "no `replayproxy serve` is running", "replayproxy serve -c")

    # second run: the cassette exists, so `once` replays, offline
    connections = https_upstream.connections
    with background(serve, env=cli_env, cwd=tmp_path, stderr_path=tmp_path / "s2.err") as bg:
        env = parse_exports(bg.read_until(_exports_printed))
        assert _curl(base_env(**env), url) == JSON_BODY
        missing = _curl(base_env(**env), https_upstream.url("/png"))
        assert missing != PNG_BODY and b"'served'" in missing
        bg.proc.send_signal(signal.SIGINT)
        assert bg.proc.wait(30) == 1  # there was an unmatched request
    assert https_upstream.connections == connections
    err = (tmp_path / "s2.err").read_text()
    assert f"unmatched: GET {https_upstream.url('/png')}" in err
    assert "Traceback" not in err
