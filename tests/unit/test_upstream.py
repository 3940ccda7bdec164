"""The engine-neutral upstream settings: egress proxy from flags and variables,
NO_PROXY, the trust bundle, reverse URLs."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from replayproxy.environment import proxy_environment, reverse_variable
from replayproxy.errors import CLI_WORDS, ConfigError
from replayproxy.upstream import (
    Egress,
    EgressProxy,
    egress_from,
    parse_proxy_url,
    read_pem_ca,
    reverse_spec,
    trust_bundle,
)


def test_variables_lower_case_first_and_per_scheme():
    egress = egress_from(None, {"HTTPS_PROXY": "http://upper:1", "https_proxy": "lower:2",
                                "HTTP_PROXY": "http://plain:3"})
    assert egress.https == EgressProxy("http", "lower", 2, source="https_proxy")
    assert egress.http is not None and egress.http.address == ("plain", 3)
    assert egress.for_url("https", "api.example.com", 443) == egress.https
    assert egress.for_url("http", "api.example.com", 80) == egress.http


def test_no_variables_no_egress():
    assert not egress_from(None, {})
    assert egress_from(None, {}).for_url("https", "x", 443) is None


def test_flag_overrides_and_none_switches_off():
    env = {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "internal"}
    egress = egress_from("http://flag:8080", env)
    assert egress.https == egress.http and egress.https is not None
    assert egress.https.address == ("flag", 8080)
    assert egress.for_url("https", "svc.internal", 443) is None  # NO_PROXY still applies
    assert not egress_from("none", env) and not egress_from("NONE", env)


def test_a_previous_runs_own_proxy_is_not_an_egress():
    env = {"HTTPS_PROXY": "http://127.0.0.1:4000", "REPLAYPROXY_URL": "http://127.0.0.1:4000"}
    assert not egress_from(None, env)


def test_credentials():
    proxy = parse_proxy_url("http://al%40ice:p%3Aw@egress:3128", "upstream_proxy")
    assert (proxy.username, proxy.password) == ("al@ice", "p:w")
    assert proxy.authorization == "Basic YWxAaWNlOnA6dw=="
    assert "p:w" not in repr(proxy) and proxy.url == "http://egress:3128"
    assert parse_proxy_url("http://egress", "X").port == 80
    assert parse_proxy_url("https://egress", "X").port == 443


@pytest.mark.parametrize(("value", "needle"), [
    ("egress:3128", "no scheme"),
    ("socks5://egress:1080", "unsupported scheme 'socks5'"),
    ("http://", "no host"),
    ("http://egress:99999", "bad port"),
    ("http://egress:3128/path", "no path"),
])
def test_bad_proxy_urls(value, needle):
    with pytest.raises(ConfigError, match=needle) as raised:
        parse_proxy_url(value, "upstream_proxy")
    text = raised.value.render(CLI_WORDS)
    assert text.startswith("invalid --upstream-proxy") and "--upstream-proxy none" in text


def test_bad_variable_is_named_and_password_hidden():
    with pytest.raises(ConfigError, match="invalid HTTPS_PROXY") as raised:
        egress_from(None, {"HTTPS_PROXY": "socks5://bob:hunter2@egress:1080"})
    assert "hunter2" not in str(raised.value) and "bob:***@" in str(raised.value)


@pytest.mark.parametrize(("host", "port", "no_proxy", "direct"), [
    ("api.example.com", 443, "example.com", True),
    ("api.example.com", 443, ".example.com", True),
    ("example.com", 443, ".example.com", True),
    ("badexample.com", 443, "example.com", False),
    ("127.0.0.1", 8443, "127.0.0.0/8", True),
    ("10.1.2.3", 80, "10.0.0.0/8, localhost", True),
    ("127.0.0.1", 8443, "127.0.0.1:9000", False),
    ("127.0.0.1", 9000, "127.0.0.1:9000", True),
    ("::1", 80, "::1", True),
    ("anything", 1, "*", True),
    ("API.Example.COM", 443, "example.com", True),
    ("api.example.com", 443, "", False),
])
def test_no_proxy(host, port, no_proxy, direct):
    egress = Egress(EgressProxy("http", "egress", 3128), None, no_proxy)
    assert (egress.for_url("https", host, port) is None) is direct


def test_trust_bundle_has_the_environment_and_extras_each_once(tmp_path: Path):
    a, b, c = trustme.CA(), trustme.CA(), trustme.CA()
    cert_file = tmp_path / "file.pem"
    a.cert_pem.write_to_path(str(cert_file))
    directory = tmp_path / "dir"
    directory.mkdir()
    b.cert_pem.write_to_path(str(directory / "b.pem"))
    (directory / "link.pem").symlink_to(directory / "b.pem")
    (directory / "notes.txt").write_text("no certificate here")
    bundle = trust_bundle([c.cert_pem.bytes(), c.cert_pem.bytes()],
                          {"SSL_CERT_FILE": str(cert_file), "SSL_CERT_DIR": str(directory)})
    for ca in (a, b, c):
        assert bundle.count(ca.cert_pem.bytes().strip()) == 1
    import certifi

    first = Path(certifi.where()).read_bytes().split(b"-----END CERTIFICATE-----")[0]
    assert first.strip().split(b"\n")[-1] in bundle  # certifi's roots are there too


def test_read_pem_ca(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_pem_ca(tmp_path / "missing.pem")
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"\x30\x82 DER bytes")
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        read_pem_ca(bad)


@pytest.mark.parametrize("url", ["nope", "api.example.com", "ftp://x", "https://",
                                 "http://h:port", "https://x/path"])
def test_bad_reverse_urls(url):
    with pytest.raises(ConfigError, match="reverse"):
        reverse_spec(url)


def test_reverse_variables(tmp_path: Path):
    assert reverse_variable("https://api.github.com") == "REPLAYPROXY_REVERSE_URL_API_GITHUB_COM"
    assert reverse_variable("http://127.0.0.1:8080") == \
        "REPLAYPROXY_REVERSE_URL_127_0_0_1_8080"
    env = proxy_environment("http://127.0.0.1:1", tmp_path / "b.pem", tmp_path / "c.pem",
                            reverse_urls={"https://a.example": "http://127.0.0.1:2",
                                          "https://b.example": "http://127.0.0.1:3"})
    assert env["REPLAYPROXY_REVERSE_URL"] == "http://127.0.0.1:2"
    assert env["REPLAYPROXY_REVERSE_URL_A_EXAMPLE"] == "http://127.0.0.1:2"
    assert env["REPLAYPROXY_REVERSE_URL_B_EXAMPLE"] == "http://127.0.0.1:3"
    assert env["NO_PROXY"] == ""
