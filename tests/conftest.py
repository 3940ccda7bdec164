"""Fixtures shared by every test: a private upstream CA and this run's replayproxy CA.

Nothing here touches ``~/.replayproxy`` or ``~/.mitmproxy``: every directory is a
pytest temporary directory.
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

# Importing mitmproxy 11.0.2 raises DeprecationWarnings in its dependencies (ldap3 uses
# pyasn1's deprecated "tagMap"; passlib imports the stdlib "crypt" module, deprecated in
# 3.11). With filterwarnings=error they would fail every test that imports mitmproxy, so
# import it once here with DeprecationWarning ignored for the import only. (mitmproxy 12
# dropped passlib; ldap3's "tagMap"/"typeMap" warnings remain.)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import mitmproxy.addons  # noqa: F401
    import mitmproxy.master  # noqa: F401


@dataclass(frozen=True)
class UpstreamCA:
    """A private CA for local upstream servers, as a sandbox API would have."""

    ca: trustme.CA
    pem: Path
    """The CA certificate (PEM): pass it as ``--upstream-ca``."""
    server_context: ssl.SSLContext
    """A server context with a leaf certificate for 127.0.0.1 and localhost."""


@pytest.fixture(scope="session")
def upstream_ca(tmp_path_factory: pytest.TempPathFactory) -> UpstreamCA:
    """A trustme CA and a server TLS context signed by it (made once per run)."""
    ca = trustme.CA()
    pem = tmp_path_factory.mktemp("upstream-ca") / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return UpstreamCA(ca, pem, context)


@pytest.fixture(scope="session")
def proxy_ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The replayproxy CA directory for this run (what REPLAYPROXY_CA_DIR points at)."""
    yield tmp_path_factory.mktemp("replayproxy-ca") / "ca"


@pytest.fixture(scope="session", autouse=True)
def runs_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Runs are recorded for ``replayproxy report`` in a temporary database, never in the
    project's ``.replayproxy/`` (``REPLAYPROXY_REPORT_DB``, kept by ``base_env``)."""
    import os

    path = tmp_path_factory.mktemp("runs") / "runs.db"
    previous = os.environ.get("REPLAYPROXY_REPORT_DB")
    os.environ["REPLAYPROXY_REPORT_DB"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("REPLAYPROXY_REPORT_DB", None)
    else:
        os.environ["REPLAYPROXY_REPORT_DB"] = previous
