"""Whom recording (and drift) trusts upstream: this machine's trust as replayproxy found
it (certifi, the system store, SSL_CERT_FILE, SSL_CERT_DIR), every --upstream-ca, or
nothing at all with --upstream-insecure.

The external-trust stand-in is an HTTPS upstream whose CA is only in a temporary
SSL_CERT_FILE (or SSL_CERT_DIR) of replayproxy's environment, as a TLS-intercepting
corporate egress's CA is only in the system store.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from replayproxy.cassette.store import cassette_path, load_cassette
from tests.integration.support import JSON_BODY, Upstream, assert_clean_error, cli


def _server(ca: trustme.CA) -> Upstream:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return Upstream(context)


@pytest.fixture(scope="module")
def other_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def private(other_ca: trustme.CA) -> Iterator[Upstream]:
    """An HTTPS upstream signed by a CA nobody trusts unless told."""
    server = _server(other_ca)
    try:
        yield server
    finally:
        server.stop()


def _ca_file(ca: trustme.CA, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(path))
    return path


def _system_plus(ca: trustme.CA, path: Path) -> Path:
    """A bundle as a corporate machine has it: the system roots plus the egress CA."""
    path.parent.mkdir(parents=True, exist_ok=True)
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    roots = system.read_bytes() if system.is_file() else b""
    path.write_bytes(roots + b"\n" + ca.cert_pem.bytes())
    return path


def _record(tmp_path: Path, env: dict[str, str], *urls: str, extra: tuple = ()):
    script = " && ".join(f"curl -sS --max-time 30 {u}" for u in urls)
    return cli("record", "-c", "trust", "--cassette-dir", tmp_path / "cassettes", *extra,
               "--", "sh", "-c", script, env=env, cwd=tmp_path)


def test_ssl_cert_file_of_replayproxys_environment_is_trusted(private, other_ca, cli_env,
                                                               tmp_path):
    env = {**cli_env, "SSL_CERT_FILE": str(_system_plus(other_ca, tmp_path / "sys.pem"))}
    proc = _record(tmp_path, env, private.url("/json"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.encode() == JSON_BODY
    cassette = load_cassette(cassette_path(tmp_path / "cassettes", "trust"))
    assert [it.response.status for it in cassette.interactions()] == [200]


def test_ssl_cert_dir_of_replayproxys_environment_is_trusted(private, other_ca, cli_env,
                                                              tmp_path):
    directory = tmp_path / "certs"
    _ca_file(other_ca, directory / "corp-egress.pem")
    (directory / "README").write_text("not a certificate\n")
    env = {**cli_env, "SSL_CERT_DIR": str(directory)}
    proc = _record(tmp_path, env, private.url("/json"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.encode() == JSON_BODY


def test_an_untrusted_upstream_is_not_recorded(private, cli_env, tmp_path):
    """The control: the stand-in's CA really is trusted nowhere else."""
    proc = _record(tmp_path, cli_env, private.url("/json"))
    assert proc.stdout.encode() != JSON_BODY
    assert private.total_requests == 0


def test_two_upstream_cas_for_two_upstreams_in_one_run(private, other_ca, https_upstream,
                                                       upstream_ca, cli_env, tmp_path):
    other = _ca_file(other_ca, tmp_path / "other-ca.pem")
    proc = _record(tmp_path, cli_env, private.url("/json"), https_upstream.url("/json"),
                   extra=("--upstream-ca", upstream_ca.pem, "--upstream-ca", other))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.encode() == JSON_BODY * 2
    assert private.hits("/json") == 1 and https_upstream.hits("/json") == 1


def test_upstream_insecure_records_an_untrusted_upstream_with_a_warning(private, cli_env,
                                                                        tmp_path):
    proc = _record(tmp_path, cli_env, private.url("/json"), extra=("--upstream-insecure",))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.encode() == JSON_BODY
    warnings = [line for line in proc.stderr.splitlines()
                if "upstream certificates are NOT verified" in line]
    assert len(warnings) == 1, proc.stderr
    assert warnings[0].startswith("replayproxy: ")


def test_drift_uses_the_same_trust(private, other_ca, cli_env, tmp_path):
    other = _ca_file(other_ca, tmp_path / "other-ca.pem")
    assert _record(tmp_path, cli_env, private.url("/json"),
                   extra=("--upstream-ca", other)).returncode == 0

    def drift(*extra: str | Path, **env: str):
        return cli("drift", "-c", "trust", "--cassette-dir", tmp_path / "cassettes",
                   "--no-history", "--no-repeat", *extra, env={**cli_env, **env},
                   cwd=tmp_path)

    untrusted = drift()
    assert untrusted.returncode == 2 and "TLS handshake" in untrusted.stdout
    by_file = drift(SSL_CERT_FILE=str(_system_plus(other_ca, tmp_path / "sys.pem")))
    assert by_file.returncode == 0, by_file.stdout + by_file.stderr
    assert drift("--upstream-ca", tmp_path / "sys.pem", "--upstream-ca", other
                 ).returncode == 0
    insecure = drift("--upstream-insecure")
    assert insecure.returncode == 0
    assert "live certificates are NOT verified (--upstream-insecure)" in insecure.stderr
    assert private.hits("/json") == 4


# -- bad input: one line, non-zero, before the command starts ---------------------------


def _bad_ca(cli_env, tmp_path, ca: Path, *needles: str) -> None:
    marker = tmp_path / "started"
    proc = cli("record", "-c", "x", "--cassette-dir", tmp_path / "c", "--upstream-ca", ca,
               "--", "touch", marker, env=cli_env, cwd=tmp_path)
    assert_clean_error(proc, "--upstream-ca", str(ca), *needles)
    assert proc.returncode == 2 and not marker.exists()


def test_upstream_ca_missing_file(cli_env, upstream_ca, tmp_path):
    _bad_ca(cli_env, tmp_path, tmp_path / "nope.pem", "does not exist", "PEM CA file")


def test_upstream_ca_not_pem(cli_env, upstream_ca, tmp_path):
    der = tmp_path / "ca.der"
    der.write_bytes(ssl.PEM_cert_to_DER_cert(upstream_ca.pem.read_text()))
    _bad_ca(cli_env, tmp_path, der, "holds no PEM certificate", "PEM form")


def test_upstream_ca_one_good_one_bad(cli_env, upstream_ca, tmp_path):
    marker = tmp_path / "started"
    proc = cli("record", "-c", "x", "--cassette-dir", tmp_path / "c", "--upstream-ca",
               upstream_ca.pem, "--upstream-ca", tmp_path / "gone.pem", "--", "touch",
               marker, env=cli_env, cwd=tmp_path)
    assert_clean_error(proc, "gone.pem", "does not exist")
    assert not marker.exists()


def test_drift_upstream_ca_not_pem(cli_env, tmp_path):
    bad = tmp_path / "ca.txt"
    bad.write_text("hello\n")
    proc = cli("drift", "-c", "x", "--cassette-dir", tmp_path / "c", "--no-history",
               "--upstream-ca", bad, env=cli_env, cwd=tmp_path)
    assert proc.returncode == 2
    assert "--upstream-ca" in proc.stderr and "holds no PEM certificate" in proc.stderr
