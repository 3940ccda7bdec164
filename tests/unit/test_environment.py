"""The environment a child process gets: proxy variables, CA bundle, export lines."""

import shlex
from pathlib import Path

import pytest

from replayproxy.environment import (
    BUNDLE_VARIABLES,
    PROXY_VARIABLES,
    build_trust_bundle,
    export_lines,
    proxy_environment,
)

URL = "http://127.0.0.1:41234"


def test_every_proxy_and_ca_variable_is_set(tmp_path):
    bundle, ca = tmp_path / "bundle.pem", tmp_path / "ca.pem"
    env = proxy_environment(URL, bundle, ca)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[name] == URL
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        assert env[name] == str(bundle)
    assert set(PROXY_VARIABLES) <= env.keys() and set(BUNDLE_VARIABLES) <= env.keys()
    assert env["NODE_EXTRA_CA_CERTS"] == str(ca)  # Node adds it to its own roots
    assert env["REPLAYPROXY_URL"] == URL
    assert "REPLAYPROXY_REVERSE_URL" not in env


def test_no_proxy_is_emptied(tmp_path):
    env = proxy_environment(URL, tmp_path / "b.pem", tmp_path / "ca.pem")
    assert env["NO_PROXY"] == "" and env["no_proxy"] == ""


def test_reverse_only_sets_no_proxy_variables(tmp_path):
    env = proxy_environment(None, tmp_path / "b.pem", tmp_path / "ca.pem",
                            reverse_url="http://127.0.0.1:5000")
    assert env["REPLAYPROXY_REVERSE_URL"] == "http://127.0.0.1:5000"
    assert not {*PROXY_VARIABLES, "NO_PROXY", "no_proxy", "REPLAYPROXY_URL"} & env.keys()
    assert env["SSL_CERT_FILE"] == str(tmp_path / "b.pem")


def test_export_lines_are_shell_quoted():
    env = {"A": "plain", "B": "with space", "C": "it's $HOME `x` \"q\"", "D": ""}
    lines = export_lines(env)
    assert lines[0] == "export A=plain"
    assert [shlex.split(line) for line in lines] == [
        ["export", f"{k}={v}"] for k, v in env.items()
    ]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def certs(tmp_path):
    ca = write(tmp_path / "ca.pem", "-----PROXY CA-----\n\n")
    other = write(tmp_path / "other.pem", "-----OTHER ROOT-----\n")
    return ca, other


def test_trust_bundle_puts_the_proxy_ca_first_then_other_roots(tmp_path, certs):
    ca, other = certs
    out = tmp_path / "bundle.pem"
    assert build_trust_bundle(ca, out, {"SSL_CERT_FILE": str(other)}) == out
    data = out.read_text()
    assert data.startswith("-----PROXY CA-----\n")
    assert data.index("-----OTHER ROOT-----") > data.index("-----PROXY CA-----")
    assert data.endswith("\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.pem", "ca.pem", "other.pem"]


def test_trust_bundle_includes_each_root_once_and_skips_missing_files(tmp_path, certs):
    ca, other = certs
    out = tmp_path / "bundle.pem"
    environ = {"SSL_CERT_FILE": str(other), "REQUESTS_CA_BUNDLE": str(other),
               "CURL_CA_BUNDLE": str(tmp_path / "missing.pem")}
    build_trust_bundle(ca, out, environ)
    data = out.read_text()
    assert data.count("-----OTHER ROOT-----") == 1
    assert data.count("-----PROXY CA-----") == 1


def test_trust_bundle_does_not_include_itself(tmp_path, certs):
    ca, other = certs
    out = tmp_path / "bundle.pem"
    build_trust_bundle(ca, out, {"SSL_CERT_FILE": str(other)})
    first = out.read_bytes()
    # a child run under the proxy has SSL_CERT_FILE pointing at the bundle itself
    build_trust_bundle(ca, out, {"SSL_CERT_FILE": str(out), "REQUESTS_CA_BUNDLE": str(other)})
    assert out.read_bytes() == first


def test_trust_bundle_is_rewritten_when_the_ca_changes(tmp_path, certs):
    ca, other = certs
    out = tmp_path / "bundle.pem"
    build_trust_bundle(ca, out, {"SSL_CERT_FILE": str(other)})
    write(ca, "-----NEW PROXY CA-----\n")
    build_trust_bundle(ca, out, {"SSL_CERT_FILE": str(other)})
    data = out.read_text()
    assert data.startswith("-----NEW PROXY CA-----\n") and "-----PROXY CA-----" not in data
    assert "-----OTHER ROOT-----" in data
