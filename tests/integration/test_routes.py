"""Routes written ``host:port/path`` apply, a route that could never apply stops the run
at start-up, and a route that matched nothing is listed at the end (#12).

Through the `replayproxy` command with curl, against a local HTTPS sandbox on its own
port (the case the ``host:port`` form is for).
"""

from __future__ import annotations

import pytest

from tests.integration.support import assert_clean_error, cli, write_config

pytestmark = pytest.mark.slow


def _config(tmp_path, *routes: str):
    text = "".join(f'[[match.routes]]\nroute = "{r}"\nignore_query = ["ts"]\n\n'
                   for r in routes)
    return write_config(tmp_path, text)


@pytest.fixture
def run(cli_env, upstream_ca, tmp_path):
    def go(verb: str, config, *cmd: str):
        return cli(verb, "-c", "sandbox", "--cassette-dir", tmp_path / "cassettes",
                   "--upstream-ca", upstream_ca.pem, "--config", config, "--", *cmd,
                   env=cli_env, cwd=tmp_path)

    return go


def test_a_host_port_path_route_applies(run, https_upstream, tmp_path):
    netloc = f"127.0.0.1:{https_upstream.port}"
    config = _config(tmp_path, f"GET {netloc}/v1/*", "127.0.0.1:1/other/*")
    recorded = run("record", config, "curl", "-sS", https_upstream.url("/v1/items?ts=1"))
    assert recorded.returncode == 0, recorded.stderr
    https_upstream.stop()
    # another ts: equal under the route's ignore_query, so it replays
    replayed = run("replay", config, "curl", "-sS", https_upstream.url("/v1/items?ts=2"))
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout
    assert "unmatched" not in replayed.stderr
    # the route on port 1 never applied: listed, by its text
    lines = replayed.stderr.splitlines()
    at = next(i for i, x in enumerate(lines) if "1 route in the configuration matched no "
              "request" in x)
    assert lines[at + 1] == "replayproxy:   match route '127.0.0.1:1/other/*'"
    assert f"{netloc}/v1/*" not in replayed.stderr


def test_without_the_port_form_the_query_is_compared(run, https_upstream, tmp_path):
    # the same route on another port does not apply: ts differs, nothing matches
    config = _config(tmp_path, f"127.0.0.1:{https_upstream.port + 1}/v1/*")
    assert run("record", config, "curl", "-sS",
               https_upstream.url("/v1/items?ts=1")).returncode == 0
    replayed = run("replay", config, "curl", "-sS", https_upstream.url("/v1/items?ts=2"))
    assert replayed.returncode == 1
    assert "unmatched: GET" in replayed.stderr


@pytest.mark.parametrize(("route", "problem"), [
    ("GRT 127.0.0.1:8443/v1/*", "unknown method 'GRT'"),
    ("127.0.0.1:84x3/v1/*", "malformed port '84x3'"),
    ("api..example.com/v1/*", "malformed host 'api..example.com'"),
    ("/v1/*", "it has no host"),
])
def test_a_route_that_could_never_apply_stops_the_run(run, tmp_path, route, problem):
    marker = tmp_path / "child-ran"
    proc = run("record", _config(tmp_path, route), "touch", str(marker))
    assert_clean_error(proc, "pyproject.toml", "[tool.replayproxy.match.routes #1] route",
                       problem)
    assert not marker.exists()
