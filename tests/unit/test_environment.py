"""The environment a child process gets: proxy variables, CA bundle, export lines."""

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from replayproxy.clients import (
    NODE_PRELOAD,
    TRUSTSTORE_NAME,
    TRUSTSTORE_PASSWORD,
    WGETRC_NAME,
    write_java_truststore,
    write_wgetrc,
)
from replayproxy.environment import (
    BUNDLE_VARIABLES,
    PROXY_VARIABLES,
    build_trust_bundle,
    client_environment,
    export_lines,
    java_non_proxy_hosts,
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


# -- clients with their own configuration (docs/clients.md) ----------------------------


@pytest.fixture
def ca_files(tmp_path):
    """A CA directory as ``ensure_ca`` leaves it, with the wgetrc and the trust store."""
    ca, bundle = write(tmp_path / "ca.pem", "CA\n"), write(tmp_path / "bundle.pem", "B\n")
    write(tmp_path / WGETRC_NAME, "ca_certificate = x\n")
    write(tmp_path / TRUSTSTORE_NAME, "p12")
    return ca, bundle


def test_each_client_family_gets_its_variables(ca_files, tmp_path):
    ca, bundle = ca_files
    env = client_environment(URL, bundle, ca, no_proxy="", environ={})
    assert env["WGETRC"] == str(tmp_path / WGETRC_NAME)
    assert env["PIP_CERT"] == env["npm_config_cafile"] == str(bundle)
    assert env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] == str(bundle)
    assert env["npm_config_proxy"] == env["npm_config_https_proxy"] == URL
    assert env["npm_config_noproxy"] == ""
    assert env["YARN_HTTP_PROXY"] == env["YARN_HTTPS_PROXY"] == URL
    # Yarn 4 refuses to start on a setting it does not know (caFilePath is Yarn 2/3's)
    assert [k for k in env if k.startswith("YARN_")] == ["YARN_HTTP_PROXY", "YARN_HTTPS_PROXY"]
    assert env["NODE_USE_ENV_PROXY"] == "1"
    assert env["NODE_OPTIONS"] == f"--require {NODE_PRELOAD}"
    assert NODE_PRELOAD.is_file()  # shipped as package data
    assert env["JAVA_TOOL_OPTIONS"].split() == [
        f"-Djavax.net.ssl.trustStore={tmp_path / TRUSTSTORE_NAME}",
        "-Djavax.net.ssl.trustStoreType=PKCS12",
        f"-Djavax.net.ssl.trustStorePassword={TRUSTSTORE_PASSWORD}",
        "-Dhttp.proxyHost=127.0.0.1", "-Dhttp.proxyPort=41234",
        "-Dhttps.proxyHost=127.0.0.1", "-Dhttps.proxyPort=41234",
        "-Dhttp.nonProxyHosts=",
    ]


def test_proxy_environment_includes_the_client_variables(ca_files):
    ca, bundle = ca_files
    env = proxy_environment(URL, bundle, ca)
    assert {"WGETRC", "PIP_CERT", "NODE_OPTIONS", "JAVA_TOOL_OPTIONS"} <= env.keys()
    assert "-Dhttp.nonProxyHosts=" in env["JAVA_TOOL_OPTIONS"].split()


def test_the_users_node_and_java_options_come_first_and_are_not_repeated(ca_files):
    ca, bundle = ca_files
    environ = {"NODE_OPTIONS": "--max-old-space-size=100",
               "JAVA_TOOL_OPTIONS": "-Xmx1g -Dhttp.proxyPort=41234"}
    env = client_environment(URL, bundle, ca, environ=environ)
    assert env["NODE_OPTIONS"] == f"--max-old-space-size=100 --require {NODE_PRELOAD}"
    java = env["JAVA_TOOL_OPTIONS"].split()
    assert java[:2] == ["-Xmx1g", "-Dhttp.proxyPort=41234"]
    assert java.count("-Dhttp.proxyPort=41234") == 1
    # a child of a child: the preload is there already
    again = client_environment(URL, bundle, ca, environ={"NODE_OPTIONS": env["NODE_OPTIONS"]})
    assert again["NODE_OPTIONS"] == env["NODE_OPTIONS"]


def test_a_path_with_a_space_is_quoted_in_java_options(tmp_path):
    d = tmp_path / "my ca"
    d.mkdir()
    ca, bundle = write(d / "ca.pem", "CA\n"), write(d / "bundle.pem", "B\n")
    write(d / TRUSTSTORE_NAME, "p12")
    env = client_environment(URL, bundle, ca, environ={})
    assert f'"-Djavax.net.ssl.trustStore={d / TRUSTSTORE_NAME}"' in env["JAVA_TOOL_OPTIONS"]


def test_without_the_client_files_wget_and_java_get_nothing(tmp_path):
    ca, bundle = write(tmp_path / "ca.pem", "CA\n"), tmp_path / "bundle.pem"
    env = client_environment(URL, bundle, ca, environ={})
    assert "WGETRC" not in env and "JAVA_TOOL_OPTIONS" not in env
    assert env["PIP_CERT"] == str(bundle)


def test_without_a_proxy_only_trust_is_set(ca_files):
    ca, bundle = ca_files
    env = client_environment(None, bundle, ca, environ={"NODE_OPTIONS": "--x"})
    assert "NODE_OPTIONS" not in env and "npm_config_proxy" not in env
    assert "proxyHost" not in env["JAVA_TOOL_OPTIONS"]
    assert env["npm_config_cafile"] == str(bundle)


@pytest.mark.parametrize(("no_proxy", "java"), [
    ("", ""),
    ("localhost,127.0.0.1", "localhost|127.0.0.1"),
    (".example.com, api.test:8443 10.0.0.1", "*.example.com|api.test|10.0.0.1"),
    ("a.com,a.com", "a.com"),
])
def test_no_proxy_as_java_non_proxy_hosts(no_proxy, java):
    assert java_non_proxy_hosts(no_proxy) == java


def test_wgetrc_keeps_the_users_settings_but_not_proxy_or_ca(tmp_path):
    user = write(tmp_path / ".wgetrc", "tries = 3\nUSE_PROXY = off\nhttps-proxy = http://x\n"
                                       "ca_certificate=/old.pem\n")
    out = tmp_path / "ca" / WGETRC_NAME
    out.parent.mkdir()
    assert write_wgetrc(tmp_path / "b.pem", out, {"HOME": str(tmp_path)}) == out
    lines = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    assert lines == ["tries = 3", f"ca_certificate = {tmp_path / 'b.pem'}", "use_proxy = on"]
    # $WGETRC names the user's file; a wgetrc that is ours already is not copied into itself
    write(user, "timeout = 5\n")
    write_wgetrc(tmp_path / "b.pem", out, {"WGETRC": str(user)})
    assert "timeout = 5" in out.read_text()
    write_wgetrc(tmp_path / "b.pem", out, {"WGETRC": str(out)})
    assert out.read_text().count("ca_certificate") == 1


def test_wgetrc_without_a_user_file(tmp_path):
    out = tmp_path / WGETRC_NAME
    write_wgetrc(tmp_path / "b.pem", out, {"HOME": str(tmp_path / "nowhere")})
    assert out.read_text().endswith(f"ca_certificate = {tmp_path / 'b.pem'}\nuse_proxy = on\n")


def test_no_java_trust_store_without_keytool(tmp_path):
    ca = write(tmp_path / "ca.pem", "CA\n")
    out = tmp_path / TRUSTSTORE_NAME
    assert write_java_truststore(ca, out, {"PATH": str(tmp_path)}) is None
    assert not out.exists()


@pytest.mark.slow
def test_java_trust_store_holds_the_ca_and_the_jdk_roots_and_is_made_once(tmp_path):
    if shutil.which("keytool") is None:
        pytest.skip("keytool not installed")
    import trustme

    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    out = tmp_path / TRUSTSTORE_NAME
    assert write_java_truststore(ca, out) == out
    listing = subprocess.run(["keytool", "-list", "-keystore", out, "-storepass",
                              TRUSTSTORE_PASSWORD], capture_output=True, text=True, check=True)
    assert "replayproxy-ca" in listing.stdout
    assert "Your keystore contains 1 entry" not in listing.stdout  # the JDK's roots too
    made = out.stat().st_mtime_ns
    assert write_java_truststore(ca, out) == out and out.stat().st_mtime_ns == made
    trustme.CA().cert_pem.write_to_path(str(ca))  # a new CA: made again
    assert write_java_truststore(ca, out) == out and out.stat().st_mtime_ns != made
