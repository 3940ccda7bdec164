"""What `--help` and the describing commands (`--version`, `ca`) say, in-process; and
that `replayproxy --help` loads none of the heavy libraries."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

from tests.unit.cli_runner import cli_fixture  # noqa: F401
from tests.unit.test_docs import GENERATOR

PATHS = [[], *GENERATOR.command_paths()]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "replayproxy")
def test_help_shows_no_python_types(cli, path):
    result = cli(*path, "--help")
    assert result.exit_code == 0, result.output
    types = re.findall(r"<[^>\s]*>|\b(?:list|tuple|dict)\[|\[(?:str|int|float|bool|Path)\]",
                       result.stdout)
    assert not types, result.stdout
    # every option that takes a value names it in capitals (NAME, DIR, FILE, N, ...)
    for line in result.stdout.splitlines():
        option = re.match(r"\s+(?:-\w, )?--[\w-]+(?:/--[\w-]+)? (\S+)\s", line)
        if option:
            assert option[1].upper() == option[1], line
    assert "Options:" in result.stdout


def test_drift_history_describes_c_as_a_filter(cli):
    out = cli("drift", "history", "--help").stdout
    line = next(line for line in out.splitlines() if "--cassette" in line)
    assert "-c, --cassette NAME" in line
    assert "List only runs that checked this cassette (repeatable)" in line
    assert "to check" not in line


def test_explain_help_hides_the_older_spellings(cli):
    out = cli("explain", "--help").stdout
    assert "-d, --data DATA" in out and "-X, --request METHOD" in out and "URL" in out
    for old in ("--url", "--body", "--method", "-u,", "-b,"):
        assert old not in out


def test_version(cli):
    from replayproxy import __version__

    result = cli("--version")
    assert (result.exit_code, result.stdout) == (0, f"replayproxy {__version__}\n")


def test_ca_prints_paths_and_trust_instructions(cli, tmp_path):
    ca_dir = tmp_path / "fresh-ca"
    result = cli("ca", env={"REPLAYPROXY_CA_DIR": str(ca_dir)})
    assert result.exit_code == 0, result.output
    cert = ca_dir / "mitmproxy-ca-cert.pem"
    key = ca_dir / "mitmproxy-ca.pem"
    assert f"CA certificate: {cert}" in result.stdout
    assert str(key) in result.stdout
    for client in ("curl", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS",
                   f"WGETRC={ca_dir / 'replayproxy-wgetrc'}", f"PIP_CERT={ca_dir}",
                   "npm_config_cafile", "NODE_OPTIONS=\"--require ", "trust_env=True",
                   "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "update-ca-certificates",
                   "Go and Ruby never use a proxy for 127.0.0.1", "--reverse URL"):
        assert client in result.stdout, client
    assert "lib/security/cacerts" not in result.stdout  # Java needs no root
    store = ca_dir / "replayproxy-truststore.p12"
    if shutil.which("keytool"):
        assert f"-Djavax.net.ssl.trustStore={store}" in result.stdout
        assert store.is_file()
    else:
        assert "Java store:     not made: no keytool" in result.stdout
    assert cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ca_dir).st_mode) == 0o700
    for f in ca_dir.iterdir():
        if "key" in f.name or f.name in ("mitmproxy-ca.pem", "mitmproxy-ca.p12"):
            assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f

    path_only = cli("ca", "--path", "--ca-dir", ca_dir)
    assert path_only.stdout == f"{cert}\n"


HEAVY = ("mitmproxy", "deepdiff", "httpx", "sqlite_utils", "pydantic", "msgpack", "rich")


@pytest.mark.slow
def test_help_imports_no_heavy_library():
    """`replayproxy --help` in a fresh interpreter, its imports listed by -X importtime
    (this process has imported everything already)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "replayproxy", "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Commands:" in proc.stdout
    imported = {line.split("|")[-1].strip().split(".")[0]
                for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "typer" in imported and "replayproxy" in imported  # the listing works
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
