"""The public proxy-run API (``replayproxy.ProxyRun``), as a Python user drives it.

docs/api.md's example is run as it is; the rest checks what the page promises: the
environment for a child, the control URL, the summary and verdict, the errors.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from replayproxy import ProxyRun
from replayproxy.errors import CassetteError, ConfigError, ProxyStartError
from tests.integration.support import JSON_BODY, RequestsClient, base_env, offline

REPO = Path(__file__).resolve().parents[2]


def test_the_documented_example_runs(cli_env, tmp_path):
    example = REPO / "docs" / "examples" / "api_record_replay.py"
    done = subprocess.run([sys.executable, str(example), str(tmp_path / "cassettes")],
                          env=cli_env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        'recorded: {"hello": "world"}',
        "recorded interactions: 1",
        'replayed: {"hello": "world"}',
        "replayed interactions: 1, exit code 0",
    ]
    assert (tmp_path / "cassettes" / "greeting.cassette").is_file()


def test_record_then_replay_with_a_real_client(https_upstream, proxy_ca, upstream_ca,
                                               tmp_path):
    cdir = tmp_path / "cassettes"
    url = https_upstream.url("/json")
    with ProxyRun("api", "once", cassette_dir=cdir, upstream_ca=upstream_ca.pem,
                  ca_dir=proxy_ca.directory) as run:
        env = run.environment()
        assert env["HTTPS_PROXY"] == run.proxy_url and env["HTTP_PROXY"] == run.proxy_url
        assert env["REPLAYPROXY_CONTROL_URL"] == run.control_url
        assert env["REPLAYPROXY_CONTROL_TOKEN"] == run.control_token
        assert env["NODE_EXTRA_CA_CERTS"] == str(run.ca.cert)
        with RequestsClient(run.proxy_url, run.ca.bundle, tmp_path) as client:
            assert client.get(url).body == JSON_BODY
        with pytest.raises(RuntimeError, match="not stopped"):
            run.verdict()
    assert run.summary is not None and run.summary.recorded == 1
    assert run.verdict().exit_code == 0

    with offline(https_upstream), ProxyRun("api", "once", cassette_dir=cdir,
                                           ca_dir=proxy_ca.directory) as run:
        assert run.session is not None and run.session.mode.value == "none"
        with RequestsClient(run.proxy_url, run.ca.bundle, tmp_path) as client:
            assert client.get(url).body == JSON_BODY
            faults = run.fault_control()
            faults.add("status=503@*/json")
            assert client.get(url).status == 503
            faults.clear()
            missing = client.get(https_upstream.url("/nothing"))
            assert missing.status == 502
    assert run.summary.replayed == 1 and len(run.summary.unmatched) == 1
    verdict = run.verdict()
    assert verdict.exit_code == 1 and "unmatched" in verdict.reasons[0]
    assert run.verdict(command_exit=4).exit_code == 4


def test_the_run_serves_a_reverse_base_url(https_upstream, proxy_ca, upstream_ca, tmp_path):
    with ProxyRun("rev", "all", cassette_dir=tmp_path, upstream_ca=upstream_ca.pem,
                  ca_dir=proxy_ca.directory, reverse=https_upstream.url(""),
                  control=False) as run:
        assert run.control_url is None
        assert run.reverse_url is not None
        assert run.environment()["REPLAYPROXY_REVERSE_URL"] == run.reverse_url
        with RequestsClient(None, run.ca.bundle, tmp_path) as client:
            assert client.get(run.reverse_url + "/json").body == JSON_BODY
    assert run.summary.recorded == 1


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"mode": "none"}, CassetteError, "does not exist"),
    ({"faults": ["bogus@*"]}, ConfigError, "fault 'bogus@\\*': invalid fault"),
    ({"upstream_ca": "/nonexistent/ca.pem"}, ConfigError, "does not exist: pass a PEM CA"),
    ({"port": 70000}, ConfigError, "port 70000"),
    ({"reverse": "ftp://x"}, ConfigError, "give the upstream's base URL"),
])
def test_bad_settings_raise_one_line_errors(proxy_ca, tmp_path, kwargs, error, message):
    run = ProxyRun("absent", cassette_dir=tmp_path, ca_dir=proxy_ca.directory, **kwargs)
    with pytest.raises(error, match=message) as raised:
        run.start()
    assert "\n" not in str(raised.value)
    run.stop()  # idempotent after a failed start
    assert not (tmp_path / "absent.cassette").exists()


def test_a_port_in_use_names_the_setting(proxy_ca, tmp_path):
    with ProxyRun("one", "all", cassette_dir=tmp_path, ca_dir=proxy_ca.directory,
                  control=False) as first:
        port = int(first.proxy_url.rsplit(":", 1)[1])
        with pytest.raises(ProxyStartError) as raised:
            ProxyRun("two", "all", cassette_dir=tmp_path, ca_dir=proxy_ca.directory,
                     port=port, control=False).start()
    # one proxy per process: the second fails on that, or on the port
    assert "\n" not in str(raised.value)


def test_mode_names_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="once"):
        ProxyRun("x", "sometimes", cassette_dir=tmp_path)


def test_child_environment_reaches_a_subprocess(http_upstream, proxy_ca, tmp_path):
    with ProxyRun("child", "all", cassette_dir=tmp_path, ca_dir=proxy_ca.directory) as run:
        done = subprocess.run(["curl", "-sS", "--max-time", "30", http_upstream.url("/json")],
                              env=base_env(**run.environment()), capture_output=True,
                              timeout=60, check=False)
        assert done.returncode == 0 and done.stdout == JSON_BODY
    assert run.summary.recorded == 1
